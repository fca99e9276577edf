//! Soak: `wick serve` on pipes with a tiny model, driven by a seeded random
//! client (WICK_SOAK_SECS seconds, 60 by default): documents opened and
//! closed (up to 50, some of megabytes, long lines, every line-break kind),
//! edits with gaps in versions, bursts of completions with random
//! cancellation, code actions with other servers' non-ASCII diagnostics,
//! settings changes, malformed frames. Checked: every request answered
//! within 30 s, the server's copy of each document equals the client's, the
//! process stays up with bounded memory and threads, and exits cleanly.
//! Prints requests, documents, RSS and the p99 from an edit to its
//! `wick/documentText` while completions run.

mod common;

use common::lsp::{caps_with_progress, Client};
use common::{lsp_offset, tiny_model};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use wick::prompt::Family;
use wick::workspace::documents::Encoding;

const ANSWER_WITHIN: Duration = Duration::from_secs(30);
const MAX_DOCS: usize = 50;
const RSS_CAP_MB: u64 = 3072;
const THREADS_CAP: u64 = 256;

fn proc_status(pid: u32, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const PIECES: &[&str] = &[
    "\n",
    "\r\n",
    "\r",
    "\u{c}",
    "\u{2028}",
    "\u{85}",
    "é",
    "𝄞",
    "🦀",
    "中",
    "    ",
    "\t",
    "def ",
    "f(x",
    ")",
    ":",
    " = ",
    "1",
    "return ",
    "{",
    "}",
    "'",
    "#",
    "x",
    "self.",
    "import os",
    "if ",
    "pass",
];

fn random_text(rng: &mut StdRng, pieces: usize) -> String {
    (0..pieces).map(|_| PIECES[rng.random_range(0..PIECES.len())]).collect()
}

/// A large document: many ordinary lines, some very long ones, mixed breaks.
fn big_text(rng: &mut StdRng, bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 1000);
    let mut i = 0;
    while s.len() < bytes {
        if rng.random_ratio(1, 200) {
            s.push_str(&"x".repeat(rng.random_range(1000..20_000)));
        } else {
            s.push_str(&format!("def f{i}(a, b):\n    return a + b * {i}  # ünï\n"));
        }
        s.push_str(["\n", "\r\n", "\r", "\n\u{c}\n"][rng.random_range(0..4)]);
        i += 1;
    }
    s
}

struct Doc {
    text: String,
    version: i64,
}

fn lines_of(text: &str) -> u32 {
    (text.matches('\n').count() + text.matches('\r').count() + 1) as u32
}

