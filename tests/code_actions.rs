//! Diagnostics and code actions through the real `wick serve` binary, with
//! a tiny generated model: the protocol flow (publish, list, resolve, stale
//! versions, bad ranges). The tiny model writes gibberish, so its fixes are
//! rejected by verification: that path is tested here; real fixes are in
//! lsp_real.rs and fix_corpus.rs.

mod common;

use common::lsp::{caps_with_progress, Client, LONG};
use common::tiny_model;
use serde_json::{json, Value};
use wick::prompt::Family;
use wick::server::client::Client as Conn;

const BROKEN: &str = "import math\n\n\ndef area(r)\n    return math.pi * r ** 2\n\n\ndef todo(x):\n    pass\n";

fn caps(resolve: bool) -> Value {
    let mut c = caps_with_progress();
    if resolve {
        c["textDocument"] = json!({"codeAction": {"resolveSupport": {"properties": ["edit"]},
            "codeActionLiteralSupport": {"codeActionKind": {"valueSet": ["quickfix", "refactor"]}}}});
        c["workspace"] = json!({"workspaceEdit": {"documentChanges": true}});
    }
    c
}

fn server(resolve: bool) -> Conn {
    server_with(resolve, json!({"maxTokens": 8}), &[])
}

fn server_with(resolve: bool, options: Value, envs: &[(&str, &str)]) -> Conn {
    let model = tiny_model(Family::QwenCoder);
    let mut c = Client::spawn(&["--model", model.to_str().unwrap()], envs);
    let init = c.initialize(caps(resolve), options);
    let cap = &init["result"]["capabilities"]["codeActionProvider"];
    assert_eq!(cap["resolveProvider"], true, "{init}");
    c.wait_model();
    c
}

fn diagnostics_for(c: &mut Conn, uri: &str, version: i64) -> Vec<Value> {
    let n = c
        .wait_notification(LONG, |v| {
            v["method"] == "textDocument/publishDiagnostics"
                && v["params"]["uri"] == uri
                && v["params"]["version"] == version
        })
        .unwrap_or_else(|| panic!("no diagnostics for version {version}"));
    n["params"]["diagnostics"].as_array().cloned().unwrap()
}

fn code_actions(c: &mut Conn, uri: &str, range: Value, diags: Vec<Value>) -> Vec<Value> {
    let id = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": diags}}),
    );
    let r = c.response(id, LONG);
    r["result"].as_array().cloned().unwrap_or_else(|| panic!("{r}"))
}

#[test]
fn syntax_errors_are_published_updated_and_cleared() {
    let mut c = server(true);
    let uri = "file:///ws/area.py";
    c.open(uri, "python", BROKEN);
    let d = diagnostics_for(&mut c, uri, 1);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["source"], "wick");
    assert_eq!(d[0]["severity"], 3, "information by default: {d:?}");
    assert_eq!(d[0]["range"]["start"]["line"], 3, "{d:?}");
    assert_eq!(d[0]["message"], "expected ':'");
    assert_eq!(d[0]["range"]["end"], json!({"line": 3, "character": 11}));
    // Type the missing colon: the error goes away.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2},
               "contentChanges": [{"range": {"start": {"line": 3, "character": 11}, "end": {"line": 3, "character": 11}}, "text": ":"}]}),
    );
    assert!(diagnostics_for(&mut c, uri, 2).is_empty());
    // An unclosed bracket, named as such.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 3},
               "contentChanges": [{"range": {"start": {"line": 0, "character": 11}, "end": {"line": 0, "character": 11}}, "text": "\nx = f(1, 2\n"}]}),
    );
    let d = diagnostics_for(&mut c, uri, 3);
    assert!(d.iter().any(|x| x["message"] == "expected ')'" && x["range"]["start"]["line"] == 1), "{d:?}");
    c.notify("textDocument/didClose", json!({"textDocument": {"uri": uri}}));
    let cleared = c.wait_notification(LONG, |v| {
        v["method"] == "textDocument/publishDiagnostics"
            && v["params"]["uri"] == uri
            && v["params"]["diagnostics"] == json!([])
            && v["params"].get("version").is_none_or(|x| x.is_null())
    });
    assert!(cleared.is_some(), "diagnostics not cleared on close");
    assert!(c.shutdown().success());
}

