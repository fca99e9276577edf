//! Property tests (proptest, fixed seed, bounded cases): framing,
//! documents, syntax analysis and code-action planning, prompt building and
//! post-processing on arbitrary input. They are the checks the cargo-fuzz
//! targets (not written yet, see issue 13) are to run for longer.

mod common;

use common::lsp_offset;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed};
use ropey::Rope;
use wick::complete::{self, Input, Stages};
use wick::config::Config;
use wick::documents::{Change, DocumentStore, Encoding, Pos};
use wick::syntax::{Lang, Parsed};

fn config(cases: u32) -> PtConfig {
    PtConfig { cases, rng_seed: RngSeed::Fixed(0x5eed_0f_17c6), failure_persistence: None, ..PtConfig::default() }
}

/// Text from pieces that stress line and character handling: every LSP
/// line break, the breaks LSP does not count, astral and combining
/// characters, and code-like tokens.
fn text_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "\n", "\r\n", "\r", "\u{c}", "\u{b}", "\u{85}", "\u{2028}", "\u{2029}", "é", "e\u{301}", "𝄞", "🦀", "中", "\t", "    ",
        "def ", "f(", ")", ":", "x", " = ", "1", "return ", "{", "}", "[", "]", "'", "\"", "#", "//", "/*", "*/", ";", ",", ".", "if ",
        "fn ", "class ", "pass", "\u{0}", "\u{feff}",
    ])
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(text_piece(), 0..60).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
struct Edit {
    range: Option<(Pos, Pos)>,
    text: String,
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = (0u32..12, 0u32..14).prop_map(|(line, col)| Pos { line, col });
    (prop::option::weighted(0.95, (pos.clone(), pos)), prop::collection::vec(text_piece(), 0..6))
        .prop_map(|(range, t)| Edit { range, text: t.concat() })
}

proptest! {
    #![proptest_config(config(256))]

    /// Versioned edit sequences (gaps and reordering included) against a
    /// reference that follows LSP's line rules; the incremental tree equals
    /// a full parse of the final text.
    #[test]
    fn documents_follow_lsp_line_rules(
        initial in text(),
        edits in prop::collection::vec(prop::collection::vec(edit(), 1..3), 1..10),
        utf8 in any::<bool>(),
        swap in any::<bool>(),
    ) {
        let enc = if utf8 { Encoding::Utf8 } else { Encoding::Utf16 };
        let mut store = DocumentStore::default();
        let uri = "file:///p/doc.py";
        store.open(uri, &initial, 1, "python");
        let mut reference = initial.clone();
        let mut batches: Vec<(i32, Vec<Edit>)> = edits.into_iter().enumerate().map(|(i, e)| (i as i32 + 2, e)).collect();
        for (_, batch) in &batches {
            for e in batch {
                match e.range {
                    None => reference = e.text.clone(),
                    Some((a, b)) => {
                        let (s, t) = (lsp_offset(&reference, a.line, a.col, enc), lsp_offset(&reference, b.line, b.col, enc));
                        let (s, t) = if s <= t { (s, t) } else { (t, s) };
                        reference.replace_range(s..t, &e.text);
                    }
                }
            }
        }
        if swap && batches.len() > 1 {
            // A later version first: it waits for the one before it.
            batches.swap(0, 1);
        }
        for (i, (version, batch)) in batches.iter().enumerate() {
            let changes = batch.iter().map(|e| Change { range: e.range, text: e.text.clone() }).collect();
            store.change(uri, *version, changes, enc).unwrap();
            if i % 3 == 2 {
                // A snapshot in between, parsed: the next edits are incremental.
                store.snapshot_parsed(uri, enc).unwrap();
            }
        }
        let snap = store.snapshot_parsed(uri, enc).unwrap();
        prop_assert_eq!(snap.rope.to_string(), reference.clone());
        let full = Parsed::parse(Lang::Python, &reference).unwrap();
        prop_assert_eq!(snap.parsed.unwrap().tree.root_node().to_sexp(), full.tree.root_node().to_sexp());
    }

    /// Syntax analysis, known repairs, fix regions, empty bodies and action
    /// context on arbitrary text and byte ranges never panic, and regions
    /// are whole characters of the text.
    #[test]
    fn analysis_and_fix_planning_never_panic(
        t in text(), lang in prop::sample::select(vec![Lang::Python, Lang::Rust, Lang::C, Lang::TypeScript, Lang::Go, Lang::Java]),
        a in 0usize..400, b in 0usize..400,
    ) {
        let (start, end) = (a.min(t.len()), b.min(t.len()));
        let Some(p) = Parsed::parse(lang, &t) else { return Ok(()) };
        let analysis = wick::syntax::Analysis::new(&p, &t);
        let _ = analysis.known_edit(&t, start.min(end), start.max(end));
        let _ = wick::syntax::empty_body_at(&p, &t, start);
        let req = wick::actions::FixRequest { text: &t, lang: Some(lang), language_id: "x", start: start.min(end), end: start.max(end), message: "m" };
        for plan in [wick::actions::plan_fix(&req, Some(&p)), wick::actions::plan_fix(&req, None)].into_iter().flatten() {
            prop_assert!(t.is_char_boundary(plan.start) && t.is_char_boundary(plan.end) && plan.start <= plan.end);
            let _ = wick::actions::context(&t, plan.start, plan.end);
        }
        let _ = wick::actions::plan_fill(&t, &p, start);
    }

    /// Prompt building and post-processing on arbitrary documents, cursors
    /// and model outputs never panic.
    #[test]
    fn prompts_and_cleaning_never_panic(t in text(), cursor in 0usize..400, out in text(), fim in any::<bool>(), truncated in any::<bool>()) {
        let rope = Rope::from_str(&t);
        let parsed = Parsed::parse(Lang::Python, &t);
        let input = Input { rope: &rope, cursor: cursor.min(rope.len_chars()), lang: Some(Lang::Python), parsed: parsed.as_ref(), path: "a.py", repo_name: "r", others: &[] };
        let mut cfg = Config::default();
        cfg.update(&serde_json::json!({"prompt": if fim { "fim" } else { "prefix" }}));
        if let Some(plan) = complete::plan_with(&input, &cfg, Some(wick::prompt::Family::QwenCoder), Stages::default()) {
            let _ = complete::clean(&out, &plan, truncated);
            let _ = complete::postprocess(&out, &plan);
        }
    }
}

