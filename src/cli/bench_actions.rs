//! `wick bench actions`: what listing code actions costs the server per
//! request, with the syntax analysis computed for every request (the
//! baseline: what wick did before it kept one per document version) and
//! with the analysis kept. No model is involved.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::actions::{plan_fix, FixRequest};
use crate::syntax::{Analysis, Lang, Parsed};

/// A Python file of about `bytes` bytes with three syntax errors of the
/// kinds the repair search names (a missing ':', a misspelled keyword,
/// an operand missing), spread through it.
pub(crate) fn sample_python(bytes: usize) -> String {
    let mut out = String::new();
    let mut i = 0;
    while out.len() < bytes {
        let colon = if i == 5 { "" } else { ":" };
        let ret = if i == 40 { "retrun" } else { "return" };
        let factor = if i == 80 { String::new() } else { i.to_string() };
        out.push_str(&format!(
            "def handler_{i}(request, limit=10){colon}\n    \"\"\"Handles request {i}.\"\"\"\n    items = []\n    for n, item in enumerate(request.items):\n        if n >= limit:\n            break\n        items.append(item * {factor})\n    {ret} sum(items)\n\n\n"
        ));
        i += 1;
    }
    out
}

pub(crate) struct ListingReport {
    pub bytes: usize,
    pub diagnostics: usize,
    /// Each error's line (1-based) and message.
    pub errors: Vec<(usize, String)>,
    pub analysis: Duration,
    /// Per codeAction request holding one diagnostic, median over the rounds.
    pub per_request_uncached: Duration,
    pub per_request_cached: Duration,
}

pub fn run(path: Option<&std::path::Path>, rounds: usize) -> Result<ListingReport> {
    let (text, lang) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let lang =
                Lang::from_path(&p.to_string_lossy()).with_context(|| format!("no grammar for {}", p.display()))?;
            (text, lang)
        }
        None => (sample_python(60 * 1024), Lang::Python),
    };
    let parsed = Parsed::parse(lang, &text).context("parsing the file")?;
    let t = Instant::now();
    let analysis = Analysis::new(&parsed, &text);
    let analysis_time = t.elapsed();
    if analysis.errors.is_empty() {
        bail!("the file has no syntax errors: nothing to list");
    }
    fn req<'a>(text: &'a str, lang: Lang, e: &'a crate::syntax::SyntaxError) -> FixRequest<'a> {
        FixRequest { text, lang: Some(lang), language_id: "", start: e.start, end: e.end, message: &e.message }
    }
    let mut uncached = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..rounds.max(1) {
        for e in &analysis.errors {
            let t = Instant::now();
            let fresh = crate::syntax::Analysis::new(&parsed, &text);
            let a = plan_fix(&req(&text, lang, e), Some((&parsed, &fresh)));
            uncached.push(t.elapsed());
            let t = Instant::now();
            let b = plan_fix(&req(&text, lang, e), Some((&parsed, &analysis)));
            cached.push(t.elapsed());
            assert_eq!(a.ok(), b.ok(), "the kept analysis plans as a fresh one");
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    Ok(ListingReport {
        bytes: text.len(),
        diagnostics: analysis.errors.len(),
        errors: analysis
            .errors
            .iter()
            .map(|e| (text[..e.start].matches('\n').count() + 1, e.message.clone()))
            .collect(),
        analysis: analysis_time,
        per_request_uncached: median(&mut uncached),
        per_request_cached: median(&mut cached),
    })
}

pub fn print(r: &ListingReport) -> String {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let errors: Vec<String> = r.errors.iter().map(|(l, m)| format!("line {l}: {m}")).collect();
    format!(
        "code-action listing, {} bytes, {} syntax errors ({})\n\
         analysis once per version: {:.1} ms\n\
         per request (one diagnostic), analysis each time (baseline): {:.2} ms\n\
         per request (one diagnostic), analysis kept: {:.1} µs\n",
        r.bytes,
        r.diagnostics,
        errors.join("; "),
        ms(r.analysis),
        ms(r.per_request_uncached),
        r.per_request_cached.as_secs_f64() * 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_has_the_three_errors_and_both_paths_agree() {
        // The missing ':' makes tree-sitter-python wrap the rest of the file
        // in one ERROR: the diagnostic is still at the cause.
        let r = run(None, 1).unwrap();
        assert!(r.bytes >= 60 * 1024);
        assert_eq!(r.errors.first(), Some(&(51, "expected ':'".to_string())), "{:?}", r.errors);
    }
}
