//! Invariant checks on arbitrary input, shared by the property tests
//! (`tests/properties.rs`, fixed seed, in the suite) and the cargo-fuzz
//! targets (`fuzz/`, run for longer by hand). Each returns `Err` with what
//! went wrong; a panic inside is a finding too. Not used by the server.

use crate::complete::{self, Input, Stages};
use crate::config::Config;
use crate::syntax::{Lang, Parsed};
use crate::workspace::documents::{Change, DocumentStore, Encoding};
use ropey::Rope;

/// Text pieces that stress line and character handling: every LSP line
/// break, the breaks LSP does not count, astral and combining characters,
/// NUL and BOM, and code-like tokens. Inputs are made of these.
pub const PIECES: &[&str] = &[
    "\n", "\r\n", "\r", "\u{c}", "\u{b}", "\u{85}", "\u{2028}", "\u{2029}", "é", "e\u{301}", "𝄞", "🦀", "中", "\t",
    "    ", "def ", "f(", ")", ":", "x", " = ", "1", "return ", "{", "}", "[", "]", "'", "\"", "#", "//", "/*", "*/",
    ";", ",", ".", "if ", "fn ", "class ", "pass", "\u{0}", "\u{feff}",
];

/// The languages with a grammar, for checks that pick one from input.
pub const LANGS: [Lang; 6] = [Lang::Python, Lang::Rust, Lang::C, Lang::TypeScript, Lang::Go, Lang::Java];

/// The byte offset of an LSP position by LSP's own line rules (LF, CRLF and
/// CR end a line, nothing else; a column past the line's end is its end; a
/// line past the end is the text's end): the reference the documents are
/// checked against.
pub fn lsp_offset(text: &str, line: u32, col: u32, enc: Encoding) -> usize {
    let mut starts = vec![0];
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' => starts.push(i + 1),
            b'\r' if b.get(i + 1) == Some(&b'\n') => {
                starts.push(i + 2);
                i += 1;
            }
            b'\r' => starts.push(i + 1),
            _ => {}
        }
        i += 1;
    }
    let Some(&start) = starts.get(line as usize) else { return text.len() };
    let content = &text[start..];
    let content = &content[..content.find(['\n', '\r']).unwrap_or(content.len())];
    let mut units = 0;
    for (at, c) in content.char_indices() {
        if units >= col {
            return start + at;
        }
        units += match enc {
            Encoding::Utf16 => c.len_utf16() as u32,
            Encoding::Utf8 => c.len_utf8() as u32,
        };
    }
    start + content.len()
}

/// Framing: whatever the bytes, what reaches tower-lsp-server is well
/// framed, each body one JSON-RPC message, at most one frame per header
/// line of the input.
pub fn framing(input: &[u8]) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    rt.block_on(crate::server::framing::sanitize(input, &mut out));
    let mut rest = &out[..];
    let mut frames = 0;
    while !rest.is_empty() {
        let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").ok_or("a frame without a header block")?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| "a header that is not UTF-8")?;
        let len: usize = head
            .strip_prefix("Content-Length: ")
            .and_then(|l| l.parse().ok())
            .ok_or_else(|| format!("a header other than one length: {head:?}"))?;
        let body = rest.get(head_end + 4..head_end + 4 + len).ok_or("a body shorter than its length")?;
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("a body that is not JSON: {e}"))?;
        if !crate::server::framing::is_one_message(&v) {
            return Err(format!("not one JSON-RPC message: {v}"));
        }
        rest = &rest[head_end + 4 + len..];
        frames += 1;
    }
    let lines = input.iter().filter(|&&b| b == b'\n').count() + 1;
    if frames > lines {
        return Err(format!("{frames} frames from {lines} lines"));
    }
    Ok(())
}

/// One `didChange`: its version and content changes.
pub type Batch = (i32, Vec<Change>);

