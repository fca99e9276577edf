use std::time::{Duration, Instant};

use ropey::Rope;
use tree_sitter::{InputEdit, ParseOptions, ParseState, Parser, Point, Tree};

use super::lang::Lang;

/// Files larger than this are never parsed. Tree-sitter trees cost roughly
/// 10-20x the source size in memory, and files this big are almost always
/// generated; completion quality does not depend on having their tree.
pub(crate) const MAX_PARSE_BYTES: usize = 4 * 1024 * 1024;

/// Files containing a line longer than this are not parsed: such lines are
/// minified or generated code, where error recovery can get very slow and
/// syntax information is useless for completion anyway.
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// Time budget for (re)parsing a document kept in a [`SyntaxTree`].
pub(crate) const TREE_PARSE_BUDGET: Duration = Duration::from_millis(1000);

/// Time budget for each throwaway parse done by the query/check functions.
/// These run on the completion path, so they get less than a document parse.
pub(crate) const ONE_SHOT_PARSE_BUDGET: Duration = Duration::from_millis(300);

/// True when `text` is within the size/line-length bounds we agree to parse.
pub(crate) fn within_limits_str(text: &str) -> bool {
    text.len() <= MAX_PARSE_BYTES && text.split('\n').all(|line| line.len() <= MAX_LINE_BYTES)
}

fn within_limits_rope(rope: &Rope) -> bool {
    if rope.len_bytes() > MAX_PARSE_BYTES {
        return false;
    }
    // Scan chunks rather than ropey lines: ropey's notion of a line break
    // depends on crate features, tree-sitter's is always '\n'.
    let mut run = 0usize;
    for chunk in rope.chunks() {
        for &b in chunk.as_bytes() {
            if b == b'\n' {
                run = 0;
            } else {
                run += 1;
                if run > MAX_LINE_BYTES {
                    return false;
                }
            }
        }
    }
    true
}

pub(crate) fn new_parser(lang: Lang) -> Option<Parser> {
    let mut parser = Parser::new();
    // Only fails on a grammar ABI mismatch; treat as "language unsupported".
    parser.set_language(&lang.ts_language()).ok()?;
    Some(parser)
}

/// Runs a parse with a wall-clock deadline. Tree-sitter 0.25 deprecates
/// `set_timeout_micros` in favour of the progress callback, which can cancel.
fn parse_bounded<T: AsRef<[u8]>>(
    parser: &mut Parser,
    read: &mut impl FnMut(usize, Point) -> T,
    old: Option<&Tree>,
    budget: Duration,
) -> Option<Tree> {
    let deadline = Instant::now() + budget;
    let mut cancel = |_: &ParseState| Instant::now() >= deadline;
    let opts = ParseOptions::new().progress_callback(&mut cancel);
    let tree = parser.parse_with_options(read, old, Some(opts));
    if tree.is_none() {
        // A cancelled parser would otherwise try to *resume* the aborted
        // parse on the next call, even with different text.
        parser.reset();
    }
    tree
}

fn parse_rope(parser: &mut Parser, rope: &Rope, old: Option<&Tree>, budget: Duration) -> Option<Tree> {
    let len = rope.len_bytes();
    let mut read = |byte: usize, _: Point| -> &[u8] {
        if byte >= len {
            return &[];
        }
        let (chunk, chunk_start, _, _) = rope.chunk_at_byte(byte);
        &chunk.as_bytes()[byte - chunk_start..]
    };
    parse_bounded(parser, &mut read, old, budget)
}

pub(crate) fn parse_str_with(parser: &mut Parser, text: &str, budget: Duration) -> Option<Tree> {
    if !within_limits_str(text) {
        return None;
    }
    let bytes = text.as_bytes();
    let mut read = |byte: usize, _: Point| -> &[u8] { bytes.get(byte..).unwrap_or(&[]) };
    parse_bounded(parser, &mut read, None, budget)
}

/// One-shot bounded parse of a string. `None` when over limits, over budget
/// or the grammar cannot be loaded.
pub(crate) fn parse_str(lang: Lang, text: &str) -> Option<Tree> {
    if !within_limits_str(text) {
        return None;
    }
    let mut parser = new_parser(lang)?;
    parse_str_with(&mut parser, text, ONE_SHOT_PARSE_BUDGET)
}

/// A parsed snapshot, used to run several queries against one tree.
/// Obtain one with [`Parsed::parse`] or [`SyntaxTree::snapshot`]; the text
/// passed to queries must be the text the tree was parsed from.
#[derive(Clone)]
pub struct Parsed {
    pub lang: Lang,
    pub tree: Tree,
}

impl Parsed {
    pub fn parse(lang: Lang, text: &str) -> Option<Parsed> {
        Some(Parsed { lang, tree: parse_str(lang, text)? })
    }
}

/// Tree-sitter point (row, *byte* column) of a byte offset, counting only
/// '\n' as a line break like tree-sitter does. Linear in `byte`, which is
/// fine at our size limit (a few ms worst case at 4 MB).
fn point_at(rope: &Rope, byte: usize) -> Point {
    let byte = byte.min(rope.len_bytes());
    let mut row = 0;
    let mut line_start = 0;
    let mut pos = 0;
    for chunk in rope.chunks() {
        if pos >= byte {
            break;
        }
        let take = (byte - pos).min(chunk.len());
        let bytes = &chunk.as_bytes()[..take];
        // A counting loop the compiler vectorizes: this runs on every edit.
        row += bytes.iter().filter(|&&b| b == b'\n').count();
        if let Some(i) = bytes.iter().rposition(|&b| b == b'\n') {
            line_start = pos + i + 1;
        }
        pos += chunk.len();
    }
    Point { row, column: byte - line_start }
}

