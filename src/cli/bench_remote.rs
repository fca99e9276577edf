//! `wick bench remote`: N simulated editors typing at once against one
//! serving engine. Each editor is its own `wick serve` process with the
//! `backend` setting, opens its own file and types one line a character at
//! a time (an incremental `didChange` and an inline-completion request per
//! keystroke, the next keystroke `pause` after the answer: closed-loop
//! typing). Reports keystroke latency and the server's throughput, per
//! backend kind (`llama.cpp`: `cache_prompt` and one slot per document;
//! `openai`: the plain `/v1/completions`, no slot).

use crate::server::client::{caps_with_progress, Client, LONG};
use anyhow::{bail, Result};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

pub(crate) struct RemoteBenchOptions {
    pub url: String,
    /// Backend kinds to compare (`llama.cpp`, `openai`, `ollama`).
    pub kinds: Vec<String>,
    pub model: String,
    /// Editors typing at once, one run per count.
    pub editors: Vec<usize>,
    pub keystrokes: usize,
    /// Think time between an answer and the next keystroke.
    pub pause: Duration,
    pub context_tokens: usize,
}

struct EditorResult {
    latencies: Vec<f64>,
    empty: usize,
}

fn editor(
    bin: &Path,
    kind: &str,
    opts: &RemoteBenchOptions,
    sc: &super::bench_lsp::Scenario,
    n: usize,
) -> Result<EditorResult> {
    let mut c = Client::spawn(bin, &[], &[]);
    let backend = json!({"kind": kind, "url": opts.url, "model": opts.model, "timeoutMs": 120000});
    c.initialize(
        caps_with_progress(),
        json!({"backend": backend, "contextTokens": opts.context_tokens, "maxTokens": 24, "multiline": "never",
               "timeoutMs": 60000}),
    );
    let st = c.wait_notification(LONG, |v| v["method"] == "wick/status" && v["params"]["state"] != "loading");
    if st.as_ref().map(|s| s["params"]["state"] != "ready").unwrap_or(true) {
        bail!("editor {n}: the backend is not ready: {st:?}");
    }
    let uri = format!("file:///bench/editor{n}.py");
    c.open(&uri, "python", &format!("{}{}", sc.prefix, sc.suffix));
    let line = sc.prefix.matches('\n').count() as u32;
    let col0 = sc.prefix.rsplit('\n').next().unwrap_or("").chars().count() as u32;
    let mut out = EditorResult { latencies: Vec::new(), empty: 0 };
    for (k, ch) in sc.typed.chars().take(opts.keystrokes).enumerate() {
        let col = col0 + k as u32;
        let t = Instant::now();
        let at = json!({"line": line, "character": col});
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": k + 2},
                   "contentChanges": [{"range": {"start": at, "end": at}, "text": ch.to_string()}]}),
        );
        let id = c.request(
            "textDocument/inlineCompletion",
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": col + 1},
                   "context": {"triggerKind": 2}}),
        );
        let r = c.response(id, LONG);
        out.latencies.push(t.elapsed().as_secs_f64() * 1e3);
        if r["result"].as_array().is_none_or(|a| a.is_empty()) {
            out.empty += 1;
        }
        std::thread::sleep(opts.pause);
    }
    let _ = c.shutdown();
    Ok(out)
}

pub fn run(bin: &Path, opts: &RemoteBenchOptions) -> Result<()> {
    use std::io::Write;
    let most = opts.editors.iter().copied().max().unwrap_or(1);
    // Other files per backend kind: the server's prompt cache from one
    // kind's run must not speed up the next one.
    let sc = super::bench_lsp::scenarios(&super::eval::default_data_dir(), most * opts.kinds.len(), 5000, 1000)?;
    let mut out = std::io::stdout();
    writeln!(out, "| backend | editors | keystrokes | p50 ms | p90 ms | empty | completions/s |")?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    for (ki, kind) in opts.kinds.iter().enumerate() {
        let sc = &sc[ki * most..(ki + 1) * most];
        for &n in &opts.editors {
            let t = Instant::now();
            let results: Vec<Result<EditorResult>> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..n).map(|i| s.spawn(move || editor(bin, kind, opts, &sc[i], i))).collect();
                hs.into_iter().map(|h| h.join().unwrap_or_else(|_| bail!("an editor thread panicked"))).collect()
            });
            let wall = t.elapsed().as_secs_f64();
            let mut lat = Vec::new();
            let mut empty = 0;
            for r in results {
                let r = r?;
                lat.extend(r.latencies);
                empty += r.empty;
            }
            let count = lat.len();
            let busy: f64 = lat.iter().sum::<f64>() / 1e3;
            let (p50, p90) = (super::bench_lsp::pct(&mut lat.clone(), 0.5), super::bench_lsp::pct(&mut lat, 0.9));
            // Throughput over the time requests were outstanding (the think
            // time between keystrokes is the editors', not the server's).
            let rate = count as f64 / (busy / n as f64).max(1e-9);
            writeln!(out, "| {kind} | {n} | {count} | {p50:.0} | {p90:.0} | {empty} | {rate:.1} |")?;
            tracing::info!(kind = %kind, editors = n, wall_s = wall, "remote bench run");
        }
    }
    Ok(())
}
