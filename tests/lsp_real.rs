//! The language server with the real default model: a sensible completion
//! and inline completion for a missing function body.

mod common;

use common::lsp::{caps_with_progress, Client, LONG};
use serde_json::json;

const SOURCE: &str = "def is_even(n: int) -> bool:\n    \"\"\"Return True when n is even.\"\"\"\n    \n\nprint(is_even(4))\n";

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
