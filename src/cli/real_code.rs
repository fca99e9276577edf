//! `wick eval real-code`: completions on lines cut from large real source
//! files in several languages (eval/real-code/cases.jsonl.gz, made by
//! scripts/real-code-cut), through the one pipeline the server uses, each
//! variant of the settings side by side on the same cases; and a typing
//! replay through a real `wick serve`.

use crate::complete::{self, Empty, Input, Stages, SuggestRequest};
use crate::config::Config;
use crate::engine::{Engine, Request};
use crate::syntax::Lang;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// One cut: the document is `text[..cursor] + text[end..]`, the expected
/// completion `text[cursor..end]` (byte offsets into the file's text).
#[derive(Debug, Clone)]
pub struct Case {
    pub id: String,
    pub lang: String,
    pub kind: String,
    pub file: usize,
    pub cursor: usize,
    pub end: usize,
}

#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

pub struct CaseSet {
    pub files: Vec<SourceFile>,
    pub cases: Vec<Case>,
    /// Folders holding the files' packages as installed (`--sources`): a
    /// case whose file is found under one gets the definitions of the
    /// files it imports from there, as the server would in that workspace.
    pub sources: Vec<PathBuf>,
}

impl CaseSet {
    pub fn document(&self, c: &Case) -> String {
        let t = &self.files[c.file].text;
        format!("{}{}", &t[..c.cursor], &t[c.end..])
    }

    pub fn expected<'a>(&'a self, c: &Case) -> &'a str {
        &self.files[c.file].text[c.cursor..c.end]
    }
}

/// `eval/real-code/cases.jsonl.gz` in the repository.
pub fn default_cases() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("eval/real-code/cases.jsonl.gz")
}

pub fn load(path: &Path) -> Result<CaseSet> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut s).with_context(|| format!("reading {}", path.display()))?;
    let mut files = Vec::new();
    let mut cases = Vec::new();
    for (n, line) in s.lines().enumerate() {
        let v: Value = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), n + 1))?;
        let str_of = |k: &str| v[k].as_str().unwrap_or("").to_string();
        if v.get("text").is_some() {
            files.push(SourceFile { path: str_of("path"), text: str_of("text") });
        } else {
            let num = |k: &str| {
                v[k].as_u64().map(|x| x as usize).with_context(|| format!("{}:{}: {k}", path.display(), n + 1))
            };
            let c = Case {
                id: str_of("case"),
                lang: str_of("lang"),
                kind: str_of("kind"),
                file: num("file")?,
                cursor: num("cursor")?,
                end: num("end")?,
            };
            let text = &files.get(c.file).with_context(|| format!("{}: file {} missing", c.id, c.file))?.text;
            if c.cursor > c.end
                || c.end > text.len()
                || !text.is_char_boundary(c.cursor)
                || !text.is_char_boundary(c.end)
            {
                bail!("{}: offsets {}..{} do not fit its file", c.id, c.cursor, c.end);
            }
            cases.push(c);
        }
    }
    Ok(CaseSet { files, cases, sources: Vec::new() })
}

/// What to run: a name for the log, settings on top of the defaults, which
/// optional stages run; or the naive baseline (no pipeline at all).
#[derive(Debug, Clone)]
pub struct Variant {
    pub name: String,
    pub config: Config,
    pub stages: Stages,
    pub naive: bool,
    /// Suggestions asked for (`suggestions=N`: what an editor's
    /// next/previous offers; 1 otherwise, as while typing).
    pub candidates: usize,
}

