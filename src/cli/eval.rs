//! Evaluations on the shared HumanEval infilling sets, through the same
//! engine calls the server makes.

use crate::engine::{Engine, Request};
use crate::models::gguf::GgufFile;
use crate::models::tokenizer::Tokenizer;
use crate::prompt::{self, Family, FimOrder};
use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub task_id: String,
    pub prefix: String,
    pub suffix: String,
    pub middle: String,
    pub test: String,
    pub entry_point: String,
}

#[derive(Debug, Clone)]
pub(crate) struct EvalOptions {
    /// Through the server's own context builder and post-processing.
    pub server_path: bool,
    pub stages: crate::complete::Stages,
    /// Run the tests of each problem (Python, sandboxed subprocess).
    pub pass_at_1: bool,
    pub limit: Option<usize>,
    pub order: FimOrder,
    pub prefix_mode: bool,
    pub chat_mode: bool,
    pub heal: bool,
}

/// `../shared/eval/humaneval-infilling` next to the repository, or $WICK_EVAL_DIR.
pub(crate) fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WICK_EVAL_DIR") {
        return PathBuf::from(d);
    }
    let here = std::env::current_dir().unwrap_or_default();
    for base in
        [here.join("../shared"), here.join("shared"), PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")]
    {
        let d = base.join("eval/humaneval-infilling");
        if d.is_dir() {
            return d;
        }
    }
    here.join("../shared/eval/humaneval-infilling")
}

pub(crate) fn load_tasks(dir: &Path, file: &str) -> Result<Vec<Task>> {
    let path = dir.join(file);
    let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut s).with_context(|| format!("reading {}", path.display()))?;
    let mut tasks = Vec::new();
    for (i, line) in s.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        tasks.push(Task {
            task_id: get("task_id"),
            prefix: get("prompt"),
            suffix: get("suffix"),
            middle: get("canonical_solution"),
            test: get("test"),
            entry_point: get("entry_point"),
        });
    }
    Ok(tasks)
}

fn set_file(set: &str) -> Result<(&'static str, bool)> {
    Ok(match set {
        "humaneval-single-line" => ("HumanEval-SingleLineInfilling.jsonl.gz", true),
        "humaneval-multi-line" => ("HumanEval-MultiLineInfilling.jsonl.gz", false),
        _ => bail!("unknown set '{set}' (humaneval-single-line, humaneval-multi-line, kv-reuse)"),
    })
}

pub(crate) fn build_prompt(family: Option<Family>, t: &Task, opts: &EvalOptions) -> prompt::Prompt {
    match family {
        _ if opts.chat_mode => prompt::chat_fill(&t.prefix, &t.suffix),
        Some(f) if !opts.prefix_mode => f.fim(&t.prefix, &t.suffix, opts.order),
        _ => prompt::prefix_only(&t.prefix),
    }
}

/// Spreads `limit` picks evenly over the set, so a small limit still covers
/// many problems instead of the first few.
pub(crate) fn pick<T: Clone>(all: &[T], limit: Option<usize>) -> Vec<T> {
    match limit {
        Some(n) if n < all.len() => (0..n).map(|i| all[i * all.len() / n].clone()).collect(),
        _ => all.to_vec(),
    }
}

