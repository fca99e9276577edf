//! `wick bench lsp`: replays typing through a real `wick serve` process and
//! reports keystroke-to-completion latency, cold (a fresh file) and warm
//! (each keystroke after the first), for both FIM orders; or, with
//! `--prefetch-wait`, the first keystroke in a file opened that long
//! before, with `prefetch` on and off.

use crate::server::client::{caps_with_progress, Client, LONG};
use anyhow::{Context, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;

pub(crate) struct LspBenchOptions {
    pub model: Option<String>,
    /// Device for the server (`--device`); its own setting otherwise.
    pub device: Option<String>,
    pub colds: usize,
    pub keystrokes: usize,
    pub context_tokens: usize,
    /// Seconds between opening a file (and reporting the cursor) and its
    /// first keystroke; compares `prefetch` on and off instead of orders.
    pub prefetch_wait: Option<f64>,
}

/// A Python file made of HumanEval problems with their solutions, split
/// around one line that the benchmark types.
pub(crate) struct Scenario {
    pub(crate) prefix: String,
    pub(crate) typed: String,
    pub(crate) suffix: String,
}

pub(crate) fn scenarios(dir: &Path, n: usize, prefix_chars: usize, suffix_chars: usize) -> Result<Vec<Scenario>> {
    let tasks = crate::cli::eval::load_tasks(dir, "HumanEval-SingleLineInfilling.jsonl.gz")?;
    // One solved file per problem, in order.
    let mut files: Vec<String> = Vec::new();
    let mut last = String::new();
    for t in &tasks {
        let id = t.task_id.rsplit_once('/').map(|x| x.0).unwrap_or("").to_string();
        if id != last {
            files.push(format!("{}{}{}", t.prefix, t.middle, t.suffix));
            last = id;
        }
    }
    let mut out = Vec::new();
    for s in 0..n {
        // Different files per scenario, so a cold run shares no cache.
        let mut text = String::new();
        let mut i = s * 17;
        while text.len() < prefix_chars + suffix_chars + 4000 {
            text.push_str(&files[i % files.len()]);
            text.push_str("\n\n");
            i += 1;
        }
        // Type the first indented code line after prefix_chars.
        let mut pos = prefix_chars;
        let line_start = loop {
            let ls = text[pos..].find('\n').map(|j| pos + j + 1).context("no line to type")?;
            let line = text[ls..].split('\n').next().unwrap_or("");
            // Code, not a docstring's example line (a quiet position).
            let in_docstring = text[..ls].matches("\"\"\"").count() % 2 == 1;
            if line.trim().len() > 20
                && line.starts_with("    ")
                && !line.trim_start().starts_with('#')
                && !line.contains('"')
                && !in_docstring
            {
                break ls;
            }
            pos = ls;
        };
        let line = text[line_start..].split('\n').next().unwrap_or("").to_string();
        let indent = line.len() - line.trim_start().len();
        let prefix = text[..line_start + indent].to_string();
        let typed = line.trim_start().to_string();
        let rest_start = line_start + line.len();
        let suffix: String = text[rest_start..].chars().take(suffix_chars).collect();
        out.push(Scenario { prefix, typed, suffix });
    }
    Ok(out)
}

pub(crate) fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}

pub fn run(bin: &Path, opts: &LspBenchOptions) -> Result<()> {
    let data = crate::cli::eval::default_data_dir();
    let sc = scenarios(&data, opts.colds, 5000, 1000)?;
    use std::io::Write;
    let mut out = std::io::stdout();
    let variants: Vec<(String, serde_json::Value)> = match opts.prefetch_wait {
        Some(_) => vec![
            ("prefetch=false".into(), json!({"prefetch": false})),
            ("prefetch=true".into(), json!({"prefetch": true})),
        ],
        None => ["spm", "psm"].iter().map(|o| (format!("order={o}"), json!({"fimOrder": o}))).collect(),
    };
    for (name, settings) in variants {
        let mut args: Vec<String> = Vec::new();
        if let Some(m) = &opts.model {
            args.push("--model".into());
            args.push(m.clone());
        }
        if let Some(d) = &opts.device {
            args.push("--device".into());
            args.push(d.clone());
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut c = Client::spawn(bin, &argv, &[]);
        let mut init = json!({"contextTokens": opts.context_tokens, "maxTokens": 24, "multiline": "never"});
        for (k, v) in settings.as_object().into_iter().flatten() {
            init[k] = v.clone();
        }
        c.initialize(caps_with_progress(), init);
        c.wait_model();
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        let mut prompt_info = String::new();
        for (n, s) in sc.iter().enumerate() {
            let uri = format!("file:///bench/s{n}.py");
            let text = format!("{}{}", s.prefix, s.suffix);
            c.open(&uri, "python", &text);
            let line = s.prefix.matches('\n').count() as u32;
            let col0 = s.prefix.rsplit('\n').next().unwrap_or("").chars().count() as u32;
            let mut typed = s.typed.chars().take(opts.keystrokes).enumerate().peekable();
            if let Some(wait) = opts.prefetch_wait {
                // The cursor lands there (editors ask for code actions on
                // every move); the first keystroke comes `wait` s later.
                let at = json!({"line": line, "character": col0});
                let id = c.request(
                    "textDocument/codeAction",
                    json!({"textDocument": {"uri": uri}, "range": {"start": at, "end": at}, "context": {"diagnostics": []}}),
                );
                c.response(id, LONG);
                std::thread::sleep(std::time::Duration::from_secs_f64(wait));
                if let Some((_, ch)) = typed.next() {
                    let t = Instant::now();
                    c.notify(
                        "textDocument/didChange",
                        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"range": {"start": at, "end": at}, "text": ch.to_string()}]}),
                    );
                    let id = c.request(
                        "textDocument/inlineCompletion",
                        json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": col0 + 1}, "context": {"triggerKind": 2}}),
                    );
                    let r = c.response(id, LONG);
                    cold.push(t.elapsed().as_secs_f64() * 1e3);
                    if n == 0 {
                        prompt_info = r["result"].to_string().chars().take(80).collect();
                    }
                }
            } else {
                let t = Instant::now();
                let id = c.request(
                    "textDocument/inlineCompletion",
                    json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": col0}, "context": {"triggerKind": 2}}),
                );
                let r = c.response(id, LONG);
                cold.push(t.elapsed().as_secs_f64() * 1e3);
                if n == 0 {
                    prompt_info = r["result"].to_string().chars().take(80).collect();
                }
            }
            for (k, ch) in typed {
                let col = col0 + k as u32;
                let t = Instant::now();
                c.notify(
                    "textDocument/didChange",
                    json!({"textDocument": {"uri": uri, "version": k + 2}, "contentChanges": [{"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": col}}, "text": ch.to_string()}]}),
                );
                let id = c.request(
                    "textDocument/inlineCompletion",
                    json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": col + 1}, "context": {"triggerKind": 2}}),
                );
                let _ = c.response(id, LONG);
                warm.push(t.elapsed().as_secs_f64() * 1e3);
            }
            c.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
        }
        let _ = c.shutdown();
        writeln!(
            out,
            "lsp {name} {} n={} p50={:.0}ms p90={:.0}ms | warm n={} p50={:.0}ms p90={:.0}ms | first answer {prompt_info}",
            if opts.prefetch_wait.is_some() { "first keystroke" } else { "cold" },
            cold.len(),
            pct(&mut cold.clone(), 0.5),
            pct(&mut cold, 0.9),
            warm.len(),
            pct(&mut warm.clone(), 0.5),
            pct(&mut warm, 0.9),
        )?;
    }
    Ok(())
}