impl Variant {
    /// `default`, `naive`, or `key=value,...` with server settings
    /// (`prompt=fim,fimOrder=spm,suffixLines=3,multiline=never`) and the
    /// stages `syntaxWindow`, `crossFile`, `syntaxCheck` (true/false).
    pub fn parse(spec: &str) -> Result<Variant> {
        let spec = spec.trim();
        let mut v = Variant {
            name: spec.to_string(),
            config: eval_config(),
            stages: Stages::default(),
            naive: false,
            candidates: 1,
        };
        if spec == "naive" {
            v.naive = true;
            return Ok(v);
        }
        if spec == "default" || spec.is_empty() {
            return Ok(v);
        }
        for kv in spec.split(',') {
            let (k, val) =
                kv.split_once('=').with_context(|| format!("variant '{spec}': expected key=value, got '{kv}'"))?;
            let flag = || match val {
                "true" | "on" => Ok(true),
                "false" | "off" => Ok(false),
                _ => bail!("variant '{spec}': {k} takes true or false"),
            };
            match k {
                "syntaxWindow" => v.stages.syntax_window = flag()?,
                "crossFile" => v.stages.cross_file = flag()?,
                "syntaxCheck" => v.stages.syntax_check = flag()?,
                "modelIndents" => v.stages.model_indents = flag()?,
                _ => {
                    let value: Value = serde_json::from_str(val).unwrap_or_else(|_| Value::String(val.to_string()));
                    let problems = v.config.update(&json!({ k: value }));
                    if !problems.is_empty() {
                        bail!("variant '{spec}': {}", problems.message());
                    }
                    if k == "suggestions" {
                        v.candidates = v.config.suggestions;
                    }
                }
            }
        }
        Ok(v)
    }
}

/// The server's defaults, with a time budget that a busy 2-core machine
/// does not hit (quality is measured apart from load).
fn eval_config() -> Config {
    Config { timeout_ms: 60_000, ..Config::default() }
}

/// One completion's result.
#[derive(Debug, Clone)]
pub struct Scored {
    pub case: String,
    pub lang: String,
    pub kind: String,
    pub got: String,
    pub empty: Option<&'static str>,
    pub exact: bool,
    pub similarity: f64,
    /// All expected lines (block_lines: 2-4 of them) match.
    pub lines_exact: bool,
    /// The document with the completion has no more syntax errors than
    /// the original file.
    pub parses: bool,
    pub ms: f64,
    pub generated: usize,
    /// Tokens of the prompt, as the engine counted them.
    pub prompt_tokens: usize,
    /// Planning time (windows, syntax queries, prompt).
    pub context_ms: f64,
    /// Suggestions offered (with `suggestions=N`), and whether the first
    /// line of any of them is right.
    pub offered: usize,
    pub any_exact: bool,
}

fn first_line(s: &str) -> &str {
    s.split('\n').next().unwrap_or("").trim_end()
}

/// 1 - Levenshtein distance / the longer length, over characters.
pub fn similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    1.0 - prev[b.len()] as f64 / a.len().max(b.len()) as f64
}

pub fn score(set: &CaseSet, c: &Case, got: &str, empty: Option<&'static str>, ms: f64, generated: usize) -> Scored {
    let want = set.expected(c);
    let exact = !got.trim().is_empty() && first_line(got) == first_line(want);
    let want_lines: Vec<&str> = want.split('\n').map(str::trim_end).collect();
    let got_lines: Vec<&str> = got.split('\n').map(str::trim_end).take(want_lines.len()).collect();
    let lang = Lang::from_path(&set.files[c.file].path);
    let parses = match lang {
        Some(l) if !got.trim().is_empty() => {
            let text = &set.files[c.file].text;
            let with = format!("{}{}{}", &text[..c.cursor], got, &text[c.end..]);
            crate::syntax::error_count(l, &with) <= crate::syntax::error_count(l, text)
        }
        _ => false,
    };
    Scored {
        case: c.id.clone(),
        lang: c.lang.clone(),
        kind: c.kind.clone(),
        got: got.to_string(),
        empty,
        exact,
        similarity: similarity(first_line(got), first_line(want)),
        lines_exact: got_lines == want_lines,
        parses,
        ms,
        generated,
        prompt_tokens: 0,
        context_ms: 0.0,
        offered: usize::from(!got.trim().is_empty()),
        any_exact: exact,
    }
}

