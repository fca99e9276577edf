//! Local statistics end to end: the real `wick serve` with a tiny model
//! records each shown suggestion's outcome in the data directory's
//! `stats.jsonl`, `stats: false` records nothing, and `wick stats` reads it
//! back as a table and as an HTML page that headless Chromium renders with
//! both plots.

mod common;

use common::lsp::{caps_with_progress, Client, LONG};
use common::{tiny_model, wick_bin};
use serde_json::{json, Value};
use wick::prompt::Family;
use wick::server::client::Client as Conn;
use wick::stats::{Outcome, Record};

const DOC: &str = "def f(x):\n    return x\n\ndef g(y):\n    return y\n";

fn server(data: &std::path::Path, settings: Value) -> Conn {
    let model = tiny_model(Family::QwenCoder);
    let mut c = Client::spawn(&["--model", model.to_str().unwrap()], &[("WICK_DATA_DIR", data.to_str().unwrap())]);
    let mut opts = json!({"maxTokens": 8, "multiline": "always", "prompt": "fim"});
    opts.as_object_mut().unwrap().extend(settings.as_object().unwrap().clone());
    c.initialize(caps_with_progress(), opts);
    c.wait_model();
    c
}

/// The inline completion at a place: its one item.
fn inline(c: &mut Conn, uri: &str, line: u32, character: u32) -> Value {
    let id = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character},
               "context": {"triggerKind": 2}}),
    );
    let r = c.response(id, LONG);
    let items = r["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{r}");
    items[0].clone()
}

fn suggestion_id(item: &Value) -> u64 {
    assert_eq!(item["command"]["command"], "wick.didAccept", "{item}");
    item["command"]["arguments"][0]["id"].as_u64().unwrap_or_else(|| panic!("no id: {item}"))
}

fn records(data: &std::path::Path) -> Vec<Record> {
    wick::stats::parse(&std::fs::read_to_string(data.join("stats.jsonl")).unwrap_or_default())
}

#[test]
fn accepts_partial_accepts_and_dismissals_are_recorded() {
    let data = tempfile::tempdir().unwrap();
    let mut c = server(data.path(), json!({}));
    let uri = "file:///t/stats.txt";
    c.open(uri, "plaintext", DOC);
    let a = suggestion_id(&inline(&mut c, uri, 1, 12));
    c.notify("wick/didAccept", json!({"id": a}));
    let b = suggestion_id(&inline(&mut c, uri, 4, 12));
    // The next suggestion for the document: b was dismissed.
    let item = inline(&mut c, uri, 0, 9);
    let d = suggestion_id(&item);
    assert!(a != b && b != d, "{a} {b} {d}");
    c.notify("wick/didAccept", json!({"id": d, "chars": 1}));
    // VS Code's client runs the item's command through the server.
    let e = suggestion_id(&inline(&mut c, uri, 3, 9));
    let id = c.request("workspace/executeCommand", json!({"command": "wick.didAccept", "arguments": [{"id": e}]}));
    let r = c.response(id, LONG);
    assert!(r.get("error").is_none(), "{r}");
    // Accepting twice, or an id never given, changes nothing.
    c.notify("wick/didAccept", json!({"id": a}));
    c.notify("wick/didAccept", json!({"id": 999}));
    // Shown and still showing at shutdown: dismissed.
    c.open("file:///t/other.txt", "plaintext", DOC);
    let f = suggestion_id(&inline(&mut c, "file:///t/other.txt", 1, 12));
    assert!(c.shutdown().success());
    let rs = records(data.path());
    let outcomes: Vec<_> = rs.iter().map(|r| (r.outcome, r.accepted_chars)).collect();
    let chars_d = item["insertText"].as_str().unwrap().chars().count() as u32;
    let partial = if chars_d > 1 { (Outcome::Partial, Some(1)) } else { (Outcome::Accepted, None) };
    assert_eq!(
        outcomes,
        [
            (Outcome::Accepted, None),
            (Outcome::Dismissed, None),
            partial,
            (Outcome::Accepted, None),
            (Outcome::Dismissed, None)
        ],
        "{rs:?} (ids {a} {b} {d} {e} {f})"
    );
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for r in &rs {
        assert_eq!(r.lang, "plaintext");
        assert!(r.chars > 0 && r.lines > 0 && r.t <= now && r.t + 600 > now, "{r:?}");
    }
}

#[test]
fn the_stats_setting_off_records_nothing_and_gives_no_command() {
    let data = tempfile::tempdir().unwrap();
    let mut c = server(data.path(), json!({"stats": false}));
    c.open("file:///t/off.txt", "plaintext", DOC);
    let item = inline(&mut c, "file:///t/off.txt", 1, 12);
    assert!(item.get("command").is_none_or(Value::is_null), "{item}");
    assert!(c.shutdown().success());
    assert!(!data.path().join("stats.jsonl").exists(), "stats: false writes nothing");
}

#[test]
fn an_unwritable_data_directory_never_ends_the_server() {
    let data = tempfile::tempdir().unwrap();
    let blocker = data.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let mut c = server(&blocker, json!({}));
    c.open("file:///t/x.txt", "plaintext", DOC);
    let a = suggestion_id(&inline(&mut c, "file:///t/x.txt", 1, 12));
    c.notify("wick/didAccept", json!({"id": a}));
    inline(&mut c, "file:///t/x.txt", 4, 12);
    assert!(c.shutdown().success());
}

