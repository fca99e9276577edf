//! Evaluations on the shared HumanEval infilling sets, through the same
//! engine calls the server makes.

use crate::engine::{Engine, Request};
use crate::models::gguf::GgufFile;
use crate::models::tokenizer::Tokenizer;
use crate::prompt::{self, Family, FimOrder};
use anyhow::{bail, Context, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Task {
    pub task_id: String,
    pub prefix: String,
    pub suffix: String,
    pub middle: String,
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub limit: Option<usize>,
    pub order: FimOrder,
    pub prefix_mode: bool,
    pub chat_mode: bool,
    pub heal: bool,
}

/// `../shared/eval/humaneval-infilling` next to the repository, or $WICK_EVAL_DIR.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WICK_EVAL_DIR") {
        return PathBuf::from(d);
    }
    let here = std::env::current_dir().unwrap_or_default();
    for base in [here.join("../shared"), here.join("shared"), PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared")] {
        let d = base.join("eval/humaneval-infilling");
        if d.is_dir() {
            return d;
        }
    }
    here.join("../shared/eval/humaneval-infilling")
}

pub fn load_tasks(dir: &Path, file: &str) -> Result<Vec<Task>> {
    let path = dir.join(file);
    let f = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut s).with_context(|| format!("reading {}", path.display()))?;
    let mut tasks = Vec::new();
    for (i, line) in s.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
        tasks.push(Task { task_id: get("task_id"), prefix: get("prompt"), suffix: get("suffix"), middle: get("canonical_solution") });
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

pub fn build_prompt(family: Option<Family>, t: &Task, opts: &EvalOptions) -> prompt::Prompt {
    match family {
        _ if opts.chat_mode => prompt::chat_fill(&t.prefix, &t.suffix),
        Some(f) if !opts.prefix_mode => f.fim(&t.prefix, &t.suffix, opts.order),
        _ => prompt::prefix_only(&t.prefix),
    }
}

/// Spreads `limit` picks evenly over the set, so a small limit still covers
/// many problems instead of the first few.
pub fn pick<T: Clone>(all: &[T], limit: Option<usize>) -> Vec<T> {
    match limit {
        Some(n) if n < all.len() => (0..n).map(|i| all[i * all.len() / n].clone()).collect(),
        _ => all.to_vec(),
    }
}

pub fn humaneval(engine: &Engine, set: &str, dir: &Path, opts: &EvalOptions) -> Result<()> {
    let (file, single) = set_file(set)?;
    let tasks = pick(&load_tasks(dir, file)?, opts.limit);
    let family = engine.info().and_then(|i| i.family);
    let mut hits = 0;
    let t0 = Instant::now();
    let mut gen_tokens = 0;
    for (n, t) in tasks.iter().enumerate() {
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
    let mode = if opts.chat_mode { "chat".to_string() } else if opts.prefix_mode { "prefix".to_string() } else { format!("fim-{:?}", opts.order).to_lowercase() };
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
    use std::io::Write;
    writeln!(std::io::stdout(), "{line}")?;
    Ok(())
}

/// How much of the prompt's KV cache survives each keystroke while the user
/// types a line, per FIM order: tokenization only, no model run.
pub fn kv_reuse(model: &Path, dir: &Path, limit: Option<usize>) -> Result<()> {
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