pub(crate) fn humaneval(engine: &Engine, set: &str, dir: &Path, opts: &EvalOptions) -> Result<()> {
    let (file, single) = set_file(set)?;
    let tasks = pick(&load_tasks(dir, file)?, opts.limit);
    let family = engine.info().and_then(|i| i.family);
    let mut hits = 0;
    let t0 = Instant::now();
    let mut gen_tokens = 0;
    let mut passed = 0;
    for (n, t) in tasks.iter().enumerate() {
        if opts.server_path {
            let (text, g) = server_path_completion(engine, t, single, opts)?;
            gen_tokens += g;
            let want_lines = t.middle.lines().count().max(1);
            let got: Vec<&str> = text.lines().take(want_lines).map(str::trim_end).collect();
            let want: Vec<&str> = t.middle.lines().take(want_lines).map(str::trim_end).collect();
            hits += usize::from(got == want);
            if opts.pass_at_1 && run_tests(t, &text) {
                passed += 1;
            }
            if (n + 1) % 20 == 0 {
                eprintln!("  {}/{}: exact match {:.1}%", n + 1, tasks.len(), 100.0 * hits as f64 / (n + 1) as f64);
            }
            continue;
        }
        let mut req = Request::new(build_prompt(family, t, opts));
        req.heal = opts.heal;
        let want_lines = t.middle.lines().count().max(1);
        if single {
            req.stop.push("\n".into());
            req.max_tokens = 64;
        } else {
            req.max_tokens = 256;
        }
        if opts.chat_mode {
            // The chat answer may open a code fence or repeat the line's indentation.
            req.stop = vec!["```\n".into()];
            req.max_tokens = if single { 48 } else { 256 };
        }
        let (mut g, _) = engine.generate_blocking(req)?;
        if opts.chat_mode {
            let body = g.text.trim_start_matches("```python\n").trim_start_matches("```\n");
            let body = body.trim_start_matches('\n');
            g.text = if single { body.lines().next().unwrap_or("").to_string() } else { body.to_string() };
        }
        gen_tokens += g.generated_tokens;
        // Chat answers lose the hole's indentation: compare them without it.
        let norm = |l: &str| if opts.chat_mode { l.trim().to_string() } else { l.trim_end().to_string() };
        let got: Vec<String> = g.text.lines().take(want_lines).map(norm).collect();
        let want: Vec<String> = t.middle.lines().take(want_lines).map(norm).collect();
        let ok = got == want;
        hits += usize::from(ok);
        tracing::debug!(task = %t.task_id, ok, got = ?got, want = ?want);
        if (n + 1) % 20 == 0 {
            eprintln!("  {}/{}: exact match {:.1}%", n + 1, tasks.len(), 100.0 * hits as f64 / (n + 1) as f64);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let mode = if opts.server_path {
        format!("server(syntax_window={},syntax_check={})", opts.stages.syntax_window, opts.stages.syntax_check)
    } else if opts.chat_mode {
        "chat".to_string()
    } else if opts.prefix_mode {
        "prefix".to_string()
    } else {
        format!("fim-{:?}", opts.order).to_lowercase()
    };
    let line = format!(
        "{set} mode={mode} heal={} tasks={} exact_match={:.1}% ({hits}/{}) time={:.0}s ({:.2} s/task, {} tokens)",
        opts.heal,
        tasks.len(),
        100.0 * hits as f64 / tasks.len().max(1) as f64,
        tasks.len(),
        secs,
        secs / tasks.len().max(1) as f64,
        gen_tokens
    );
    let line = if opts.pass_at_1 {
        format!("{line} pass@1={:.1}% ({passed}/{})", 100.0 * passed as f64 / tasks.len().max(1) as f64, tasks.len())
    } else {
        line
    };
    use std::io::Write;
    writeln!(std::io::stdout(), "{line}")?;
    Ok(())
}

/// How much of the prompt's KV cache survives each keystroke while the user
/// types a line, per FIM order: tokenization only, no model run.
pub(crate) fn kv_reuse(model: &Path, dir: &Path, limit: Option<usize>) -> Result<()> {
    let file = GgufFile::open(model)?;
    let tok = Tokenizer::from_gguf(&file.content)?;
    let family = Family::detect(|t| tok.token_id(t).is_some()).context("the model has no known FIM format")?;
    let tasks = pick(&load_tasks(dir, "HumanEval-SingleLineInfilling.jsonl.gz")?, Some(limit.unwrap_or(40)));
    use std::io::Write;
    let mut out = std::io::stdout();
    for order in [FimOrder::Psm, FimOrder::Spm] {
        let (mut keys, mut total, mut fresh) = (0usize, 0usize, 0usize);
        for t in &tasks {
            let mut prev: Vec<u32> = Vec::new();
            let chars: Vec<(usize, char)> = t.middle.char_indices().collect();
            for &(i, _) in chars.iter().skip(1) {
                let p = family.fim(&format!("{}{}", t.prefix, &t.middle[..i]), &t.suffix, order);
                let mut ids = Vec::new();
                for piece in &p.pieces {
                    match piece {
                        prompt::Piece::Text(s) => ids.extend(tok.encode(s)?),
                        prompt::Piece::Special(s) => ids.push(tok.require(s)?),
                        prompt::Piece::Control(s) => ids.extend(tok.encode(s)?),
                    }
                }
                let common = prev.iter().zip(&ids).take_while(|(a, b)| a == b).count();
                if !prev.is_empty() {
                    keys += 1;
                    total += ids.len();
                    fresh += ids.len() - common;
                }
                prev = ids;
            }
        }
        writeln!(
            out,
            "kv-reuse order={:?} keystrokes={keys} mean_prompt_tokens={:.0} mean_tokens_to_process={:.1} reused={:.1}%",
            order,
            total as f64 / keys.max(1) as f64,
            fresh as f64 / keys.max(1) as f64,
            100.0 * (total - fresh) as f64 / total.max(1) as f64
        )?;
    }
    Ok(())
}

/// One completion through the server's pipeline: the file as a document,
/// the cursor on an empty line where the hole is.
fn server_path_completion(engine: &Engine, t: &Task, single: bool, opts: &EvalOptions) -> Result<(String, usize)> {
    use crate::complete::{suggest_blocking, Input, SuggestRequest};
    // The hole is whole lines: in an editor that is the cursor on an empty
    // line, with the following lines after it.
    let text = format!("{}\n{}", t.prefix, t.suffix);
    let rope = ropey::Rope::from_str(&text);
    let cursor = rope.byte_to_char(t.prefix.len());
    let mut cfg = crate::config::Config { fim_order: opts.order, ..Default::default() };
    cfg.multiline = if single { crate::config::Multiline::Never } else { crate::config::Multiline::Auto };
    cfg.max_tokens = 256;
    cfg.timeout_ms = 60_000;
    let req = SuggestRequest {
        input: Input {
            rope: &rope,
            cursor,
            lang: Some(crate::syntax::Lang::Python),
            parsed: None,
            path: "solution.py",
            repo_name: "",
            others: &[],
        },
        config: &cfg,
        stages: opts.stages,
        last: None,
        key: None,
        arrived: 0,
        candidates: 1,
    };
    let out = suggest_blocking(engine, &req);
    Ok((out.text, out.generation.map_or(0, |g| g.generated_tokens)))
}

/// Runs a problem's tests on prefix + completion + suffix in a Python
/// subprocess: isolated mode, an empty temporary directory, CPU time and
/// memory limits, and a wall-clock timeout.
pub(crate) fn run_tests(t: &Task, completion: &str) -> bool {
    let mut middle = completion.to_string();
    if !middle.ends_with('\n') {
        middle.push('\n');
    }
    let program = format!("{}{}{}\n\n{}\n\ncheck({})\n", t.prefix, middle, t.suffix, t.test, t.entry_point);
    let Ok(dir) = tempdir() else { return false };
    let file = dir.join("prog.py");
    if std::fs::write(&file, program).is_err() {
        return false;
    }
    let script = format!("ulimit -t 10; ulimit -v 2000000; exec timeout 15 python3 -I {}", file.display());
    let ok = std::process::Command::new("sh")
        .args(["-c", &script])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let _ = std::fs::remove_dir_all(&dir);
    ok
}

fn tempdir() -> std::io::Result<PathBuf> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "wick-eval-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// One corpus snippet's outcome in [`fixes`].
#[derive(Debug, Clone)]
pub struct FixResult {
    pub file: String,
    pub message: String,
    /// The verified edit's new text, or why there is none.
    pub outcome: Result<String, String>,
    pub attempt: usize,
    pub seconds: f64,
}

/// The diagnostic a corpus file is about: `NAME.diag` beside it (JSON
/// `{line, message, source}`, standing for another server's diagnostic on
/// that 1-based line), else the first syntax error tree-sitter finds.
pub(crate) fn corpus_diagnostic(path: &Path, text: &str) -> Result<Option<(usize, usize, String)>> {
    let side = PathBuf::from(format!("{}.diag", path.display()));
    if side.exists() {
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&side)?)?;
        let line = v["line"].as_u64().context("diag: line")? as usize;
        let start = crate::offset_of(text, line, 1).context("diag: line past the end")?;
        let end = text[start..].find('\n').map_or(text.len(), |i| start + i);
        let ws = text[start..end].len() - text[start..end].trim_start().len();
        return Ok(Some((start + ws, end, v["message"].as_str().unwrap_or("error").to_string())));
    }
    let Some(lang) = crate::syntax::Lang::from_path(&path.to_string_lossy()) else { return Ok(None) };
    let Some(p) = crate::syntax::Parsed::parse(lang, text) else { return Ok(None) };
    Ok(crate::syntax::syntax_errors(&p, text, 1).into_iter().next().map(|e| (e.start, e.end, e.message)))
}