/// One case through the pipeline with a variant's settings.
pub fn run_case(engine: &Engine, set: &CaseSet, c: &Case, v: &Variant) -> Scored {
    let doc = set.document(c);
    let path = &set.files[c.file].path;
    let t = std::time::Instant::now();
    if v.naive {
        // Plain continuation of the last 4,000 characters before the cursor,
        // stopped at the line's end: what any engine gives without a pipeline.
        let prefix = &doc[..c.cursor];
        let mut start = c.cursor.saturating_sub(4000);
        while !prefix.is_char_boundary(start) {
            start += 1;
        }
        let mut req = Request::new(crate::prompt::prefix_only(&prefix[start..]));
        req.heal = false;
        req.max_tokens = 48;
        req.stop.push("\n".into());
        return match engine.generate_blocking(req) {
            Ok((g, _)) => {
                let empty = g.text.trim().is_empty().then_some(Empty::ModelEmpty.name());
                score(set, c, &g.text, empty, t.elapsed().as_secs_f64() * 1e3, g.generated_tokens)
            }
            Err(e) => score(
                set,
                c,
                "",
                Some(if matches!(e, crate::engine::EngineError::PromptTooLong { .. }) {
                    "prompt-too-long"
                } else {
                    "engine-error"
                }),
                0.0,
                0,
            ),
        };
    }
    let rope = ropey::Rope::from_str(&doc);
    let others = if v.stages.cross_file { imported_definitions(set, path, &doc) } else { Vec::new() };
    let req = SuggestRequest {
        input: input_for(set, c, &rope, &others),
        config: &v.config,
        stages: v.stages,
        last: None,
        key: None,
        arrived: 0,
        candidates: v.candidates,
    };
    let out = complete::suggest_blocking(engine, &req);
    let generation = out.generation.as_ref();
    // An alternative's tokens begin with the main answer's first `at`,
    // generated once.
    let generated = generation
        .map_or(0, |g| g.generated_tokens + g.alternatives.iter().map(|a| a.tokens.len() - a.at).sum::<usize>());
    let first = score(set, c, &out.text, out.empty.map(Empty::name), out.total_ms, generated);
    let want = first_line(set.expected(c)).to_string();
    Scored {
        prompt_tokens: generation.map_or(0, |g| g.prompt_tokens),
        context_ms: out.context_ms,
        offered: first.offered + out.alternatives.len(),
        any_exact: first.exact || out.alternatives.iter().any(|a| first_line(a) == want),
        ..first
    }
}

/// The pipeline's input for case `c`: `rope` holds the case's document
/// (`set.document(c)`), `others` the other files' definitions.
pub fn input_for<'a>(
    set: &'a CaseSet,
    c: &Case,
    rope: &'a ropey::Rope,
    others: &'a [complete::OtherFile],
) -> Input<'a> {
    let path = &set.files[c.file].path;
    Input {
        rope,
        cursor: rope.byte_to_char(c.cursor),
        lang: Lang::from_path(path),
        parsed: None,
        path,
        repo_name: "",
        others,
    }
}

/// The definitions of the files that `doc` (the case's document, at
/// `path`) imports, resolved as the server resolves them, in the first of
/// the set's source folders that holds `path`. None without sources.
fn imported_definitions(set: &CaseSet, path: &str, doc: &str) -> Vec<complete::OtherFile> {
    const MAX_FILE: usize = 512 * 1024;
    const MAX_FILES: usize = 24;
    let Some(lang) = Lang::from_path(path) else { return Vec::new() };
    let Some(root) = set.sources.iter().find(|s| s.join(path).is_file()) else { return Vec::new() };
    let Some(parsed) = crate::syntax::Parsed::parse(lang, doc) else { return Vec::new() };
    let ws = crate::workspace::Workspace::new([root.clone()]);
    let Some(real_root) = ws.roots().first().cloned() else { return Vec::new() };
    let current = real_root.join(path);
    let imports = parsed.imports(doc);
    ws.resolve_imports(lang, &imports, &current, Some(&real_root), MAX_FILES)
        .into_iter()
        .filter_map(|imp| {
            let l = Lang::from_path(&imp.path.to_string_lossy());
            let f = ws.read(&imp.path, MAX_FILE)?;
            Some(complete::OtherFile {
                path: imp.rel,
                lang: l,
                defs: std::sync::Arc::new(complete::definitions_of(&f, l)),
            })
        })
        .collect()
}