fn sample_file(dir: &std::path::Path) -> std::path::PathBuf {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut text = String::new();
    for i in 0..200u64 {
        let outcome = match i % 4 {
            0 | 1 => Outcome::Accepted,
            2 => Outcome::Partial,
            _ => Outcome::Dismissed,
        };
        let r = Record {
            t: now - (i % 20) * 3 * 3600,
            lang: if i % 3 == 0 { "rust".into() } else { "python".into() },
            latency_ms: 40 + ((i * 37) % 500) as u32,
            chars: 30,
            lines: 1,
            outcome,
            accepted_chars: (outcome == Outcome::Partial).then_some(10),
            typed_ahead: false,
            offered: 1,
            candidate: 0,
        };
        text.push_str(&r.to_line());
    }
    text.push_str("{\"t\": garbage\n{\"t\":1,\"lang\":\"cut");
    let path = dir.join("stats.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

fn wick(args: &[&str]) -> String {
    let out = std::process::Command::new(wick_bin()).args(args).output().unwrap();
    assert!(out.status.success(), "wick {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn wick_stats_prints_acceptance_and_latency_per_language() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.jsonl");
    let text = wick(&["stats", "--file", missing.to_str().unwrap()]);
    assert!(text.starts_with("No statistics yet") && text.contains("does not exist"), "{text}");
    let file = sample_file(dir.path());
    let text = wick(&["stats", "--file", file.to_str().unwrap()]);
    assert!(text.contains("last 24 hours:") && text.contains("last 7 days:"), "{text}");
    for word in ["python", "rust", "(all)", "acceptance", "p50 ms", "p90 ms", "50.0%"] {
        assert!(text.contains(word), "{word} missing:\n{text}");
    }
}

/// The page rendered by headless Chromium shows both plots: the
/// screenshot holds the histogram's blue bars and the acceptance line's
/// orange points, on a white page.
#[test]
fn the_html_page_renders_with_both_plots() {
    let dir = tempfile::tempdir().unwrap();
    let file = sample_file(dir.path());
    let page = dir.path().join("stats.html");
    let said = wick(&["stats", "--file", file.to_str().unwrap(), "--html", page.to_str().unwrap()]);
    assert!(said.contains("200 suggestions"), "{said}");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<svg id=\"latency\"") && html.contains("<svg id=\"acceptance\""));
    let Some(browser) = ["chromium-headless-shell", "chrome-headless-shell", "chromium"]
        .into_iter()
        .find(|b| std::process::Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()))
    else {
        // scripts/test installs it and sets WICK_REQUIRE_CHROMIUM.
        assert!(std::env::var_os("WICK_REQUIRE_CHROMIUM").is_none(), "no headless Chromium, and it is required");
        eprintln!("SKIPPED the screenshot: no headless Chromium (apt-get install chromium-headless-shell)");
        return;
    };
    let png = dir.path().join("shot.png");
    let out = std::process::Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=800,1100"])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap();
    assert!(png.exists(), "{browser} wrote no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let (w, h, pixels) = png_rgb(&std::fs::read(&png).unwrap());
    assert_eq!((w, h), (800, 1100));
    let count = |c: [u8; 3]| pixels.iter().filter(|p| **p == c).count();
    let white = count([255, 255, 255]);
    let blue = count([0x3b, 0x7d, 0xd8]);
    let orange = count([0xd8, 0x64, 0x3b]);
    assert!(white > pixels.len() / 2, "a white page: {white} of {}", pixels.len());
    assert!(blue > 2000, "the histogram's bars: {blue} blue pixels");
    assert!(orange > 100, "the acceptance line: {orange} orange pixels");
}

/// A PNG's pixels as RGB (8-bit RGB or RGBA, not interlaced: what
/// Chromium writes).
fn png_rgb(data: &[u8]) -> (usize, usize, Vec<[u8; 3]>) {
    use std::io::Read;
    assert_eq!(&data[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let (mut pos, mut idat, mut head) = (8, Vec::new(), None);
    while pos + 8 <= data.len() {
        let len = u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &data[pos + 4..pos + 8];
        let body = &data[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => head = Some(body.to_vec()),
            b"IDAT" => idat.extend_from_slice(body),
            _ => {}
        }
        pos += 12 + len;
    }
    let head = head.expect("IHDR");
    let w = u32::from_be_bytes(head[0..4].try_into().unwrap()) as usize;
    let h = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
    assert_eq!((head[8], head[12]), (8, 0), "8-bit, not interlaced");
    let bpp = match head[9] {
        2 => 3,
        6 => 4,
        t => panic!("colour type {t}"),
    };
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..]).read_to_end(&mut raw).unwrap();
    let stride = w * bpp;
    let mut prev = vec![0u8; stride];
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let row = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
        let (filter, src) = (row[0], &row[1..]);
        let mut cur = vec![0u8; stride];
        for i in 0..stride {
            let a = if i >= bpp { cur[i - bpp] as i16 } else { 0 };
            let b = prev[i] as i16;
            let c = if i >= bpp { prev[i - bpp] as i16 } else { 0 };
            let pred = match filter {
                0 => 0,
                1 => a,
                2 => b,
                3 => (a + b) / 2,
                4 => {
                    let p = a + b - c;
                    let (pa, pb, pc) = ((p - a).abs(), (p - b).abs(), (p - c).abs());
                    if pa <= pb && pa <= pc {
                        a
                    } else if pb <= pc {
                        b
                    } else {
                        c
                    }
                }
                f => panic!("filter {f}"),
            };
            cur[i] = src[i].wrapping_add(pred as u8);
        }
        out.extend(cur.chunks(bpp).map(|p| [p[0], p[1], p[2]]));
        prev = cur;
    }
    (w, h, out)
}
