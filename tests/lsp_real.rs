//! The language server with the real default model: a sensible completion
//! and inline completion for a missing function body.

mod common;

use common::lsp::{caps_with_progress, Client, LONG};
use serde_json::json;

const SOURCE: &str =
    "def is_even(n: int) -> bool:\n    \"\"\"Return True when n is even.\"\"\"\n    \n\nprint(is_even(4))\n";

#[test]
fn completion_and_inline_completion_with_the_real_model() {
    let model = common::real_model();
    let mut c = Client::spawn(&["--model", model.to_str().unwrap()], &[]);
    c.initialize(caps_with_progress(), json!({"maxTokens": 32}));
    c.wait_model();
    let uri = "file:///real/even.py";
    c.open(uri, "python", SOURCE);
    let pos = json!({"line": 2, "character": 4});
    let id = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": pos, "context": {"triggerKind": 1}}),
    );
    let r = c.response(id, LONG);
    let item = &r["result"][0];
    let text = item["insertText"].as_str().unwrap_or_else(|| panic!("no item: {r}"));
    assert!(text.starts_with("return") && text.contains('%'), "{text:?}");
    assert_eq!(item["range"]["start"], pos);

    // The same place as a completion item: label is the first line, the
    // edit replaces exactly the cursor (no word typed yet).
    let id = c.request("textDocument/completion", json!({"textDocument": {"uri": uri}, "position": pos}));
    let r = c.response(id, LONG);
    let it = &r["result"]["items"][0];
    assert!(it["label"].as_str().unwrap().starts_with("return"), "{r}");
    assert_eq!(it["textEdit"]["range"]["start"], pos);
    assert_eq!(it["textEdit"]["range"]["end"], pos);

    // Typing the start of the suggestion is answered from the typed-ahead
    // cache with the rest of it.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2},
               "contentChanges": [{"range": {"start": pos, "end": pos}, "text": "ret"}]}),
    );
    let id = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": {"line": 2, "character": 7}, "context": {"triggerKind": 2}}),
    );
    let r = c.response(id, LONG);
    let rest = r["result"][0]["insertText"].as_str().unwrap_or("");
    assert_eq!(format!("ret{rest}"), text, "{r}");
    assert!(c.shutdown().success());
}

/// Applies one LSP text edit to an ASCII text.
fn apply(text: &str, edit: &serde_json::Value) -> String {
    let off = |p: &serde_json::Value| {
        let (line, ch) = (p["line"].as_u64().unwrap() as usize, p["character"].as_u64().unwrap() as usize);
        let start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
        start + ch
    };
    let (a, b) = (off(&edit["range"]["start"]), off(&edit["range"]["end"]));
    format!("{}{}{}", &text[..a], edit["newText"].as_str().unwrap(), &text[b..])
}

const BROKEN: &str = "import math\n\n\ndef circle_area(radius)\n    if radius < 0:\n        raise ValueError(\"negative\")\n    return math.pi * radius ** 2\n\n\ndef perimeter(radius):\n    pass\n";

#[test]
fn fix_and_fill_actions_with_the_real_model() {
    let model = common::real_model();
    let mut c = Client::spawn(&["--model", model.to_str().unwrap()], &[]);
    let mut caps = caps_with_progress();
    caps["textDocument"] = json!({"codeAction": {"resolveSupport": {"properties": ["edit"]}}});
    caps["workspace"] = json!({"workspaceEdit": {"documentChanges": true}});
    c.initialize(caps, json!({}));
    c.wait_model();
    let uri = "file:///real/area.py";
    c.open(uri, "python", BROKEN);
    let n = c
        .wait_notification(LONG, |v| v["method"] == "textDocument/publishDiagnostics" && v["params"]["uri"] == uri)
        .expect("diagnostics");
    let diags = n["params"]["diagnostics"].as_array().unwrap().clone();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert_eq!(diags[0]["message"], "expected ':'");

    // List (cheap), then resolve (the model writes the fix).
    let id = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": diags[0]["range"], "context": {"diagnostics": diags}}),
    );
    let actions = c.response(id, LONG)["result"].as_array().unwrap().clone();
    let fix = actions.iter().find(|a| a["title"] == "Fix with wick: expected ':'").expect("fix action").clone();
    assert!(fix.get("edit").is_none());
    let id = c.request("codeAction/resolve", fix);
    let r = c.response(id, LONG);
    let doc = &r["result"]["edit"]["documentChanges"][0];
    assert_eq!(doc["textDocument"]["version"], 1, "{r}");
    let edits = doc["edits"].as_array().unwrap_or_else(|| panic!("no edit: {r}"));
    assert_eq!(edits.len(), 1);
    // Only the broken line changes.
    assert_eq!(edits[0]["range"]["start"]["line"], 3, "{r}");
    assert_eq!(edits[0]["range"]["end"]["line"], 4, "{r}");
    let fixed = apply(BROKEN, &edits[0]);
    assert!(fixed.contains("def circle_area(radius):\n"), "{fixed}");
    let p = wick::syntax::Parsed::parse(wick::syntax::Lang::Python, &fixed).unwrap();
    assert!(wick::syntax::syntax_errors(&p, &fixed, 10).is_empty(), "{fixed}");

    // Apply it; the diagnostic goes away.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [{"text": fixed}]}),
    );
    let n = c
        .wait_notification(LONG, |v| v["method"] == "textDocument/publishDiagnostics" && v["params"]["version"] == 2)
        .expect("diagnostics after the fix");
    assert_eq!(n["params"]["diagnostics"], json!([]));

    // "Complete this function" on the `pass` body.
    let at = json!({"start": {"line": 10, "character": 5}, "end": {"line": 10, "character": 5}});
    let id = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": at, "context": {"diagnostics": []}}),
    );
    let actions = c.response(id, LONG)["result"].as_array().unwrap().clone();
    let fill = actions
        .iter()
        .find(|a| a["title"] == "Complete this function with wick: perimeter")
        .expect("fill action")
        .clone();
    let t = std::time::Instant::now();
    let id = c.request("codeAction/resolve", fill);
    let r = c.response(id, LONG);
    let edits =
        r["result"]["edit"]["documentChanges"][0]["edits"].as_array().unwrap_or_else(|| panic!("no edit: {r}")).clone();
    eprintln!("fill resolved in {} ms", t.elapsed().as_millis());
    let filled = apply(&fixed, &edits[0]);
    assert!(!filled.contains("    pass\n"), "{filled}");
    let body = &filled[filled.find("def perimeter").unwrap()..];
    assert!(body.contains("return") && body.contains("radius"), "{filled}");
    assert!(filled.starts_with(&fixed[..fixed.find("def perimeter").unwrap()]), "text before the function changed");
    let p = wick::syntax::Parsed::parse(wick::syntax::Lang::Python, &filled).unwrap();
    assert!(wick::syntax::syntax_errors(&p, &filled, 10).is_empty(), "{filled}");
    assert!(c.shutdown().success());
}
