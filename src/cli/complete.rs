//! `wick complete FILE:LINE:COL`: what the editor would show there, through
//! the one pipeline (`complete::suggest`), with the server's settings.

use crate::engine::Engine;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

pub struct CompleteOptions {
    pub file: PathBuf,
    /// 1-based.
    pub line: usize,
    pub col: usize,
    pub max_tokens: Option<usize>,
    pub single_line: bool,
    /// The server's settings, as JSON.
    pub settings: Option<String>,
    /// Also print what the model wrote before the clean-up.
    pub raw: bool,
    /// How many suggestions (1 to 3): what the editor cycles through when
    /// asked for more.
    pub suggestions: usize,
}

/// Completes at the position and prints the answer; `load_local` loads the
/// local model (unless the settings name a team server).
pub fn run(opts: &CompleteOptions, load_local: impl FnOnce() -> Result<Engine>) -> Result<()> {
    let (file, line, col) = (&opts.file, opts.line, opts.col);
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let text = String::from_utf8(text).map_err(|_| anyhow::anyhow!("{}: not valid UTF-8", file.display()))?;
    let offset =
        crate::offset_of(&text, line, col).with_context(|| format!("{}: no position {line}:{col}", file.display()))?;
    let mut cfg = crate::config::Config { timeout_ms: 60_000, ..Default::default() };
    if let Some(s) = &opts.settings {
        let v: serde_json::Value = serde_json::from_str(s).context("--settings is not JSON")?;
        let problems = cfg.update(&v);
        if !problems.is_empty() {
            bail!("{}", problems.message());
        }
    }
    if let Some(n) = opts.max_tokens {
        cfg.max_tokens = n;
    }
    if opts.single_line {
        cfg.multiline = crate::config::Multiline::Never;
    }
    let engine = match cfg.backend.clone() {
        // `--settings '{"backend": {...}}'`: the same team server the editor uses.
        Some(remote) => {
            let engine = Engine::remote(remote, None);
            let info = engine.wait_ready()?;
            if let Some(p) = engine.health().borrow().problem.clone() {
                bail!("{}: {p}", info.path);
            }
            eprintln!("wick: using {}", info.path);
            engine
        }
        None => load_local()?,
    };
    let rope = ropey::Rope::from_str(&text);
    let path = file.display().to_string();
    let req = crate::complete::SuggestRequest {
        input: crate::complete::Input {
            rope: &rope,
            cursor: rope.byte_to_char(offset),
            lang: crate::syntax::Lang::from_path(&path),
            parsed: None,
            path: &path,
            repo_name: "",
            others: &[],
        },
        config: &cfg,
        stages: crate::complete::Stages::default(),
        last: None,
        key: None,
        arrived: 0,
        candidates: opts.suggestions,
    };
    let out = crate::complete::suggest_blocking(&engine, &req);
    if let Some(g) = &out.generation {
        eprintln!(
            "wick: prompt {} tokens, prefill {:.0} ms, {} tokens in {:.0} ms ({:.1} tok/s), total {:.0} ms, stop {:?}",
            g.prompt_tokens,
            g.prefill_ms,
            g.generated_tokens,
            g.decode_ms,
            g.generated_tokens as f64 / (g.decode_ms / 1e3).max(1e-9),
            out.total_ms,
            g.stop
        );
    }
    if opts.raw {
        eprintln!("wick: the model wrote {:?}", out.raw);
        for a in out.generation.iter().flat_map(|g| &g.alternatives) {
            eprintln!("wick: an alternative (first token p = {:.3}) wrote {:?}", a.p, a.text);
        }
    }
    if let Some(why) = out.empty {
        eprintln!("wick: no completion here ({})", why.name());
        return Ok(());
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.text.as_bytes())?;
    stdout.write_all(b"\n")?;
    for (i, a) in out.alternatives.iter().enumerate() {
        stdout.flush()?;
        eprintln!("wick: suggestion {}:", i + 2);
        stdout.write_all(a.as_bytes())?;
        stdout.write_all(b"\n")?;
    }
    Ok(())
}