/// Picks up to `limit` cases per language (spread over the set, so every
/// position kind is there), for the languages asked for. `offset` shifts
/// the spread by that many cases: `--limit 10 --offset 3` is a second
/// sample, disjoint from `--limit 10`'s.
pub fn select<'a>(
    set: &'a CaseSet,
    limit: Option<usize>,
    offset: usize,
    langs: &[String],
    kinds: &[String],
) -> Vec<&'a Case> {
    let mut by_lang: BTreeMap<&str, Vec<&Case>> = BTreeMap::new();
    for c in &set.cases {
        if (langs.is_empty() || langs.contains(&c.lang)) && (kinds.is_empty() || kinds.contains(&c.kind)) {
            by_lang.entry(&c.lang).or_default().push(c);
        }
    }
    let mut out = Vec::new();
    for (_, mut cs) in by_lang {
        let n = cs.len();
        cs.rotate_left(offset % n.max(1));
        out.extend(crate::cli::eval::pick(&cs, limit));
    }
    out
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Aggregates of a group of results.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    pub n: usize,
    pub exact: f64,
    pub similarity: f64,
    pub empty: f64,
    pub parses: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
}

pub(crate) fn summarize(rs: &[&Scored]) -> Summary {
    let n = rs.len();
    if n == 0 {
        return Summary::default();
    }
    let share = |f: &dyn Fn(&Scored) -> bool| rs.iter().filter(|r| f(r)).count() as f64 / n as f64;
    let ms: Vec<f64> = rs.iter().map(|r| r.ms).collect();
    Summary {
        n,
        exact: share(&|r| r.exact),
        similarity: rs.iter().map(|r| r.similarity).sum::<f64>() / n as f64,
        // Empty answers where the cursor is in code (comments and strings are quiet on purpose).
        empty: share(&|r| r.empty.is_some() && r.empty != Some(Empty::Quiet.name())),
        parses: share(&|r| r.parses),
        p50_ms: pct(&ms, 0.5),
        p90_ms: pct(&ms, 0.9),
    }
}

/// The report of one variant: per language, per position kind, the
/// multi-line cases, and the reasons for empty answers.
pub fn report(variant: &str, rs: &[Scored]) -> String {
    let mut s = String::new();
    let all: Vec<&Scored> = rs.iter().collect();
    let line = |name: &str, x: &Summary| {
        format!(
            "  {name:<14} n={:<4} exact={:.3} edit_sim={:.3} empty={:.3} parses={:.3} p50={:.0}ms p90={:.0}ms\n",
            x.n, x.exact, x.similarity, x.empty, x.parses, x.p50_ms, x.p90_ms
        )
    };
    s.push_str(&format!("variant {variant}\n"));
    s.push_str(&line("all", &summarize(&all)));
    let mut langs: BTreeMap<&str, Vec<&Scored>> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, Vec<&Scored>> = BTreeMap::new();
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for r in rs {
        langs.entry(&r.lang).or_default().push(r);
        kinds.entry(&r.kind).or_default().push(r);
        if let Some(e) = r.empty {
            *reasons.entry(e).or_default() += 1;
        }
    }
    for (l, v) in &langs {
        s.push_str(&line(l, &summarize(v)));
    }
    for (k, v) in &kinds {
        s.push_str(&line(k, &summarize(v)));
    }
    if rs.iter().any(|r| r.offered > 1) {
        let n = rs.len().max(1) as f64;
        let offered = rs.iter().map(|r| r.offered).sum::<usize>() as f64 / n;
        let any = rs.iter().filter(|r| r.any_exact).count() as f64 / n;
        s.push_str(&format!("  suggestions    offered={offered:.2} per case, the right line among them={any:.3}\n"));
        for (l, v) in &langs {
            let any = v.iter().filter(|r| r.any_exact).count() as f64 / v.len() as f64;
            s.push_str(&format!("    {l:<12} among them={any:.3}\n"));
        }
    }
    if let Some(block) = kinds.get("block_lines") {
        let n = block.len().max(1) as f64;
        let exact = block.iter().filter(|r| r.lines_exact).count() as f64 / n;
        s.push_str(&format!("  multi-line     n={:<4} all_lines_exact={exact:.3}\n", block.len()));
    }
    let reasons: Vec<String> = reasons.iter().map(|(k, n)| format!("{k}={n}")).collect();
    s.push_str(&format!("  empty reasons: {}\n", if reasons.is_empty() { "none".into() } else { reasons.join(" ") }));
    s
}