#[test]
fn list_then_resolve_with_ours_and_another_servers_diagnostics() {
    let mut c = server(true);
    let uri = "file:///ws/area.py";
    c.open(uri, "python", BROKEN);
    let ours = diagnostics_for(&mut c, uri, 1);
    let foreign = json!({"range": {"start": {"line": 4, "character": 11}, "end": {"line": 4, "character": 15}},
        "severity": 1, "source": "Pylance", "message": "\"math\" is possibly unbound"});
    let mut diags = ours.clone();
    diags.push(foreign);
    let mut actions = code_actions(
        &mut c,
        uri,
        json!({"start": {"line": 3, "character": 0}, "end": {"line": 4, "character": 0}}),
        diags,
    );
    let titles: Vec<&str> = actions.iter().map(|a| a["title"].as_str().unwrap()).collect();
    assert_eq!(titles.len(), 3, "{titles:?}");
    // The repair the syntax search proved comes first, with its edit: the
    // ':' at the end of the `def` line, versioned.
    assert_eq!(ours[0]["message"], "expected ':'");
    assert_eq!(titles[0], "Insert ':'");
    let known = actions.remove(0);
    assert_eq!(known["kind"], "quickfix");
    assert_eq!(known["isPreferred"], true);
    let change = &known["edit"]["documentChanges"][0];
    assert_eq!(change["textDocument"]["version"], 1);
    assert_eq!(change["edits"][0]["newText"], ":");
    assert_eq!(
        change["edits"][0]["range"],
        json!({"start": {"line": 3, "character": 11}, "end": {"line": 3, "character": 11}})
    );
    let id = c.request("codeAction/resolve", known.clone());
    assert_eq!(c.response(id, LONG)["result"], known, "resolving changes nothing");
    let titles: Vec<&str> = actions.iter().map(|a| a["title"].as_str().unwrap()).collect();
    assert_eq!(titles[0], format!("Fix with wick: {}", ours[0]["message"].as_str().unwrap()));
    assert_eq!(titles[1], "Fix with wick: \"math\" is possibly unbound (Pylance)");
    for a in &actions {
        assert_eq!(a["kind"], "quickfix");
        assert!(a.get("edit").is_none(), "listing computes no edit: {a}");
        assert!(a["data"].is_object());
        assert_eq!(a["diagnostics"].as_array().unwrap().len(), 1);
    }
    // Resolve: the tiny model's answers are gibberish, so verification
    // rejects them: no edit, and a message that says why.
    let id = c.request("codeAction/resolve", actions[0].clone());
    let r = c.response(id, LONG);
    assert!(r["result"]["title"].is_string(), "{r}");
    assert!(r["result"].get("edit").is_none_or(|e| e.is_null()), "{r}");
    let msg = c.wait_notification(LONG, |v| {
        v["method"] == "window/showMessage" && v["params"]["message"].as_str().unwrap_or("").contains("Fix with wick")
    });
    assert!(msg.is_some());

    // A stale action: the document changed after listing.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2},
               "contentChanges": [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "text": "# hi\n"}]}),
    );
    let id = c.request("codeAction/resolve", actions[1].clone());
    let r = c.response(id, LONG);
    assert!(r["result"].get("edit").is_none_or(|e| e.is_null()), "{r}");
    let stale = c.wait_notification(LONG, |v| {
        v["method"] == "window/showMessage" && v["params"]["message"].as_str().unwrap_or("").contains("changed since")
    });
    assert!(stale.is_some(), "no stale message");
    assert!(c.shutdown().success());
}

#[test]
fn bad_ranges_get_no_action_and_large_regions_a_reason() {
    let mut c = server(true);
    let uri = "file:///ws/area.py";
    c.open(uri, "python", BROKEN);
    let past_end = json!({"range": {"start": {"line": 400, "character": 0}, "end": {"line": 401, "character": 3}}, "message": "nope"});
    let reversed = json!({"range": {"start": {"line": 4, "character": 3}, "end": {"line": 3, "character": 0}}, "message": "backwards"});
    let actions = code_actions(
        &mut c,
        uri,
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}),
        vec![past_end, reversed],
    );
    assert!(actions.is_empty(), "{actions:?}");
    // Unknown document: no actions, no error.
    let id = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": "file:///nowhere.py"}, "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}, "context": {"diagnostics": []}}),
    );
    let r = c.response(id, LONG);
    assert!(r.get("error").is_none(), "{r}");
    // A region larger than the budget: listed, disabled with the reason.
    let big_uri = "file:///ws/big.py";
    let big = format!("x = [{}\n", "1, ".repeat(1000));
    c.open(big_uri, "python", &big);
    let d = diagnostics_for(&mut c, big_uri, 1);
    let actions = code_actions(
        &mut c,
        big_uri,
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}),
        d,
    );
    // The known repair needs no region; the model's fix is too large.
    assert_eq!(actions[0]["title"], "Insert ']'", "{actions:?}");
    let fix = actions.iter().find(|a| a["title"].as_str().unwrap().starts_with("Fix with wick")).expect("a fix action");
    let reason = fix["disabled"]["reason"].as_str().unwrap_or_else(|| panic!("{actions:?}"));
    assert!(reason.contains("larger than"), "{reason}");
    // A hostile resolve: data that names no document.
    let id = c.request("codeAction/resolve", json!({"title": "Fix with wick: x", "data": {"kind": "fix", "uri": 3}}));
    let r = c.response(id, LONG);
    assert!(r["result"].get("edit").is_none_or(|e| e.is_null()), "{r}");
    assert!(c.shutdown().success());
}

