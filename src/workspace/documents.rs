//! Open documents: ropey text, version and language per URI, edits applied in
//! version order at a cost proportional to the edit, and the conversion
//! between LSP positions (UTF-16 or UTF-8 code units) and text offsets.
//! No LSP types here: positions are plain line/column pairs.

use crate::syntax::{edit_for_change, Lang, ParseJob, Parsed, SyntaxTree};
use ropey::Rope;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    #[default]
    Utf16,
    Utf8,
}

/// A position as the client counts it: 0-based line, column in code units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

#[derive(Debug, Clone)]
pub struct Change {
    pub range: Option<(Pos, Pos)>,
    pub text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocError {
    #[error("unknown document {0}")]
    Unknown(String),
    #[error("line {line} is past the end of the document ({lines} lines)")]
    LineOutOfRange { line: u32, lines: usize },
}

pub(crate) struct Document {
    pub rope: Rope,
    pub version: i32,
    pub language: String,
    /// The tree-sitter tree, updated incrementally; None for languages we
    /// have no grammar for (they still get completions). Edits are recorded
    /// in it here; the parse itself runs elsewhere ([`ParseJob`]).
    pub syntax: Option<SyntaxTree>,
    /// Edits applied so far: a parse result is installed only if none came
    /// after its job was made.
    edits: u64,
    /// Edits that arrived ahead of a missing version, applied once it comes
    /// (or a request that arrived after them forces them), each with its
    /// arrival number ([`DocumentStore::mark`]).
    pending: BTreeMap<i32, (u64, Vec<Change>)>,
}

/// A cheap copy of a document for work outside the store's lock.
#[derive(Clone)]
pub(crate) struct Snapshot {
    pub uri: String,
    pub rope: Rope,
    pub version: i32,
    pub language: String,
    pub lang: Option<Lang>,
    /// The parsed tree of this version (a cheap reference-counted copy),
    /// when it is fresh; otherwise `parse` says how to make it.
    pub parsed: Option<Parsed>,
    /// The parse that brings the tree up to this version, to run off the
    /// protocol thread and hand back with [`DocumentStore::install`].
    pub parse: Option<(u64, ParseJob)>,
}

impl Document {
    pub(crate) fn with_uri(uri: &str, text: &str, version: i32, language: &str) -> Self {
        let rope = Rope::from_str(text);
        let lang = Lang::from_language_id(language).or_else(|| Lang::from_path(uri));
        // Parsed later, off the protocol thread: opening costs the copy only.
        let syntax = lang.map(SyntaxTree::unparsed);
        Document { rope, version, language: language.to_string(), syntax, edits: 0, pending: BTreeMap::new() }
    }