pub struct RealCodeOptions {
    pub cases: PathBuf,
    pub limit: Option<usize>,
    /// Shifts the per-language spread (a second, disjoint sample).
    pub offset: usize,
    /// Where the files' packages are installed, for cross-file context.
    pub sources: Vec<PathBuf>,
    pub langs: Vec<String>,
    pub kinds: Vec<String>,
    pub variants: Vec<Variant>,
    /// Per-case results as JSON lines.
    pub out: Option<PathBuf>,
}

/// Runs every variant on every selected case, interleaved per case (the
/// variants that share a prompt prefix reuse its KV cache), and prints a
/// report per variant.
pub fn run(engine: &Engine, opts: &RealCodeOptions) -> Result<()> {
    let mut set = load(&opts.cases)?;
    set.sources = opts.sources.clone();
    let cases = select(&set, opts.limit, opts.offset, &opts.langs, &opts.kinds);
    if !set.sources.is_empty() {
        let found =
            cases.iter().filter(|c| set.sources.iter().any(|s| s.join(&set.files[c.file].path).is_file())).count();
        eprintln!(
            "real-code: {found} of {} cases have their package under --sources (cross-file context)",
            cases.len()
        );
    }
    if cases.is_empty() {
        bail!("no cases selected");
    }
    let mut results: Vec<Vec<Scored>> = vec![Vec::new(); opts.variants.len()];
    let mut out_file = match &opts.out {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => None,
    };
    let t0 = std::time::Instant::now();
    for (n, c) in cases.iter().enumerate() {
        for (vi, v) in opts.variants.iter().enumerate() {
            let r = run_case(engine, &set, c, v);
            if let Some(f) = out_file.as_mut() {
                let row = json!({"variant": v.name, "case": r.case, "lang": r.lang, "kind": r.kind, "got": r.got, "want": set.expected(c),
                    "exact": r.exact, "any_exact": r.any_exact, "offered": r.offered, "similarity": r.similarity, "lines_exact": r.lines_exact, "parses": r.parses, "empty": r.empty, "ms": r.ms, "generated": r.generated,
                    "prompt_tokens": r.prompt_tokens, "context_ms": r.context_ms});
                writeln!(f, "{row}")?;
                // Row by row: a run stopped early keeps what it measured.
                f.flush()?;
            }
            results[vi].push(r);
        }
        if (n + 1) % 10 == 0 || n + 1 == cases.len() {
            let ex: Vec<String> = results
                .iter()
                .map(|rs| format!("{:.3}", rs.iter().filter(|r| r.exact).count() as f64 / rs.len() as f64))
                .collect();
            eprintln!(
                "  {}/{} cases, {:.0} s, exact so far: {}",
                n + 1,
                cases.len(),
                t0.elapsed().as_secs_f64(),
                ex.join(" / ")
            );
        }
    }
    let mut stdout = std::io::stdout().lock();
    for (v, rs) in opts.variants.iter().zip(&results) {
        stdout.write_all(report(&v.name, rs).as_bytes())?;
    }
    Ok(())
}

/// Typing replay options: cases per language, the server's settings.
pub struct TypingOptions {
    pub cases: PathBuf,
    pub per_lang: usize,
    pub langs: Vec<String>,
    pub model: Option<String>,
    pub settings: Value,
}