#[test]
fn empty_functions_offer_completion_and_clients_without_resolve_get_eager_actions() {
    let mut c = server(false);
    let uri = "file:///ws/area.py";
    c.open(uri, "python", &BROKEN.replace("def area(r)", "def area(r):"));
    let cursor = json!({"start": {"line": 8, "character": 5}, "end": {"line": 8, "character": 5}});
    let id = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": cursor, "context": {"diagnostics": []}}),
    );
    let r = c.response(id, LONG);
    let actions = r["result"].as_array().cloned().unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
    assert_eq!(actions[0]["title"], "Complete this function with wick: todo");
    assert_eq!(actions[0]["kind"], "refactor.rewrite");
    // Computed at listing: an edit, or the message saying why there is none.
    let has_edit = actions[0]["edit"].is_object();
    let said = c.wait_notification(std::time::Duration::from_secs(5), |v| {
        v["method"] == "window/showMessage"
            && v["params"]["message"].as_str().unwrap_or("").contains("Complete this function")
    });
    assert!(has_edit || said.is_some(), "{actions:?}");
    // Not in an empty function: no fill action.
    let id = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": {"start": {"line": 0, "character": 1}, "end": {"line": 0, "character": 1}}, "context": {"diagnostics": []}}),
    );
    let r = c.response(id, LONG);
    assert_eq!(r["result"], json!([]), "{r}");
    assert!(c.shutdown().success());
}

#[test]
fn a_client_that_passes_no_diagnostics_gets_wicks_own() {
    // Lazy client: the known repair and the model's fix, listed without a
    // model call.
    let mut c = server(true);
    let uri = "file:///ws/area.py";
    c.open(uri, "python", BROKEN);
    diagnostics_for(&mut c, uri, 1);
    let line3 = json!({"start": {"line": 3, "character": 2}, "end": {"line": 3, "character": 2}});
    let actions = code_actions(&mut c, uri, line3.clone(), vec![]);
    let titles: Vec<&str> = actions.iter().map(|a| a["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Insert ':'", "Fix with wick: expected ':'"]);
    // Not on other lines.
    let line0 = json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}});
    assert!(code_actions(&mut c, uri, line0, vec![]).is_empty());
    assert!(c.shutdown().success());
    // A client that cannot resolve: only the known repair (no model run
    // for every listing).
    let mut c = server(false);
    c.open(uri, "python", BROKEN);
    diagnostics_for(&mut c, uri, 1);
    let actions = code_actions(&mut c, uri, line3, vec![]);
    let titles: Vec<&str> = actions.iter().map(|a| a["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Insert ':'"]);
    assert!(actions[0]["edit"]["changes"].is_object(), "{:?}", actions[0]);
    assert!(c.shutdown().success());
}