    fn apply_one(&mut self, c: &Change, enc: Encoding) {
        self.edits += 1;
        match c.range {
            None => {
                self.rope = Rope::from_str(&c.text);
                if let Some(t) = &mut self.syntax {
                    *t = SyntaxTree::unparsed(t.lang());
                }
            }
            Some((a, b)) => {
                // Out-of-range edits are clamped to the document: never panic,
                // never lose the text the client sent.
                let end_char = self.rope.len_chars();
                let s = char_at(&self.rope, a, enc).unwrap_or(end_char);
                let e = char_at(&self.rope, b, enc).unwrap_or(end_char);
                let (s, e) = if s <= e { (s, e) } else { (e, s) };
                // Only a tree to edit is worth the edit's points.
                match self.syntax.as_mut() {
                    Some(t) if t.has_tree() => t.edit(&edit_for_change(&self.rope, s, e, &c.text)),
                    Some(t) => t.changed(),
                    None => {}
                }
                self.rope.remove(s..e);
                self.rope.insert(s, &c.text);
            }
        }
    }
}

/// Character index of a client position. A column past the end of its
/// line is clamped to the line end (clients do send those); a line past
/// the end of the document is an error.
pub fn char_at(rope: &Rope, pos: Pos, enc: Encoding) -> Result<usize, DocError> {
    let lines = rope.len_lines();
    let line = pos.line as usize;
    if line >= lines {
        // The position just after a final newline is line == len_lines - 1
        // in ropey; anything further is out of range.
        return Err(DocError::LineOutOfRange { line: pos.line, lines });
    }
    let start = rope.line_to_char(line);
    let slice = rope.line(line);
    // The line's content without its line break.
    let mut content_chars = slice.len_chars();
    let mut chars = slice.chars_at(content_chars);
    while let Some(c) = chars.prev() {
        if c == '\n' || c == '\r' {
            content_chars -= 1;
        } else {
            break;
        }
    }
    let mut units = 0u32;
    for (i, c) in slice.chars().take(content_chars).enumerate() {
        if units >= pos.col {
            return Ok(start + i);
        }
        units += match enc {
            Encoding::Utf16 => c.len_utf16() as u32,
            Encoding::Utf8 => c.len_utf8() as u32,
        };
    }
    Ok(start + content_chars)
}

pub fn pos_of(rope: &Rope, char_idx: usize, enc: Encoding) -> Pos {
    let char_idx = char_idx.min(rope.len_chars());
    let line = rope.char_to_line(char_idx);
    let start = rope.line_to_char(line);
    let col: usize = rope
        .slice(start..char_idx)
        .chars()
        .map(|c| match enc {
            Encoding::Utf16 => c.len_utf16(),
            Encoding::Utf8 => c.len_utf8(),
        })
        .sum();
    Pos { line: line as u32, col: col as u32 }
}

#[derive(Default)]
pub(crate) struct DocumentStore {
    docs: HashMap<String, Document>,
    /// Edits received so far, in arrival order.
    arrivals: u64,
}

/// How far into the edits received a snapshot may look: those that arrived
/// before the request it is for ([`DocumentStore::mark`]), or all of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AsOf {
    Arrival(u64),
    Now,
}

impl DocumentStore {
    pub fn open(&mut self, uri: &str, text: &str, version: i32, language: &str) {
        self.docs.insert(uri.to_string(), Document::with_uri(uri, text, version, language));
    }

    pub fn close(&mut self, uri: &str) {
        self.docs.remove(uri);
    }

    pub fn get(&self, uri: &str) -> Option<&Document> {
        self.docs.get(uri)
    }

    pub fn uris(&self) -> impl Iterator<Item = &String> {
        self.docs.keys()
    }

    /// The text and language of every open document (for cross-file context).
    /// Every open document: URI, text (a cheap rope copy), version, language.
    pub fn texts(&self) -> Vec<(String, Rope, i32, Option<Lang>)> {
        self.docs
            .iter()
            .map(|(u, d)| (u.clone(), d.rope.clone(), d.version, d.syntax.as_ref().map(|t| t.lang())))
            .collect()
    }

    /// The arrival mark of a request: a snapshot for it applies the edits
    /// received before it even across a gap in versions (LSP versions need
    /// not be consecutive), and leaves those received after it waiting. A
    /// request handled late (after an `await`) must not force an edit that
    /// arrived after it ahead of the missing version sent just behind it.
    pub(crate) fn mark(&self) -> AsOf {
        AsOf::Arrival(self.arrivals)
    }

    /// Applies a didChange in version order: an edit for a later version
    /// than the next one waits until the versions in between arrive (or a
    /// snapshot for a later request forces it); an edit for an old version
    /// is ignored.
    pub fn change(&mut self, uri: &str, version: i32, changes: Vec<Change>, enc: Encoding) -> Result<(), DocError> {
        let doc = self.docs.get_mut(uri).ok_or_else(|| DocError::Unknown(uri.to_string()))?;
        if version <= doc.version {
            tracing::warn!(uri, version, current = doc.version, "ignoring a stale edit");
            return Ok(());
        }
        self.arrivals += 1;
        doc.pending.insert(version, (self.arrivals, changes));
        // Mark 0 is before every edit (arrivals count from 1): no gap is
        // crossed here, only versions that follow on are applied.
        Self::flush(doc, enc, AsOf::Arrival(0));
        Ok(())
    }