/// Frames and garbage: valid messages, bodies that are not JSON or not one
/// JSON-RPC message, bad or missing lengths, truncated frames.
fn stream_piece() -> impl Strategy<Value = Vec<u8>> {
    let frame = |body: String| format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes();
    prop_oneof![
        Just(frame(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#.into())),
        Just(frame(r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#.into())),
        Just(frame(r#"[{"jsonrpc":"2.0","method":"initialized"}]"#.into())),
        Just(frame(r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#.into())),
        Just(frame(r#"{"jsonrpc":"2.0","params":{}}"#.into())),
        Just(frame("{not json".into())),
        Just(b"Content-Length: 99999999999\r\n\r\n".to_vec()),
        Just(b"Content-Length: -1\r\n\r\n{}".to_vec()),
        Just(b"Content-Type: x\r\n\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
        "[ -~\r\n]{0,40}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Whatever the bytes, what reaches tower-lsp-server is well framed and
    /// decodes as one JSON-RPC message, one frame per header block at most.
    #[test]
    fn framing_passes_only_single_messages(pieces in prop::collection::vec(stream_piece(), 0..12)) {
        let input: Vec<u8> = pieces.concat();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut out = Vec::new();
        rt.block_on(wick::lsp::framing::sanitize(&input[..], &mut out));
        let mut rest = &out[..];
        let mut frames = 0;
        while !rest.is_empty() {
            let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
            let head = std::str::from_utf8(&rest[..head_end]).unwrap();
            let len: usize = head.strip_prefix("Content-Length: ").expect("a length").parse().unwrap();
            let body = &rest[head_end + 4..head_end + 4 + len];
            let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
            prop_assert!(wick::lsp::framing::is_one_message(&v), "{v}");
            rest = &rest[head_end + 4 + len..];
            frames += 1;
        }
        let headers = input.windows(2).filter(|w| w == b"\r\n" || w[0] == b'\n').count() + 1;
        prop_assert!(frames <= headers, "{frames} frames from {headers} lines");
    }
}