/// Runs the fix action on every broken snippet in `dir` and prints the fix
/// rate: the error gone and nothing new broken (verified by reparsing).
pub fn fixes(
    engine: &Engine,
    dir: &Path,
    opts: &crate::actions::run::ActionOptions,
    limit: Option<usize>,
    quiet: bool,
) -> Result<Vec<FixResult>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e != "diag") && p.is_file())
        .collect();
    files.sort();
    let files = pick(&files, limit);
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some((start, end, message)) = corpus_diagnostic(&path, &text)? else {
            bail!("{name}: no syntax error and no .diag file: not a broken snippet");
        };
        let lang = crate::syntax::Lang::from_path(&name);
        let parsed = lang.and_then(|l| crate::syntax::Parsed::parse(l, &text));
        let language_id = lang.map_or("", crate::syntax::Lang::language_id);
        let analysis = parsed.as_ref().map(|p| crate::syntax::Analysis::new(p, &text));
        let req = crate::actions::FixRequest { text: &text, lang, language_id, start, end, message: &message };
        let t = Instant::now();
        let r = crate::actions::run::fix(engine, &req, parsed.as_ref().zip(analysis.as_ref()), opts);
        let res = FixResult {
            file: name,
            message,
            attempt: r.as_ref().map_or(0, |f| f.attempt),
            outcome: r.map(|f| f.edit.text).map_err(|e| e.to_string()),
            seconds: t.elapsed().as_secs_f64(),
        };
        if !quiet {
            match &res.outcome {
                Ok(new) => writeln!(
                    std::io::stdout(),
                    "fixed   {:<28} {:<28} try {} {:>5.1}s  {:?}",
                    res.file,
                    res.message,
                    res.attempt,
                    res.seconds,
                    new.trim_end()
                )?,
                Err(e) => writeln!(
                    std::io::stdout(),
                    "FAILED  {:<28} {:<28}       {:>5.1}s  {e}",
                    res.file,
                    res.message,
                    res.seconds
                )?,
            }
        }
        out.push(res);
    }
    let fixed = out.iter().filter(|r| r.outcome.is_ok()).count();
    if !quiet {
        let secs: f64 = out.iter().map(|r| r.seconds).sum();
        writeln!(
            std::io::stdout(),
            "fix rate: {fixed}/{} = {:.1}% (mode {:?}, up to {} samples, {:.1} s a snippet on average)",
            out.len(),
            100.0 * fixed as f64 / out.len().max(1) as f64,
            opts.mode,
            opts.attempts,
            secs / out.len().max(1) as f64
        )?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{fix_prompt, plan_fix, FixMode, FixRequest};
    use crate::prompt::Family;
    use crate::syntax::{Analysis, Lang, Parsed};
    /// The fix corpus (tests/fixes), data-driven: for each broken snippet, the
    /// region the fix rewrites and the prompt the model gets are snapshotted
    /// in `tests/fixes/expected/<name>.prompt.txt` (`UPDATE_EXPECT=1`
    /// rewrites them). What the model answers is `tests/fix_corpus.rs`.
    #[test]
    fn corpus_fix_plans_and_prompts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixes");
        let mut paths: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e != "diag"))
            .collect();
        paths.sort();
        for path in &paths {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(path).unwrap();
            let (start, end, message) = corpus_diagnostic(path, &text).unwrap().expect(&name);
            let lang = Lang::from_path(&name).expect(&name);
            let r = FixRequest {
                text: &text,
                lang: Some(lang),
                language_id: lang.language_id(),
                start,
                end,
                message: &message,
            };
            let p = Parsed::parse(lang, &text).expect(&name);
            let plan = plan_fix(&r, Some((&p, &Analysis::new(&p, &text)))).unwrap_or_else(|e| panic!("{name}: {e}"));
            let lines = |b: usize| text[..b].matches('\n').count() + 1;
            let (prompt, stop) = fix_prompt(FixMode::Chat, &r, &plan, Some(Family::QwenCoder), None);
            let shown = format!(
                "lines {}-{} (syntax error: {}; errors {} in the text, {} in the region), stop {stop:?}\n{}\n",
                lines(plan.start),
                lines(plan.end.saturating_sub(1).max(plan.start)),
                plan.is_syntax,
                plan.errors_total,
                plan.errors_in_region,
                prompt.shown()
            );
            expect_test::expect_file![dir.join("expected").join(format!("{name}.prompt.txt"))].assert_eq(&shown);
        }
        assert!(paths.len() >= 20, "{}", paths.len());
    }
}