#[test]
fn soak() {
    let secs: u64 = std::env::var("WICK_SOAK_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let mut rng = StdRng::seed_from_u64(0x50a6);
    let model = tiny_model(Family::QwenCoder);
    let mut c = Client::spawn(&["--model", model.to_str().unwrap()], &[]);
    c.initialize(caps_with_progress(), json!({"maxTokens": 16, "debounceMs": 0}));
    c.wait_model();
    let pid = c.child.id();
    let mut docs: BTreeMap<String, Doc> = BTreeMap::new();
    let mut next_doc = 0;
    let (mut requests, mut opened, mut edits) = (0u64, 0u64, 0u64);
    let mut edit_to_text_ms: Vec<f64> = Vec::new();
    let mut rss_samples: Vec<u64> = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut round = 0u64;
    while Instant::now() < end {
        round += 1;
        // Open (some large) or close documents.
        if docs.len() < MAX_DOCS && (docs.len() < 5 || rng.random_ratio(1, 4)) {
            let uri = format!("file:///soak/d{next_doc}.py");
            next_doc += 1;
            let (big, size, pieces) = (rng.random_ratio(1, 12), rng.random_range(1..4) << 20, rng.random_range(0..400));
            let text = if big { big_text(&mut rng, size) } else { random_text(&mut rng, pieces) };
            c.open(&uri, "python", &text);
            docs.insert(uri, Doc { text, version: 1 });
            opened += 1;
        } else if docs.len() > 5 && rng.random_ratio(1, 6) {
            let uri = docs.keys().nth(rng.random_range(0..docs.len())).unwrap().clone();
            c.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
            docs.remove(&uri);
        }
        let uris: Vec<String> = docs.keys().cloned().collect();
        let uri = uris[rng.random_range(0..uris.len())].clone();
        // A burst of completions, some cancelled, while edits arrive.
        let mut pending = Vec::new();
        for _ in 0..rng.random_range(1..5) {
            let d = &docs[&uri];
            let line = rng.random_range(0..lines_of(&d.text) + 2);
            let id = c.request(
                "textDocument/completion",
                json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": rng.random_range(0..40)}}),
            );
            requests += 1;
            if rng.random_ratio(1, 3) {
                c.notify("$/cancelRequest", json!({"id": id}));
            }
            pending.push(id);
        }
        // Edits, in order, or with a version left out and sent after.
        let d = docs.get_mut(&uri).unwrap();
        let mut held = None;
        for _ in 0..rng.random_range(1..4) {
            let n = lines_of(&d.text);
            let (l1, c1, l2, c2) = (
                rng.random_range(0..n + 1),
                rng.random_range(0..30),
                rng.random_range(0..n + 1),
                rng.random_range(0..30),
            );
            let pieces = rng.random_range(0..8);
            let new_text = random_text(&mut rng, pieces);
            let (a, b) = (lsp_offset(&d.text, l1, c1, Encoding::Utf16), lsp_offset(&d.text, l2, c2, Encoding::Utf16));
            let (a, b) = if a <= b { (a, b) } else { (b, a) };
            d.text.replace_range(a..b, &new_text);
            d.version += 1;
            let msg = json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": d.version},
                "contentChanges": [{"range": {"start": {"line": l1, "character": c1}, "end": {"line": l2, "character": c2}}, "text": new_text}]}});
            if held.is_none() && rng.random_ratio(1, 4) {
                held = Some(msg);
            } else {
                c.send(&msg);
            }
            edits += 1;
        }
        if let Some(m) = held {
            c.send(&m);
        }
        let t = Instant::now();
        let id = c.request("wick/documentText", json!({"uri": uri}));
        let r = c.response(id, ANSWER_WITHIN);
        edit_to_text_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r["result"]["text"].as_str(), Some(d.text.as_str()), "round {round}: {uri} differs");
        // Code actions with a spell checker's diagnostic on non-ASCII text.
        if rng.random_ratio(1, 3) {
            let n = lines_of(&d.text);
            let range = json!({"start": {"line": rng.random_range(0..n), "character": rng.random_range(0..20)},
                "end": {"line": rng.random_range(0..n + 1), "character": rng.random_range(0..20)}});
            let diag = json!({"range": range, "message": "Unknown word «ünï»", "source": "cSpell"});
            pending.push(c.request(
                "textDocument/codeAction",
                json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": [diag]}}),
            ));
            requests += 1;
        }
        if rng.random_ratio(1, 10) {
            let multiline = ["auto", "always", "never"][rng.random_range(0..3)];
            c.notify(
                "workspace/didChangeConfiguration",
                json!({"settings": {"wick": {"maxTokens": rng.random_range(1..24), "multiline": multiline}}}),
            );
        }
        if rng.random_ratio(1, 8) {
            let junk: &[&[u8]] = &[
                b"{not json",
                br#"[{"jsonrpc":"2.0","method":"initialized"}]"#,
                br#"{"jsonrpc":"2.0","id":{"x":1},"method":"x"}"#,
                b"\xff\xfe",
            ];
            c.send_raw(junk[rng.random_range(0..junk.len())]);
        }
        for id in pending {
            let r = c.response(id, ANSWER_WITHIN);
            assert!(r.get("result").is_some() || r.get("error").is_some(), "{r}");
        }
        assert!(c.child.try_wait().unwrap().is_none(), "the server exited");
        if round.is_multiple_of(10) {
            rss_samples.push(proc_status(pid, "VmRSS:"));
            assert!(proc_status(pid, "Threads:") < THREADS_CAP, "threads: {}", proc_status(pid, "Threads:"));
        }
    }
    // Every document as the client has it.
    for (uri, d) in &docs {
        let id = c.request("wick/documentText", json!({"uri": uri}));
        let r = c.response(id, ANSWER_WITHIN);
        assert_eq!(r["result"]["text"].as_str(), Some(d.text.as_str()), "{uri} differs at the end");
    }
    let rss_end = proc_status(pid, "VmRSS:");
    let threads = proc_status(pid, "Threads:");
    edit_to_text_ms.sort_by(f64::total_cmp);
    let p99 = edit_to_text_ms.get(edit_to_text_ms.len() * 99 / 100).copied().unwrap_or(0.0);
    let warm = rss_samples.get(rss_samples.len() / 4).copied().unwrap_or(rss_end);
    eprintln!(
        "soak: {secs} s, {round} rounds, {requests} requests, {edits} edits, {opened} documents opened ({} open at the end), RSS {} MB after warm-up -> {} MB at the end, {threads} threads, p99 edit->documentText {p99:.1} ms",
        docs.len(),
        warm / 1024,
        rss_end / 1024
    );
    assert!(rss_end / 1024 < RSS_CAP_MB, "RSS {} MB", rss_end / 1024);
    // No upward trend after warm-up beyond the documents still open.
    assert!(rss_end <= warm * 2 + 256 * 1024, "RSS grew from {} to {} MB", warm / 1024, rss_end / 1024);
    assert!(c.shutdown().success());
}

/// `exit` without `shutdown` first ends the server with code 1.
#[test]
fn exit_without_shutdown_is_code_1() {
    let model = tiny_model(Family::QwenCoder);
    let mut c = Client::spawn(&["--model", model.to_str().unwrap()], &[]);
    c.initialize(json!({}), json!({}));
    c.notify("exit", Value::Null);
    let deadline = Instant::now() + ANSWER_WITHIN;
    loop {
        if let Some(s) = c.child.try_wait().unwrap() {
            assert_eq!(s.code(), Some(1));
            break;
        }
        assert!(Instant::now() < deadline, "no exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