/// Point reached after inserting `text` at `start`.
fn advance_point(start: Point, text: impl Iterator<Item = u8>) -> Point {
    let mut p = start;
    for b in text {
        if b == b'\n' {
            p.row += 1;
            p.column = 0;
        } else {
            p.column += 1;
        }
    }
    p
}

/// Builds the tree-sitter edit for replacing chars `char_start..char_end` of
/// `rope_before` with `new_text`. Out-of-range char indices are clamped.
pub(crate) fn edit_for_change(rope_before: &Rope, char_start: usize, char_end: usize, new_text: &str) -> InputEdit {
    let n = rope_before.len_chars();
    let char_start = char_start.min(n);
    let char_end = char_end.clamp(char_start, n);
    let start_byte = rope_before.char_to_byte(char_start);
    let old_end_byte = rope_before.char_to_byte(char_end);
    let start_position = point_at(rope_before, start_byte);
    let removed = rope_before.byte_slice(start_byte..old_end_byte);
    let old_end_position = advance_point(start_position, removed.bytes());
    InputEdit {
        start_byte,
        old_end_byte,
        new_end_byte: start_byte + new_text.len(),
        start_position,
        old_end_position,
        new_end_position: advance_point(start_position, new_text.bytes()),
    }
}

/// A document's syntax tree, kept up to date incrementally.
///
/// `tree` is `None` when the text is over [`MAX_PARSE_BYTES`] /
/// [`MAX_LINE_BYTES`], when parsing exceeded [`TREE_PARSE_BUDGET`], or when
/// the grammar failed to load.
pub(crate) struct SyntaxTree {
    lang: Lang,
    /// Last tree, with all edits since applied. Kept even when the latest
    /// reparse failed so the next reparse can still be incremental.
    tree: Option<Tree>,
    /// Whether `tree` matches the current text (reparsed after last edit).
    fresh: bool,
    /// The last parse of this text failed (over the limits or the time
    /// budget): not tried again until the text changes.
    failed: bool,
}

impl SyntaxTree {
    /// A tree for `lang` not parsed yet: [`job`](Self::job) parses it off
    /// the caller's thread, [`install`](Self::install) takes the result.
    pub(crate) fn unparsed(lang: Lang) -> Self {
        SyntaxTree { lang, tree: None, fresh: false, failed: false }
    }

    pub fn lang(&self) -> Lang {
        self.lang
    }

    /// Whether there is a tree (fresh or waiting for a reparse) that edits
    /// must be recorded in.
    pub(crate) fn has_tree(&self) -> bool {
        self.tree.is_some()
    }

    /// The parse that would make the tree match `text`, to run anywhere
    /// (it owns copies); None when the tree is fresh, or when this text
    /// already failed to parse (a 10 MB file is not parsed again on every
    /// keystroke's snapshot, only after its next edit).
    pub(crate) fn job(&self, text: &Rope) -> Option<ParseJob> {
        (!self.fresh && !self.failed).then(|| ParseJob { lang: self.lang, rope: text.clone(), old: self.tree.clone() })
    }

    /// Takes the result of a [`ParseJob`] made since the last edit: the
    /// tree (fresh from now on), or None when the text is not parsed (over
    /// the limits or the budget; the old tree is dropped then).
    pub fn install(&mut self, tree: Option<Tree>) {
        self.fresh = tree.is_some();
        self.failed = tree.is_none();
        self.tree = tree;
    }

    /// The tree for the current text, if parsing succeeded and no edit is
    /// pending a reparse.
    pub fn tree(&self) -> Option<&Tree> {
        if self.fresh {
            self.tree.as_ref()
        } else {
            None
        }
    }

    /// Cheap (reference-counted) copy of the current tree for queries.
    pub fn snapshot(&self) -> Option<Parsed> {
        Some(Parsed { lang: self.lang, tree: self.tree()?.clone() })
    }

    /// Records one edit without reparsing. Several edits (e.g. the content
    /// changes of one LSP notification) may be recorded before a single
    /// parse ([`job`](Self::job)).
    pub fn edit(&mut self, edit: &InputEdit) {
        self.changed();
        if let Some(tree) = &mut self.tree {
            tree.edit(edit);
        }
    }

    /// The text changed where there is no tree to record the edit in: the
    /// next snapshot parses again.
    pub fn changed(&mut self) {
        self.fresh = false;
        self.failed = false;
    }
}

/// A parse of one document version, detached from the document: a copy of
/// its text and of its edited old tree (for an incremental parse).
#[derive(Clone)]
pub(crate) struct ParseJob {
    pub lang: Lang,
    rope: Rope,
    old: Option<Tree>,
}

impl ParseJob {
    /// The tree of the job's text; None when over the limits or the budget.
    pub fn run(self) -> Option<Tree> {
        if !within_limits_rope(&self.rope) {
            return None;
        }
        let mut parser = new_parser(self.lang)?;
        parse_rope(&mut parser, &self.rope, self.old.as_ref(), TREE_PARSE_BUDGET)
    }
}