/// A spell checker's diagnostics on accented words (ranges that end right
/// after a multi-byte character) used to end the process on the first code
/// action request.
#[test]
fn other_servers_diagnostics_over_non_ascii_text_get_answers() {
    let mut c = server(true);
    let uri = "file:///ws/caf%C3%A9.py";
    let line = "    return 'naïve café' + x  # ünïcödé 𝄞";
    c.open(uri, "python", &format!("def café(x):\n{line}\n"));
    let cols = line.encode_utf16().count() as u32;
    for start in (0..cols).step_by(3) {
        for end in [start, start + 1, start + 4, cols] {
            let range =
                json!({"start": {"line": 1, "character": start}, "end": {"line": 1, "character": end.min(cols)}});
            let diag = json!({"range": range, "message": "Unknown word", "source": "cSpell", "severity": 3});
            let id = c.request(
                "textDocument/codeAction",
                json!({"textDocument": {"uri": uri}, "range": range, "context": {"diagnostics": [diag]}}),
            );
            let r = c.response(id, LONG);
            assert!(r.get("result").is_some(), "{start}..{end}: {r}");
        }
    }
    let range = json!({"start": {"line": 0, "character": 4}, "end": {"line": 0, "character": 8}});
    let acts = code_actions(
        &mut c,
        uri,
        range.clone(),
        vec![json!({"range": range, "message": "Unknown word: café", "source": "cSpell"})],
    );
    assert!(acts.iter().any(|a| a["title"].as_str().is_some_and(|t| t.contains("cSpell"))), "{acts:?}");
    assert!(c.shutdown().success());
}

/// Publishes for `uri` among `notes`, in order: (version, diagnostics).
fn published(notes: &[Value], uri: &str) -> Vec<(Value, Vec<Value>)> {
    notes
        .iter()
        .filter(|v| v["method"] == "textDocument/publishDiagnostics" && v["params"]["uri"] == uri)
        .map(|v| (v["params"]["version"].clone(), v["params"]["diagnostics"].as_array().cloned().unwrap_or_default()))
        .collect()
}

/// The diagnostics of the `nth` (0-based) publish of `version`, waited for.
fn nth_publish(c: &mut Conn, uri: &str, version: i64, nth: usize) -> Vec<Value> {
    let of_version = |notes: &[Value]| -> Vec<Vec<Value>> {
        published(notes, uri).into_iter().filter(|(v, _)| *v == json!(version)).map(|(_, d)| d).collect()
    };
    assert!(c.wait_until(LONG, |n| of_version(n).len() > nth), "no publish #{nth} for version {version}");
    of_version(&c.notifications).swap_remove(nth)
}

fn edit(c: &mut Conn, uri: &str, version: i64, line: u32, character: u32, text: &str) {
    let at = json!({"line": line, "character": character});
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": version},
               "contentChanges": [{"range": {"start": at, "end": at}, "text": text}]}),
    );
}

fn messages(d: &[Value]) -> Vec<&str> {
    d.iter().map(|x| x["message"].as_str().unwrap()).collect()
}

#[test]
fn an_error_on_the_line_being_typed_waits_for_a_pause() {
    let mut c = server(true);
    let uri = "file:///ws/area.py";
    c.open(uri, "python", BROKEN);
    assert_eq!(messages(&nth_publish(&mut c, uri, 1, 0)), ["expected ':'"]);
    // Typing on the `def` line that lacks its ':': not shown at once...
    edit(&mut c, uri, 2, 3, 10, "x");
    assert!(nth_publish(&mut c, uri, 2, 0).is_empty(), "the error at the cursor's line was shown while typing");
    // ...but once the user pauses.
    let later = nth_publish(&mut c, uri, 2, 1);
    assert_eq!(messages(&later), ["expected ':'"]);
    assert_eq!(later[0]["range"]["start"]["line"], 3);
    // Errors on other lines are not held back: typing on line 0.
    edit(&mut c, uri, 3, 0, 0, "#");
    assert_eq!(messages(&nth_publish(&mut c, uri, 3, 0)), ["expected ':'"]);
    assert!(c.shutdown().success());
}