/// Documents: versioned edit batches (applied in version order, whatever
/// order they arrive in, gaps included) give the text LSP's line rules
/// give, and the incremental tree equals a full parse of the final text.
/// Versions below 2 and repeated versions are dropped from `arrival` first.
pub fn documents(initial: &str, arrival: &[Batch], enc: Encoding) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let arrival: Vec<&Batch> = arrival.iter().filter(|(v, _)| *v >= 2 && seen.insert(*v)).collect();
    let mut store = DocumentStore::default();
    let uri = "file:///p/doc.py";
    store.open(uri, initial, 1, "python");
    let mut reference = initial.to_string();
    let mut ordered = arrival.clone();
    ordered.sort_by_key(|(v, _)| *v);
    for (_, changes) in ordered {
        for c in changes {
            match c.range {
                None => reference = c.text.clone(),
                Some((a, b)) => {
                    let (s, t) =
                        (lsp_offset(&reference, a.line, a.col, enc), lsp_offset(&reference, b.line, b.col, enc));
                    let (s, t) = if s <= t { (s, t) } else { (t, s) };
                    reference.replace_range(s..t, &c.text);
                }
            }
        }
    }
    let mut max = 1;
    // A request that arrived before every edit, answered late: it never
    // applies an edit across a gap.
    let early = store.mark();
    for (i, (v, changes)) in arrival.iter().enumerate() {
        store.change(uri, *v, changes.clone(), enc).map_err(|e| e.to_string())?;
        store.snapshot_as_of(uri, enc, early).map_err(|e| e.to_string())?;
        max = max.max(*v);
        // A snapshot in between, parsed (the next edits are incremental),
        // where no version below the latest is still to come: a snapshot
        // applies waiting edits, and a version older than it is then stale.
        // (Versions are distinct and from 2: all of 2..=max have arrived
        // exactly when i + 1 of them have.)
        if i % 3 == 2 && i as i32 + 1 == max - 1 {
            store.snapshot_parsed(uri, enc).map_err(|e| e.to_string())?;
        }
    }
    let snap = store.snapshot_parsed(uri, enc).map_err(|e| e.to_string())?;
    if snap.rope != reference {
        return Err(format!("text {:?} != LSP's {:?}", snap.rope.to_string(), reference));
    }
    if let (Some(p), Some(full)) = (snap.parsed, Parsed::parse(Lang::Python, &reference)) {
        let (a, b) = (p.tree.root_node().to_sexp(), full.tree.root_node().to_sexp());
        if a != b {
            return Err(format!("incremental tree {a} != full parse {b}"));
        }
    }
    Ok(())
}

/// Syntax analysis, known repairs, fix regions, empty bodies and action
/// context on arbitrary text and byte offsets: no panic, and every region
/// is whole characters of the text.
pub fn analysis(text: &str, lang: Lang, a: usize, b: usize) -> Result<(), String> {
    let (a, b) = (a.min(text.len()), b.min(text.len()));
    let (start, end) = (a.min(b), a.max(b));
    let Some(p) = Parsed::parse(lang, text) else { return Ok(()) };
    let analysis = crate::syntax::Analysis::new(&p, text);
    let _ = analysis.known_edit(text, start, end);
    let _ = crate::syntax::empty_body_at(&p, text, a);
    let req = crate::actions::FixRequest { text, lang: Some(lang), language_id: "x", start, end, message: "m" };
    let kept = Some((&p, &analysis));
    for plan in [crate::actions::plan_fix(&req, kept), crate::actions::plan_fix(&req, None)].into_iter().flatten() {
        if !(text.is_char_boundary(plan.start) && text.is_char_boundary(plan.end) && plan.start <= plan.end) {
            return Err(format!("fix region {}..{} is not whole characters", plan.start, plan.end));
        }
        let _ = crate::actions::context(text, plan.start, plan.end);
    }
    let _ = crate::actions::plan_fill(text, &p, a);
    Ok(())
}

/// Prompt building and post-processing on arbitrary documents, cursors
/// and model outputs: no panic.
pub fn prompts(text: &str, lang: Lang, cursor: usize, out: &str, fim: bool, truncated: bool) -> Result<(), String> {
    let rope = Rope::from_str(text);
    let parsed = Parsed::parse(lang, text);
    let input = Input {
        rope: &rope,
        cursor: cursor.min(rope.len_chars()),
        lang: Some(lang),
        parsed: parsed.as_ref(),
        path: "a.x",
        repo_name: "r",
        others: &[],
    };
    let mut cfg = Config::default();
    cfg.update(&serde_json::json!({"prompt": if fim { "fim" } else { "prefix" }}));
    if let Some(plan) = complete::plan(&input, &cfg, Some(crate::prompt::Family::QwenCoder), None, Stages::default()) {
        let _ = complete::clean(out, &plan, truncated);
        let _ = complete::postprocess(out, &plan);
    }
    Ok(())
}

/// GGUF headers: a mutated or truncated file is an error, never a panic,
/// and reading it (header and every tensor's bytes) allocates at most
/// `limit` bytes at once (the caller measures; see the property test).
pub fn gguf(bytes: &[u8], dir: &std::path::Path) -> Result<(), String> {
    let path = dir.join(format!("fuzz-{}.gguf", std::process::id()));
    std::fs::write(&path, bytes).map_err(|e| e.to_string())?;
    let result = std::panic::catch_unwind(|| {
        if let Ok(mut f) = crate::models::gguf::GgufFile::open(&path) {
            let _ = f.architecture();
            let names: Vec<String> = f.tensor_names();
            for n in names {
                let _ = f.tensor_bytes(&n);
            }
        }
    });
    let _ = std::fs::remove_file(&path);
    result.map_err(|p| format!("panicked: {}", crate::engine::panic_message(&p)))
}