/// Types the expected line one character at a time through a real `wick
/// serve` (an incremental didChange and an inline-completion request per
/// keystroke) and reports the share of the line the user could have
/// accepted (from the first keystroke whose ghost text is exactly the rest
/// of the line) and the per-keystroke latency.
pub fn typing(bin: &Path, opts: &TypingOptions) -> Result<()> {
    use crate::server::client::{caps_with_progress, Client, LONG};
    let set = load(&opts.cases)?;
    let kinds: Vec<String> =
        ["line_start", "after_ident", "after_bracket", "call_args"].iter().map(|s| s.to_string()).collect();
    let cases = select(&set, Some(opts.per_lang), 0, &opts.langs, &kinds);
    let mut args = Vec::new();
    if let Some(m) = &opts.model {
        args.push("--model");
        args.push(m.as_str());
    }
    let mut client = Client::spawn(bin, &args, &[]);
    client.initialize(caps_with_progress(), opts.settings.clone());
    client.wait_model();
    let mut by_lang: BTreeMap<String, (Vec<f64>, usize, usize)> = BTreeMap::new();
    let mut latencies = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let doc = set.document(c);
        let want = first_line(set.expected(c)).to_string();
        let uri = format!("file:///real-code/{n}/{}", set.files[c.file].path.rsplit('/').next().unwrap_or("x"));
        let language = Lang::from_path(&set.files[c.file].path).map(|l| l.language_id()).unwrap_or("plaintext");
        client.open(&uri, language, &doc);
        let before = &doc[..c.cursor];
        let line = before.matches('\n').count() as u32;
        let col0 = before.rsplit('\n').next().unwrap_or("").encode_utf16().count() as u32;
        let chars: Vec<char> = want.chars().collect();
        let mut accepted = 0.0;
        let mut col = col0;
        for k in 0..chars.len() {
            if k > 0 {
                let ch = chars[k - 1];
                client.notify(
                    "textDocument/didChange",
                    json!({"textDocument": {"uri": uri, "version": k + 1}, "contentChanges": [{"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": col}}, "text": ch.to_string()}]}),
                );
                col += ch.len_utf16() as u32;
            }
            let t = std::time::Instant::now();
            let id = client.request(
                "textDocument/inlineCompletion",
                json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": col}, "context": {"triggerKind": 2}}),
            );
            let r = client.response(id, LONG);
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            let shown = r["result"]["items"][0]["insertText"]
                .as_str()
                .or_else(|| r["result"][0]["insertText"].as_str())
                .unwrap_or("")
                .to_string();
            let rest: String = chars[k..].iter().collect();
            if !shown.is_empty() && first_line(&shown) == rest.trim_end() {
                accepted = (chars.len() - k) as f64 / chars.len() as f64;
                break;
            }
        }
        client.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
        let e = by_lang.entry(c.lang.clone()).or_default();
        e.0.push(accepted);
        e.1 += usize::from(accepted > 0.0);
        e.2 += 1;
        eprintln!("  typing {}/{} {}: accepted {:.0}% of {:?}", n + 1, cases.len(), c.id, accepted * 100.0, want);
    }
    let _ = client.shutdown();
    let mut stdout = std::io::stdout().lock();
    let mut all = Vec::new();
    for (l, (acc, right, n)) in &by_lang {
        writeln!(
            stdout,
            "  typing {l:<12} lines={n} accepted_share={:.3} ever_right={right}/{n}",
            acc.iter().sum::<f64>() / *n as f64
        )?;
        all.extend(acc.iter().copied());
    }
    writeln!(
        stdout,
        "  typing all          lines={} accepted_share={:.3} keystrokes={} p50={:.0}ms p90={:.0}ms",
        all.len(),
        all.iter().sum::<f64>() / all.len().max(1) as f64,
        latencies.len(),
        pct(&latencies, 0.5),
        pct(&latencies, 0.9)
    )?;
    Ok(())
}
