//! `wick serve` through a real serving engine: llama.cpp's `llama-server`
//! (built by `scripts/llama-cpp-build`, cached under ~/.cache/wick) on
//! loopback with the default model, once through the `openai` backend and
//! once through the `llama.cpp` one: completion, inline completion and a
//! code-action fix, everything wick does next to the code unchanged.
//!
//! Without the binary the test says so and passes, unless
//! `WICK_REQUIRE_LLAMA_SERVER=1` (scripts/test sets it after building it).

mod common;

use common::lsp::{caps_with_progress, Client, LONG};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn llama_server() -> Option<std::path::PathBuf> {
    let p = std::env::var_os("WICK_LLAMA_SERVER").map(Into::into).unwrap_or_else(|| {
        std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/wick/llama.cpp/llama-server")
    });
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("WICK_REQUIRE_LLAMA_SERVER").as_deref() == Ok("1") {
        panic!("llama-server not found at {} (scripts/llama-cpp-build builds it)", p.display());
    }
    eprintln!("skipped: no llama-server at {} (scripts/llama-cpp-build builds it)", p.display());
    None
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(url_host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(url_host).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {url_host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out))
}

fn start(bin: &std::path::Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let log = std::fs::File::create(common::scratch_dir().join("llama-server.log")).unwrap();
    let model = common::real_model();
    let child = Command::new(bin)
        .args(["-m", model.to_str().unwrap(), "--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-c", "8192", "-np", "2", "-t", "2"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting llama-server");
    let host = format!("127.0.0.1:{port}");
    let server = Server { child, url: format!("http://{host}") };
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some((200, _)) = get(&host, "/health") {
            return server;
        }
        assert!(Instant::now() < deadline, "llama-server did not become healthy in 180 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const SOURCE: &str =
    "def is_even(n: int) -> bool:\n    \"\"\"Return True when n is even.\"\"\"\n    \n\nprint(is_even(4))\n";
const BROKEN: &str = "import math\n\n\ndef circle_area(radius)\n    if radius < 0:\n        raise ValueError(\"negative\")\n    return math.pi * radius ** 2\n";

fn through(kind: &str, url: &str) {
    let mut c = Client::spawn(&[], &[]);
    let mut caps = caps_with_progress();
    caps["textDocument"] = json!({"codeAction": {"resolveSupport": {"properties": ["edit"]}}});
    caps["workspace"] = json!({"workspaceEdit": {"documentChanges": true}});
    c.initialize(caps, json!({"maxTokens": 32, "backend": {"kind": kind, "url": url, "timeoutMs": 60000}}));
    let st = c
        .wait_notification(LONG, |v| v["method"] == "wick/status" && v["params"]["state"] != "loading")
        .expect("a status");
    assert_eq!(st["params"]["state"], "ready", "{kind}: {st}");

    let uri = "file:///remote/even.py";
    c.open(uri, "python", SOURCE);
    let pos = json!({"line": 2, "character": 4});
    let id = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": pos, "context": {"triggerKind": 1}}),
    );
    let r = c.response(id, LONG);
    let text = r["result"][0]["insertText"].as_str().unwrap_or_else(|| panic!("{kind}: no item: {r}")).to_string();
    assert!(text.contains("return"), "{kind}: {text:?}");
    let id = c.request("textDocument/completion", json!({"textDocument": {"uri": uri}, "position": pos}));
    let r = c.response(id, LONG);
    assert!(r["result"]["items"][0]["label"].as_str().is_some_and(|l| !l.is_empty()), "{kind}: {r}");

    // A fix, verified by reparsing as with the local model.
    let uri = "file:///remote/area.py";
    c.open(uri, "python", BROKEN);
    let n = c
        .wait_notification(LONG, |v| v["method"] == "textDocument/publishDiagnostics" && v["params"]["uri"] == uri)
        .expect("diagnostics");
    let diags = n["params"]["diagnostics"].as_array().unwrap().clone();
    let id = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": diags[0]["range"], "context": {"diagnostics": diags}}),
    );
    let actions = c.response(id, LONG)["result"].as_array().unwrap().clone();
    let fix: Value = actions.iter().find(|a| a["title"] == "Fix with wick: expected ':'").expect("fix action").clone();
    let id = c.request("codeAction/resolve", fix);
    let r = c.response(id, LONG);
    let edits = r["result"]["edit"]["documentChanges"][0]["edits"]
        .as_array()
        .unwrap_or_else(|| panic!("{kind}: no edit: {r}"))
        .clone();
    assert!(edits[0]["newText"].as_str().unwrap().contains("def circle_area(radius):"), "{kind}: {r}");

    let id = c.request("wick/serverState", json!({}));
    let st = c.response(id, LONG);
    assert!(st["result"]["backend"].as_str().unwrap().contains(kind), "{st}");
    assert_eq!(st["result"]["backendProblem"], Value::Null, "{st}");
    assert_eq!(c.shutdown().code(), Some(0));
}

#[test]
fn completion_inline_completion_and_a_fix_through_llama_server() {
    let Some(bin) = llama_server() else { return };
    let server = start(&bin);
    through("openai", &server.url);
    through("llama.cpp", &server.url);
}