#[test]
fn an_error_held_back_is_shown_when_the_cursor_leaves_the_line() {
    // A pause longer than the test: only leaving the line can show it.
    let mut c = server_with(true, json!({"maxTokens": 8}), &[("WICK_TYPING_PAUSE_MS", "600000")]);
    let uri = "file:///ws/area.py";
    c.open(uri, "python", BROKEN);
    nth_publish(&mut c, uri, 1, 0);
    edit(&mut c, uri, 2, 3, 10, "x");
    assert!(nth_publish(&mut c, uri, 2, 0).is_empty());
    // The editor asks for code actions where the cursor went (line 0).
    code_actions(
        &mut c,
        uri,
        json!({"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}}),
        vec![],
    );
    assert_eq!(messages(&nth_publish(&mut c, uri, 2, 1)), ["expected ':'"]);
    assert!(c.shutdown().success());
}

#[test]
fn diagnostics_off_on_save_and_their_severity() {
    let mut c = server_with(true, json!({"maxTokens": 8, "diagnostics": "off"}), &[]);
    let uri = "file:///ws/area.py";
    c.open(uri, "python", BROKEN);
    // Off: a settings change (the severity) clears the list, and nothing
    // was published before it.
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"wick": {"diagnosticsSeverity": "hint"}}}));
    assert!(c.wait_until(LONG, |n| !published(n, uri).is_empty()));
    assert!(published(&c.notifications, uri).iter().all(|(_, d)| d.is_empty()), "published while off");
    // Code actions still fix another server's diagnostic; wick's own
    // repairs are not listed for a request that passes none.
    let foreign = json!({"range": {"start": {"line": 3, "character": 0}, "end": {"line": 3, "character": 11}},
        "severity": 1, "source": "Pylance", "message": "Expected \":\""});
    let line3 = json!({"start": {"line": 3, "character": 0}, "end": {"line": 3, "character": 0}});
    let titles = |a: Vec<Value>| a.iter().map(|x| x["title"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    let with = titles(code_actions(&mut c, uri, line3.clone(), vec![foreign]));
    assert!(with.iter().any(|t| t == "Fix with wick: Expected \":\" (Pylance)"), "{with:?}");
    let without = titles(code_actions(&mut c, uri, line3, vec![]));
    assert!(without.iter().all(|t| t.starts_with("Complete this function")), "{without:?}");

    // onSave: published at once (in the new severity), then not while typing...
    c.notify("workspace/didChangeConfiguration", json!({"settings": {"wick": {"diagnostics": "onSave"}}}));
    let d = nth_publish(&mut c, uri, 1, 0);
    assert_eq!(messages(&d), ["expected ':'"]);
    assert_eq!(d[0]["severity"], 4, "hint: {d:?}");
    edit(&mut c, uri, 2, 3, 11, ":");
    let id = c.request("wick/documentText", json!({"uri": uri}));
    c.response(id, LONG);
    std::thread::sleep(std::time::Duration::from_millis(1000));
    c.wait_until(std::time::Duration::from_millis(10), |_| false);
    assert!(
        published(&c.notifications, uri).iter().all(|(v, _)| *v != json!(2)),
        "published on an edit in onSave mode"
    );
    // ...but when saved.
    c.notify("textDocument/didSave", json!({"textDocument": {"uri": uri}}));
    assert!(nth_publish(&mut c, uri, 2, 0).is_empty());

    // Back on, as errors: an edit publishes.
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"wick": {"diagnostics": "on", "diagnosticsSeverity": "error"}}}),
    );
    edit(&mut c, uri, 3, 2, 0, "if x\n");
    let d = nth_publish(&mut c, uri, 3, 0);
    assert!(!d.is_empty() && d.iter().all(|x| x["severity"] == 1), "{d:?}");
    assert!(c.shutdown().success());
}

/// "Fix with wick" asked for while the model is still loading (just after
/// start, or after the editor restarted the server) waits for the model
/// instead of failing with "still loading" (the editor does not ask again).
#[test]
fn a_fix_asked_for_while_the_model_loads_waits_for_it() {
    let model = tiny_model(Family::QwenCoder);
    let mut c = Client::spawn(&["--model", model.to_str().unwrap()], &[("WICK_LOAD_DELAY_MS", "1500")]);
    c.initialize(caps(true), json!({"maxTokens": 8}));
    let uri = "file:///ws/area.py";
    c.open(uri, "python", BROKEN);
    let ours = diagnostics_for(&mut c, uri, 1);
    let actions = code_actions(
        &mut c,
        uri,
        json!({"start": {"line": 3, "character": 0}, "end": {"line": 4, "character": 0}}),
        ours,
    );
    let fix = actions.iter().find(|a| a["title"].as_str().unwrap().starts_with("Fix with wick")).unwrap().clone();
    let id = c.request("codeAction/resolve", fix);
    let r = c.response(id, LONG);
    assert!(r["result"]["title"].is_string(), "{r}");
    let said = |v: &Value, s: &str| {
        v["method"] == "window/showMessage" && v["params"]["message"].as_str().unwrap_or("").contains(s)
    };
    // The tiny model's gibberish is rejected by verification: it ran.
    assert!(c.wait_notification(LONG, |v| said(v, "Fix with wick")).is_some());
    assert!(!c.notifications.iter().any(|v| said(v, "still loading")), "{:?}", c.notifications);
    assert!(c.shutdown().success());
}