    /// Applies the pending edits that follow on without a gap, and those
    /// received by `forced` even across one (in version order, up to the
    /// first received later).
    fn flush(doc: &mut Document, enc: Encoding, forced: AsOf) {
        while let Some((&v, &(arrival, _))) = doc.pending.iter().next() {
            let force = match forced {
                AsOf::Now => true,
                AsOf::Arrival(mark) => arrival <= mark,
            };
            if v != doc.version + 1 && !force {
                break;
            }
            let (_, changes) = doc.pending.remove(&v).unwrap_or_default();
            for c in &changes {
                doc.apply_one(c, enc);
            }
            doc.version = v;
        }
    }

    /// A copy to work on without the lock, as of every edit received.
    pub fn snapshot(&mut self, uri: &str, enc: Encoding) -> Result<Snapshot, DocError> {
        self.snapshot_as_of(uri, enc, AsOf::Now)
    }

    /// A copy to work on without the lock, for a request with the arrival
    /// mark `as_of`: edits waiting for a missing version that arrived before
    /// the request are applied first (it comes after the edits it sees).
    pub(crate) fn snapshot_as_of(&mut self, uri: &str, enc: Encoding, as_of: AsOf) -> Result<Snapshot, DocError> {
        let doc = self.docs.get_mut(uri).ok_or_else(|| DocError::Unknown(uri.to_string()))?;
        Self::flush(doc, enc, as_of);
        Ok(Snapshot {
            uri: uri.to_string(),
            rope: doc.rope.clone(),
            version: doc.version,
            language: doc.language.clone(),
            lang: doc.syntax.as_ref().map(|t| t.lang()),
            parsed: doc.syntax.as_ref().and_then(|t| t.snapshot()),
            parse: doc.syntax.as_ref().and_then(|t| t.job(&doc.rope)).map(|j| (doc.edits, j)),
        })
    }

    /// Hands back the tree a snapshot's [`ParseJob`] made: kept when no edit
    /// came since (else dropped; the next snapshot parses again).
    pub fn install(&mut self, uri: &str, edits: u64, tree: Option<tree_sitter::Tree>) {
        if let Some(doc) = self.docs.get_mut(uri).filter(|d| d.edits == edits) {
            if let Some(t) = &mut doc.syntax {
                t.install(tree);
            }
        }
    }

    /// [`snapshot`](Self::snapshot) with its parse run here, on the
    /// caller's thread (tools and tests; the server parses off its thread).
    pub(crate) fn snapshot_parsed(&mut self, uri: &str, enc: Encoding) -> Result<Snapshot, DocError> {
        let mut snap = self.snapshot(uri, enc)?;
        if let Some((edits, job)) = snap.parse.take() {
            let lang = job.lang;
            let tree = job.run();
            self.install(uri, edits, tree.clone());
            snap.parsed = tree.map(|tree| Parsed { lang, tree });
        }
        Ok(snap)
    }

