//! Cross-file context: the right completion needs a definition from another
//! file. The context builder brings it in, and the real model uses it.

mod common;

use common::lsp::{caps_with_progress, Client, LONG};
use serde_json::json;
use wick::complete::{plan, Input, OtherFile, Stages};
use wick::config::Config;
use wick::prompt::{Family, Piece};
use wick::syntax::Lang;

const CONFIG_RS: &str = "/// How often and how patiently to retry.\npub struct RetryPolicy {\n    pub max_attempts: u32,\n    pub backoff_millis_between_tries: u64,\n}\n";
const MAIN_RS: &str = "mod config;\nuse config::RetryPolicy;\n\n/// The longest a caller can wait in total.\nfn total_wait(policy: &RetryPolicy) -> u64 {\n    policy.max_attempts as u64 * policy.";

#[test]
fn the_builder_brings_in_the_struct_from_the_other_file() {
    let rope = ropey::Rope::from_str(MAIN_RS);
    let others = vec![OtherFile::new("src/config.rs", CONFIG_RS, Some(Lang::Rust))];
    let input = Input {
        rope: &rope,
        cursor: rope.len_chars(),
        lang: Some(Lang::Rust),
        parsed: None,
        path: "src/main.rs",
        repo_name: "retry",
        others: &others,
    };
    let with = plan(&input, &Config::default(), Some(Family::QwenCoder), None, Stages::default()).unwrap();
    assert_eq!(with.cross_file, vec!["src/config.rs:RetryPolicy".to_string()]);
    let p = &with.request.prompt.pieces;
    // Repository layout: <|repo_name|>, the other file, then the current one.
    assert_eq!(p[0], Piece::Special("<|repo_name|>"));
    assert_eq!(p[2], Piece::Special("<|file_sep|>"));
    match &p[3] {
        Piece::Text(t) => {
            assert!(t.starts_with("src/config.rs\n") && t.contains("backoff_millis_between_tries"), "{t}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(p[4], Piece::Special("<|file_sep|>"));
    assert_eq!(p[6], Piece::Special("<|fim_prefix|>"));
    // Without the stage, nothing from the other file.
    let without = plan(
        &input,
        &Config::default(),
        Some(Family::QwenCoder),
        None,
        Stages { cross_file: false, ..Stages::default() },
    )
    .unwrap();
    assert!(without.cross_file.is_empty());
    assert_eq!(without.request.prompt.pieces[0], Piece::Special("<|fim_prefix|>"));
}

#[test]
fn the_real_model_uses_a_field_from_an_imported_file() {
    let dir = common::scratch_dir().join("retry-workspace");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::write(dir.join("src/config.rs"), CONFIG_RS).unwrap();
    std::fs::write(dir.join("src/main.rs"), MAIN_RS).unwrap();
    let model = common::real_model();
    let mut c = Client::spawn(&["--model", model.to_str().unwrap()], &[]);
    let root = format!("file://{}", dir.display());
    let id = c.request(
        "initialize",
        json!({"processId": null, "rootUri": root, "capabilities": caps_with_progress(), "initializationOptions": {"maxTokens": 16}}),
    );
    c.response(id, LONG);
    c.notify("initialized", json!({}));
    c.wait_model();
    // Only main.rs is open: config.rs comes in through `mod config;`.
    let uri = format!("{root}/src/main.rs");
    c.open(&uri, "rust", MAIN_RS);
    let last_line = MAIN_RS.lines().count() as u32 - 1;
    let col = MAIN_RS.lines().last().unwrap().chars().count() as u32;
    let id = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": {"line": last_line, "character": col}, "context": {"triggerKind": 1}}),
    );
    let r = c.response(id, LONG);
    let text = r["result"][0]["insertText"].as_str().unwrap_or("");
    assert!(text.starts_with("backoff_millis_between_tries"), "{r}");
    // The imported file's definitions are kept until it changes on disk:
    // renamed there, the next completion (a new version of main.rs) sees it.
    std::fs::write(
        dir.join("src/config.rs"),
        CONFIG_RS.replace("backoff_millis_between_tries", "pause_millis_between_tries"),
    )
    .unwrap();
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2},
               "contentChanges": [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "\n"}]}),
    );
    let id = c.request(
        "textDocument/inlineCompletion",
        json!({"textDocument": {"uri": uri}, "position": {"line": last_line + 1, "character": col}, "context": {"triggerKind": 1}}),
    );
    let r = c.response(id, LONG);
    let text = r["result"][0]["insertText"].as_str().unwrap_or("");
    assert!(text.starts_with("pause_millis_between_tries"), "{r}");
}