    /// The latest version known, counting edits not yet applied.
    pub(crate) fn latest_version(&self, uri: &str) -> Option<i32> {
        self.docs.get(uri).map(|d| d.pending.keys().next_back().copied().unwrap_or(d.version).max(d.version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    #[test]
    fn utf16_columns_after_astral_characters() {
        let d = Document::with_uri("", "a🦀b\nx", 1, "rust");
        // 🦀 is two UTF-16 units and four UTF-8 bytes.
        assert_eq!(char_at(&d.rope, p(0, 3), Encoding::Utf16).unwrap(), 2);
        assert_eq!(char_at(&d.rope, p(0, 5), Encoding::Utf8).unwrap(), 2);
        assert_eq!(pos_of(&d.rope, 2, Encoding::Utf16), p(0, 3));
        assert_eq!(pos_of(&d.rope, 2, Encoding::Utf8), p(0, 5));
        // Past the end of a line: clamped. Past the end of the file: error.
        assert_eq!(char_at(&d.rope, p(0, 99), Encoding::Utf16).unwrap(), 3);
        assert!(char_at(&d.rope, p(7, 0), Encoding::Utf16).is_err());
        assert_eq!(char_at(&d.rope, p(1, 1), Encoding::Utf16).unwrap(), 5);
    }

    /// A text that failed to parse (here: one line over the parser's
    /// limit) is not parsed again on every snapshot, only after an edit.
    #[test]
    fn a_failed_parse_waits_for_the_next_edit() {
        let mut s = DocumentStore::default();
        let long = format!("x = '{}'\n", "a".repeat(crate::syntax::MAX_LINE_BYTES + 10));
        s.open("file:///a.py", &long, 1, "python");
        let snap = s.snapshot_parsed("file:///a.py", Encoding::Utf16).unwrap();
        assert!(snap.parsed.is_none());
        assert!(s.snapshot("file:///a.py", Encoding::Utf16).unwrap().parse.is_none(), "parsed again without an edit");
        // The edit cuts the long line: parsed again, and now it succeeds.
        let edit =
            Change { range: Some((p(0, 6), p(0, 8 + crate::syntax::MAX_LINE_BYTES as u32))), text: String::new() };
        s.change("file:///a.py", 2, vec![edit], Encoding::Utf16).unwrap();
        assert!(s.snapshot("file:///a.py", Encoding::Utf16).unwrap().parse.is_some());
        assert!(s.snapshot_parsed("file:///a.py", Encoding::Utf16).unwrap().parsed.is_some());
    }

    /// LSP's line breaks are LF, CRLF and CR only: form feed (which PEP 8
    /// allows), VT, NEL, U+2028 and U+2029 are characters of their line.
    #[test]
    fn only_lsp_line_breaks_end_lines() {
        for sep in ['\u{000C}', '\u{000B}', '\u{0085}', '\u{2028}', '\u{2029}'] {
            let mut s = DocumentStore::default();
            let text = format!("a{sep}b\nline two\n");
            s.open("u", &text, 1, "python");
            // Line 1 is "line two": an edit at its start lands there.
            let edit = Change { range: Some((p(1, 0), p(1, 4))), text: "LINE".into() };
            s.change("u", 2, vec![edit], Encoding::Utf16).unwrap();
            assert_eq!(s.get("u").unwrap().rope.to_string(), format!("a{sep}b\nLINE two\n"), "{:?}", sep);
            let d = Document::with_uri("", &text, 1, "python");
            assert_eq!(pos_of(&d.rope, 3, Encoding::Utf16), p(0, 3), "{:?}", sep);
        }
    }

    #[test]
    fn crlf_line_ends_are_not_columns() {
        let d = Document::with_uri("", "ab\r\ncd", 1, "c");
        assert_eq!(char_at(&d.rope, p(0, 9), Encoding::Utf16).unwrap(), 2);
    }

    #[test]
    fn edits_apply_in_version_order() {
        let mut s = DocumentStore::default();
        s.open("u", "hello", 1, "text");
        let ins = |at: u32, t: &str| Change { range: Some((p(0, at), p(0, at))), text: t.into() };
        // Version 3 arrives before 2: it waits.
        s.change("u", 3, vec![ins(6, "!")], Encoding::Utf16).unwrap();
        assert_eq!(s.get("u").unwrap().rope.to_string(), "hello");
        s.change("u", 2, vec![ins(5, " ")], Encoding::Utf16).unwrap();
        assert_eq!(s.get("u").unwrap().rope.to_string(), "hello !");
        assert_eq!(s.get("u").unwrap().version, 3);
        // A stale edit is ignored; an unknown URI is an error.
        s.change("u", 2, vec![ins(0, "X")], Encoding::Utf16).unwrap();
        assert_eq!(s.get("u").unwrap().rope.to_string(), "hello !");
        assert!(s.change("nope", 5, vec![], Encoding::Utf16).is_err());
        // Out-of-range edits are clamped, not lost.
        s.change("u", 4, vec![Change { range: Some((p(9, 0), p(9, 0))), text: "?".into() }], Encoding::Utf16).unwrap();
        assert_eq!(s.get("u").unwrap().rope.to_string(), "hello !?");
    }

    #[test]
    fn a_request_forces_only_the_edits_received_before_it() {
        let mut s = DocumentStore::default();
        s.open("u", "ab", 1, "text");
        let ins = |at: u32, t: &str| Change { range: Some((p(0, at), p(0, at))), text: t.into() };
        // A request arrives, then version 3 (2 is still on its way): the
        // request, answered late, sees neither, and 3 keeps waiting for 2
        // (forcing 3 would drop 2 as stale: the copy would differ).
        let early = s.mark();
        s.change("u", 3, vec![ins(3, "!")], Encoding::Utf16).unwrap();
        assert_eq!(s.snapshot_as_of("u", Encoding::Utf16, early).unwrap().rope.to_string(), "ab");
        s.change("u", 2, vec![ins(2, "c")], Encoding::Utf16).unwrap();
        assert_eq!(s.get("u").unwrap().rope.to_string(), "abc!");
        // A gap that never fills (versions need not be consecutive) is
        // crossed by the next request that arrives after the edit.
        s.change("u", 7, vec![ins(0, ">")], Encoding::Utf16).unwrap();
        let later = s.mark();
        assert_eq!(s.snapshot_as_of("u", Encoding::Utf16, early).unwrap().rope.to_string(), "abc!");
        let snap = s.snapshot_as_of("u", Encoding::Utf16, later).unwrap();
        assert_eq!((snap.rope.to_string(), snap.version), (">abc!".to_string(), 7));
        s.change("u", 9, vec![ins(0, "<")], Encoding::Utf16).unwrap();
        assert_eq!(s.snapshot("u", Encoding::Utf16).unwrap().rope.to_string(), "<>abc!");
    }

    #[test]
    fn trees_follow_incremental_edits() {
        let mut s = DocumentStore::default();
        s.open("file:///a.py", "def f(x):\n    return x\n", 1, "python");
        let ins = |l: u32, c: u32, t: &str| Change { range: Some((p(l, c), p(l, c))), text: t.into() };
        s.change("file:///a.py", 2, vec![ins(1, 12, " + 1"), ins(0, 0, "import os\n")], Encoding::Utf16).unwrap();
        let snap = s.snapshot_parsed("file:///a.py", Encoding::Utf16).unwrap();
        let text = snap.rope.to_string();
        let full = crate::syntax::Parsed::parse(crate::syntax::Lang::Python, &text).unwrap();
        assert_eq!(snap.parsed.unwrap().tree.root_node().to_sexp(), full.tree.root_node().to_sexp());
        // The installed tree is kept (no second parse), and follows more edits.
        assert!(s.snapshot("file:///a.py", Encoding::Utf16).unwrap().parse.is_none());
        s.change("file:///a.py", 3, vec![ins(2, 0, "def g(:\n")], Encoding::Utf16).unwrap();
        let stale = s.snapshot("file:///a.py", Encoding::Utf16).unwrap();
        assert!(stale.parsed.is_none() && stale.parse.is_some());
        // A parse overtaken by an edit is not installed.
        let (edits, job) = stale.parse.unwrap();
        s.change("file:///a.py", 4, vec![ins(0, 0, "#\n")], Encoding::Utf16).unwrap();
        s.install("file:///a.py", edits, job.run());
        let snap = s.snapshot_parsed("file:///a.py", Encoding::Utf16).unwrap();
        let full = crate::syntax::Parsed::parse(crate::syntax::Lang::Python, &snap.rope.to_string()).unwrap();
        assert_eq!(snap.parsed.unwrap().tree.root_node().to_sexp(), full.tree.root_node().to_sexp());
        // Unknown languages have no tree but work.
        s.open("file:///notes.txt", "hello", 1, "plaintext");
        assert!(s.snapshot_parsed("file:///notes.txt", Encoding::Utf16).unwrap().parsed.is_none());
    }
}
