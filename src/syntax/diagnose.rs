//! Syntax errors as diagnostics, the region a fix may rewrite, and the
//! bodies that "complete this function" may fill. Pure tree-sitter queries.

use tree_sitter::Node;

use super::checks::{error_places, walk_errors};
use super::lang::Lang;
use super::parse::Parsed;

/// One syntax error: a byte range of the text and a short message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub start: usize,
    pub end: usize,
    pub message: String,
}

/// Longest token text quoted in a message.
const QUOTE_CHARS: usize = 24;

fn quote(s: &str) -> String {
    let s = s.lines().next().unwrap_or("").trim();
    if s.chars().count() > QUOTE_CHARS {
        format!("'{}…'", s.chars().take(QUOTE_CHARS - 1).collect::<String>())
    } else {
        format!("'{s}'")
    }
}

fn node_text<'a>(n: &Node, text: &'a str) -> &'a str {
    text.get(n.start_byte()..n.end_byte()).unwrap_or("")
}

/// The message for a MISSING node: what the parser expected there.
fn missing_message(n: &Node) -> String {
    let kind = n.kind();
    if kind.chars().any(|c| c.is_alphanumeric())
        && kind.chars().all(|c| c.is_alphanumeric() || c == '_')
        && n.is_named()
    {
        format!("expected {}", kind.replace('_', " "))
    } else {
        format!("expected '{kind}'")
    }
}

fn is_open(k: &str) -> Option<&'static str> {
    match k {
        "(" => Some(")"),
        "[" => Some("]"),
        "{" => Some("}"),
        _ => None,
    }
}

/// Leaves (tokens) under `n`, in order, without descending into complete
/// strings and comments.
fn leaves<'t>(n: Node<'t>, out: &mut Vec<Node<'t>>, limit: usize) {
    let mut stack = vec![n];
    while let Some(n) = stack.pop() {
        if out.len() >= limit {
            return;
        }
        if n.child_count() == 0 || (n.kind().contains("string") && !n.has_error()) || n.kind().contains("comment") {
            out.push(n);
            continue;
        }
        let mut c = n.walk();
        let kids: Vec<Node> = n.children(&mut c).collect();
        stack.extend(kids.into_iter().rev());
    }
}

/// Describes an ERROR node: an unclosed bracket or string if it holds one,
/// else the first unexpected token.
/// Tokens of an ERROR node looked at for quotes and brackets.
const ERROR_LEAVES: usize = 4096;

/// The ERROR node to report for an outermost one. When a parser's recovery
/// wraps much of the file (tree-sitter-python, after a `def` without its
/// ':', makes one ERROR of the whole module, with the valid definitions
/// and the cascade inside), the first ERROR nested in it is where the
/// trouble starts.
fn focus(mut n: Node) -> Node {
    while n.end_position().row - n.start_position().row > SPRAWL_LINES {
        let mut c = n.walk();
        let Some(inner) = n.children(&mut c).find(|k| k.is_error()) else { break };
        n = inner;
    }
    n
}

fn error_diagnostic(n: Node, text: &str) -> SyntaxError {
    let mut toks = Vec::new();
    leaves(n, &mut toks, ERROR_LEAVES);
    // A quote token, or a line that ends inside an unterminated literal.
    for t in &toks {
        let s = node_text(t, text);
        if matches!(s, "\"" | "'" | "`") || (t.kind().contains("string") && t.has_error()) {
            return SyntaxError { start: t.start_byte(), end: t.end_byte(), message: "unclosed string".into() };
        }
    }
    let mut stack: Vec<(Node, &str)> = Vec::new();
    for t in &toks {
        let k = t.kind();
        if let Some(close) = is_open(k) {
            stack.push((*t, close));
        } else if matches!(k, ")" | "]" | "}") {
            if let Some(i) = stack.iter().rposition(|(_, c)| *c == k) {
                stack.truncate(i);
            } else {
                return SyntaxError { start: t.start_byte(), end: t.end_byte(), message: format!("unmatched '{k}'") };
            }
        }
    }
    // Only when every token was seen: a cut-off list ends inside some call.
    if let Some((t, _)) = stack.first().filter(|_| toks.len() < ERROR_LEAVES) {
        return SyntaxError { start: t.start_byte(), end: t.end_byte(), message: format!("unclosed '{}'", t.kind()) };
    }
    // The first token the parser could not place: in the innermost first
    // nested ERROR (outer ones often wrap valid code), a direct child that
    // is a leaf, else the first leaf of the error.
    let mut inner = n;
    loop {
        let mut c = inner.walk();
        let next = inner.children(&mut c).find(|k| k.is_error());
        match next {
            Some(k) => inner = k,
            None => break,
        }
    }
    let mut c = inner.walk();
    let direct = inner.children(&mut c).find(|k| k.child_count() == 0 && !node_text(k, text).trim().is_empty());
    let mut inner_toks = Vec::new();
    leaves(inner, &mut inner_toks, 64);
    let tok = direct.or_else(|| inner_toks.first().copied());
    match tok {
        Some(t) if !node_text(&t, text).trim().is_empty() => {
            let mut message = format!("unexpected {}", quote(node_text(&t, text)));
            // A word right after a word: most often a misspelled keyword.
            if let Some(prev) = t.prev_sibling().or_else(|| inner.prev_sibling()) {
                let p = node_text(&prev, text);
                let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_');
                if word(p) && word(node_text(&t, text)) && prev.end_byte() <= t.start_byte() {
                    message = format!("unexpected {} after {}", quote(node_text(&t, text)), quote(p));
                }
            }
            SyntaxError { start: t.start_byte(), end: t.end_byte(), message }
        }
        _ => {
            // Nothing to quote: the first line of the error.
            let s = n.start_byte();
            let line_end = text[s..].find('\n').map_or(n.end_byte(), |i| (s + i).min(n.end_byte()));
            SyntaxError { start: s, end: line_end.max(s), message: "syntax error".into() }
        }
    }
}

/// Texts up to this size get the missing-token search.
const REPAIR_MAX_BYTES: usize = 64 * 1024;
/// Lines of an ERROR node whose ends are tried, and the tokens tried there.
const REPAIR_LINES: usize = 6;
/// Lines before an ERROR node where a missing closer is looked for.
const REPAIR_LINES_BEFORE: usize = 4;
/// Errors per text that get the search.
const REPAIRED_ERRORS: usize = 3;
const REPAIR_TOKENS: &[&str] = &[")", "]", "}", ",", ";", ":"];

/// One small edit that repairs an ERROR node: `del` bytes at `at` replaced
/// by `ins` (an inserted token, or a keyword for a misspelled word).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Edit {
    at: usize,
    del: usize,
    ins: &'static str,
}

impl Edit {
    fn apply(&self, text: &str) -> String {
        let mut t = String::with_capacity(text.len() + self.ins.len());
        t.push_str(&text[..self.at]);
        t.push_str(self.ins);
        t.push_str(&text[self.at + self.del..]);
        t
    }

    /// A byte of the edited text, in the original text.
    fn back(&self, b: usize) -> usize {
        if b >= self.at + self.ins.len() {
            b - self.ins.len() + self.del
        } else {
            b.min(self.at)
        }
    }
}

/// The message for an ERROR node that one small edit repairs: the parser's
/// "expected ':'" that tree-sitter does not say itself, or a misspelled
/// keyword. The search ([`repair`]) is bounded: a few dozen parses of a
/// small text.
fn edit_message(e: Edit, text: &str) -> SyntaxError {
    if e.del > 0 {
        let word = &text[e.at..e.at + e.del];
        return SyntaxError {
            start: e.at,
            end: e.at + e.del,
            message: format!("unknown word {}: did you mean '{}'?", quote(word), e.ins),
        };
    }
    // Underline the character before the gap.
    let start = text[..e.at].char_indices().next_back().map_or(e.at, |(i, _)| i);
    SyntaxError { start, end: e.at, message: format!("expected '{}'", e.ins) }
}

/// Whether `a` and `b` differ by one insertion, deletion, substitution or
/// swap of neighbours (and are not equal).
pub(super) fn one_edit_apart(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a == b || a.len().abs_diff(b.len()) > 1 {
        return false;
    }
    let p = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let s = a[p..].iter().rev().zip(b[p..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (a.len() - p - s.min(a.len() - p), b.len() - p - s.min(b.len() - p));
    match (ra, rb) {
        (1, 0) | (0, 1) | (1, 1) => true,
        (2, 2) => a[p] == b[p + 1] && a[p + 1] == b[p],
        _ => false,
    }
}

/// Words of at least two letters in `text[from..to]`, with their offsets.
fn words(text: &str, from: usize, to: usize) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text[from..to].char_indices().chain(std::iter::once((to - from, ' '))) {
        let w = c.is_alphanumeric() || c == '_';
        match (w, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let word = &text[from + s..from + i];
                if word.chars().count() >= 2 && word.chars().next().is_some_and(|c| c.is_alphabetic()) {
                    out.push((from + s, word));
                }
                start = None;
            }
            _ => {}
        }
    }
    out
}

/// Words looked at for a misspelled keyword, and gaps inside a line for a
/// missing ':' or ',', on an ERROR's first line.
const REPAIR_WORDS: usize = 12;
const REPAIR_GAPS: usize = 8;

/// The edit [`edit_message`] reports (where, what goes away, what comes),
/// and the rows of the errors left after it. `places` are the errors of
/// the tree `n` belongs to ([`error_places`]).
fn repair(lang: Lang, n: Node, text: &str, places: &[(usize, usize)]) -> Option<(Edit, Vec<usize>)> {
    if text.len() > REPAIR_MAX_BYTES {
        return None;
    }
    let mut parser = super::parse::new_parser(lang)?;
    // The errors elsewhere, which an insertion here may leave as they are.
    let others: Vec<usize> =
        places.iter().filter(|&&(b, _)| b < n.start_byte() || b > n.end_byte()).map(|&(_, row)| row).collect();
    // A MISSING node is tree-sitter's own one-token repair; only a closer
    // before it that also removes another error does better (a missing '}'
    // that the parser papered over with a ';').
    let missing = n.is_missing();
    let mut best: Option<(Vec<usize>, Edit)> = None;
    let mut try_edit = |e: Edit, best: &mut Option<(Vec<usize>, Edit)>| {
        let t = e.apply(text);
        let Some(tree) = super::parse::parse_str_with(&mut parser, &t, super::parse::ONE_SHOT_PARSE_BUDGET) else {
            return;
        };
        // Every error of this node gone, and nothing new.
        if let Some(rows) = repaired_errors(&tree, &others) {
            if best.as_ref().is_none_or(|b| rows.len() < b.0.len()) {
                *best = Some((rows, e));
            }
        }
    };
    if missing {
        closer_before(text, n, &mut best, &mut try_edit);
        return best.filter(|(rows, _)| rows.len() < others.len()).map(|(rows, e)| (e, rows));
    }
    // A misspelled keyword on the error's first lines (from the first line's
    // start: the parser often accepts the word itself and stumbles after it).
    let first_line = (
        line_start(text, n.start_byte()),
        text[n.start_byte()..].find('\n').map_or(text.len(), |i| n.start_byte() + i),
    );
    let mut lines_end = first_line.1;
    for _ in 1..REPAIR_LINES {
        if lines_end >= n.end_byte() || lines_end >= text.len() {
            break;
        }
        lines_end = text[lines_end + 1..].find('\n').map_or(text.len(), |i| lines_end + 1 + i);
    }
    let kws = lang.rules().keywords;
    for (at, w) in words(text, first_line.0, lines_end.min(text.len())).into_iter().take(REPAIR_WORDS) {
        if kws.contains(&w) {
            continue;
        }
        for kw in kws.iter().filter(|k| one_edit_apart(w, k)) {
            try_edit(Edit { at, del: w.len(), ins: kw }, &mut best);
        }
    }
    if best.is_some() {
        return best.map(|(rows, e)| (e, rows));
    }
    let mut at = n.start_byte();
    for _ in 0..REPAIR_LINES {
        let eol = text[at..].find('\n').map_or(text.len(), |i| at + i);
        let code_end = at + text[at..eol].trim_end().len();
        if code_end > at && code_end <= n.end_byte() {
            for tok in REPAIR_TOKENS {
                try_edit(Edit { at: code_end, del: 0, ins: tok }, &mut best);
            }
        }
        if eol >= n.end_byte() || eol >= text.len() {
            break;
        }
        at = eol + 1;
    }
    if best.is_none() {
        // A ':' or ',' missing inside the first line, between two words
        // (`times number` for `times: number`).
        let line = &text[first_line.0..first_line.1];
        let gaps = line
            .char_indices()
            .zip(line.char_indices().skip(1))
            .filter(|((_, a), (_, b))| (a.is_alphanumeric() || *a == '_') && b.is_whitespace())
            .map(|(_, (i, _))| first_line.0 + i)
            .filter(|&g| text[g..first_line.1].trim_start().starts_with(|c: char| c.is_alphanumeric() || c == '_'));
        for g in gaps.take(REPAIR_GAPS) {
            for tok in [":", ","] {
                try_edit(Edit { at: g, del: 0, ins: tok }, &mut best);
            }
        }
    }
    if best.as_ref().is_none_or(|b| !b.0.is_empty()) {
        // Also tried when an edit at the error leaves other errors: a
        // missing brace is often "repaired" there by a ';' that leaves it
        // missing.
        closer_before(text, n, &mut best, &mut try_edit);
    }
    best.map(|(rows, e)| (e, rows))
}

/// A closer missing before the error at `n` (the parser only notices when
/// the next definition starts): `}` `)` `]` at the end of one of the 4
/// lines before it, the nearest first, or a `,` or `;` at the end of the
/// line just before it.
fn closer_before(
    text: &str,
    n: Node,
    best: &mut Option<(Vec<usize>, Edit)>,
    try_edit: &mut impl FnMut(Edit, &mut Option<(Vec<usize>, Edit)>),
) {
    let mut line_start_at = line_start(text, n.start_byte());
    let mut nearest = true;
    for _ in 0..REPAIR_LINES_BEFORE {
        if line_start_at == 0 {
            break;
        }
        let prev_end = line_start_at - 1;
        let ls = line_start(text, prev_end);
        let code_end = ls + text[ls..prev_end].trim_end().len();
        line_start_at = ls;
        if code_end == ls {
            continue;
        }
        let toks: &[&'static str] = if nearest { &["}", ")", "]", ",", ";"] } else { &["}", ")", "]"] };
        nearest = false;
        let before = best.as_ref().map(|b| b.1);
        for tok in toks {
            try_edit(Edit { at: code_end, del: 0, ins: tok }, best);
        }
        if best.as_ref().map(|b| b.1) != before {
            break;
        }
    }
}

/// The rows of a repaired text's errors (a small edit within a line, so
/// rows are unchanged), if every error it has is on the row of an error that was
/// already there outside the repaired node (recovery may start it at
/// another token of that line).
fn repaired_errors(tree: &tree_sitter::Tree, others: &[usize]) -> Option<Vec<usize>> {
    let now = error_places(tree);
    let mut pool = others.to_vec();
    for (_, row) in &now {
        let i = pool.iter().position(|o| o == row)?;
        pool.swap_remove(i);
    }
    Some(now.into_iter().map(|(_, row)| row).collect())
}

/// A repair and the rows of the errors left after it.
type RepairFound = (Edit, Vec<usize>);

/// [`repair`] results per error node (by byte range) of one parsed text, in
/// the order searched: the diagnostics and the fix region ask about the
/// same nodes.
struct RepairMemo {
    lang: Lang,
    /// The parsed tree's errors, found once for every search.
    places: Vec<(usize, usize)>,
    found: Vec<((usize, usize), Option<RepairFound>)>,
}

impl RepairMemo {
    fn new(p: &Parsed) -> Self {
        RepairMemo { lang: p.lang, places: error_places(&p.tree), found: Vec::new() }
    }

    /// The repair and the rows of the errors it leaves.
    fn repair_rows(&mut self, n: Node, text: &str) -> Option<RepairFound> {
        let key = (n.start_byte(), n.end_byte());
        if let Some((_, r)) = self.found.iter().find(|(k, _)| *k == key) {
            return r.clone();
        }
        let r = repair(self.lang, n, text, &self.places);
        self.found.push((key, r.clone()));
        r
    }
}

/// What the syntax-error search finds in one version of a text: its errors
/// (as [`syntax_errors`] lists them, up to 1,000) and the small edits that
/// repair its first ERROR nodes. Computing it costs up to a few
/// hundred reparses of the text, so a server keeps one per document
/// version for diagnostics and code actions alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub errors: Vec<SyntaxError>,
    repairs: Vec<Repair>,
}

/// Errors an [`Analysis`] lists at most.
pub(crate) const ANALYSIS_MAX_ERRORS: usize = 1000;

/// A known repair: replace `text[start..end]` with `insert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownEdit {
    pub start: usize,
    pub end: usize,
    pub insert: &'static str,
    /// What the edit does, for a code action's title: "Insert ':'".
    pub title: String,
}

impl Analysis {
    /// The edit that repairs the error at `[start, end]`, when the search
    /// found one (reparsing proved it removes that error and adds none).
    pub(crate) fn known_edit(&self, text: &str, start: usize, end: usize) -> Option<KnownEdit> {
        let e = repair_at(&self.repairs, start, end)?.edit;
        let title = if e.del > 0 {
            format!("Replace {} with '{}'", quote(text.get(e.at..e.at + e.del)?), e.ins)
        } else {
            format!("Insert '{}'", e.ins)
        };
        Some(KnownEdit { start: e.at, end: e.at + e.del, insert: e.ins, title })
    }

    pub fn new(p: &Parsed, text: &str) -> Self {
        let mut memo = RepairMemo::new(p);
        let errors = errors_with(p, text, ANALYSIS_MAX_ERRORS, &mut memo);
        let repairs = repairs_with(p, text, &mut memo);
        Analysis { errors, repairs }
    }
}

/// The repairs [`repaired_region`] looks among: those the listing's search
/// found ([`errors_with`]), in text order.
fn repairs_with(p: &Parsed, text: &str, memo: &mut RepairMemo) -> Vec<Repair> {
    if text.len() > REPAIR_MAX_BYTES {
        return Vec::new();
    }
    // The nodes the listing searched, in text order (the memo has them).
    if memo.found.is_empty() {
        errors_with(p, text, ANALYSIS_MAX_ERRORS, memo);
    }
    let found: Vec<Edit> = memo.found.iter().filter_map(|(_, r)| r.as_ref().map(|(e, _)| *e)).collect();
    found.into_iter().map(|e| Repair { edit: e, region: repaired_lines(p.lang, text, e) }).collect()
}

/// An edit that repairs an error node, and the lines of the smallest
/// whole-line node around it in the repaired text (a clean tree), in the
/// original text's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Repair {
    edit: Edit,
    region: Option<(usize, usize)>,
}

/// The repair whose edit is at the diagnostic `[start, end]` (as
/// [`edit_message`] placed it).
fn repair_at(repairs: &[Repair], start: usize, end: usize) -> Option<&Repair> {
    repairs.iter().find(|r| r.edit.at >= start && r.edit.at <= end.max(start + 1))
}

fn repaired_lines(lang: Lang, text: &str, e: Edit) -> Option<(usize, usize)> {
    let fixed = e.apply(text);
    let tree = super::parse::parse_str(lang, &fixed)?;
    let node = tree.root_node().descendant_for_byte_range(e.at, e.at + e.ins.len())?;
    let a = line_aligned_ancestor(&fixed, node)?;
    let lo = line_start(text, e.back(a.start_byte()));
    let hi = line_end(text, e.back(a.end_byte()).saturating_sub(1));
    Some((lo, hi))
}

/// For a diagnostic at an error that one small edit repairs: the region of
/// that repair.
fn repaired_region(start: usize, end: usize, repairs: &[Repair]) -> Option<(usize, usize)> {
    repair_at(repairs, start, end)?.region
}

/// Syntax errors of a parsed text: one per ERROR node (not nested) and one
/// per MISSING node, in text order, at most `max`.
pub fn syntax_errors(p: &Parsed, text: &str, max: usize) -> Vec<SyntaxError> {
    errors_with(p, text, max, &mut RepairMemo::new(p))
}

fn errors_with(p: &Parsed, text: &str, max: usize, memo: &mut RepairMemo) -> Vec<SyntaxError> {
    let mut out = Vec::new();
    if max == 0 {
        return out;
    }
    // The rows of the errors left after each repair found so far: an error
    // on another row is a consequence of the repaired one, and not listed.
    let mut left_after: Vec<Vec<usize>> = Vec::new();
    walk_errors(p.tree.root_node(), |node| {
        let row = node.start_position().row;
        let node = match node {
            n if n.is_missing() => n,
            n if n.is_error() => focus(n),
            _ => return Some(true),
        };
        let consequence = left_after.iter().any(|rows| !rows.contains(&row));
        let repaired = if out.len() < REPAIRED_ERRORS && !consequence { memo.repair_rows(node, text) } else { None };
        match repaired {
            Some((edit, rows)) => {
                out.push(edit_message(edit, text));
                left_after.push(rows);
            }
            None if consequence => {}
            None if node.is_missing() => {
                let at = node.start_byte().min(text.len());
                out.push(SyntaxError { start: at, end: at, message: missing_message(&node) });
            }
            None => out.push(error_diagnostic(node, text)),
        }
        (out.len() < max).then_some(false)
    });
    out.sort_by_key(|e| (e.start, e.end));
    out.dedup_by(|a, b| a.start == b.start && a.message == b.message);
    out
}

use crate::text::{line_end, line_start};

/// Whether `[start, end)` begins a line (only indentation before it) and
/// ends one (only spaces before the line's end).
fn line_aligned(text: &str, start: usize, end: usize) -> bool {
    let before = &text[line_start(text, start)..start];
    let after_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
    before.trim().is_empty() && text[end..after_end].trim().is_empty()
}

/// The smallest node that spans whole lines and contains `n`, with its
/// line-aligned byte range; None when only the root does.
fn line_aligned_ancestor<'t>(text: &str, mut n: Node<'t>) -> Option<Node<'t>> {
    loop {
        let parent = n.parent()?;
        let (s, e) = (n.start_byte(), n.end_byte());
        if (n.is_named() || n.is_error()) && e > s && line_aligned(text, s, e) {
            return Some(n);
        }
        n = parent;
    }
}

/// The syntax errors' nodes that touch `[start, end]`: what a fix must
/// cover. For an ERROR node, the node that holds it (the error is often
/// caused before it); for a MISSING node, the node that lacks it.
fn error_anchors<'t>(p: &'t Parsed, start: usize, end: usize) -> Vec<Node<'t>> {
    let mut out = Vec::new();
    walk_errors(p.tree.root_node(), |n| {
        let touches = n.start_byte() <= end && n.end_byte() >= start;
        if touches && (n.is_error() || n.is_missing()) {
            if let Some(parent) = n.parent() {
                out.push(if parent.parent().is_some() { parent } else { n });
            }
            return Some(false);
        }
        Some(touches)
    });
    out
}

/// Lines beyond which a top-level ERROR node is not taken as a fix region.
const SPRAWL_LINES: usize = 12;

/// The region a fix for an error at `[start, end)` may rewrite: the
/// smallest syntax node that spans whole lines and holds both the range and
/// the syntax errors at it (for a MISSING token, the node that lacks it;
/// for an ERROR node, the node around it), widened to whole lines. Byte
/// offsets of whole lines: the end is after the last line's '\n'. None when
/// the region would exceed `max_bytes`. `a` is the [`Analysis`] of the
/// same text (its repairs).
pub(crate) fn fix_region(
    p: &Parsed,
    text: &str,
    start: usize,
    end: usize,
    max_bytes: usize,
    a: &Analysis,
) -> Option<(usize, usize)> {
    let repairs = &a.repairs;
    let start = start.min(text.len());
    let end = end.clamp(start, text.len());
    // The diagnostic's own lines are the least a fix may touch.
    let mut lo = line_start(text, start);
    let mut hi = line_end(text, end.saturating_sub(usize::from(end > start)));
    if let Some((a, b)) = repaired_region(start, end, repairs) {
        let (a, b) = (a.min(lo), b.max(hi));
        return (b > a && b - a <= max_bytes).then_some((a, b));
    }
    let mut nodes = error_anchors(p, start, end);
    if nodes.is_empty() {
        nodes.extend(p.tree.root_node().descendant_for_byte_range(start, end));
    }
    // A top-level ERROR that swallowed many lines says little about where
    // the mistake is: the diagnostic's lines are a better guess.
    let sprawling = |n: &Node| {
        n.is_error()
            && n.parent().is_some_and(|p| p.parent().is_none())
            && n.end_position().row - n.start_position().row > SPRAWL_LINES
    };
    for n in nodes {
        if sprawling(&n) {
            continue;
        }
        match line_aligned_ancestor(text, n).filter(|a| !sprawling(a)) {
            Some(a) => {
                lo = lo.min(line_start(text, a.start_byte()));
                hi = hi.max(line_end(text, a.end_byte().saturating_sub(1)));
            }
            None => {
                // Only the whole file spans whole lines: take the node's lines.
                lo = lo.min(line_start(text, n.start_byte()));
                hi = hi.max(line_end(text, n.end_byte().saturating_sub(1)));
            }
        }
    }
    if hi <= lo {
        // An error at the very end of the text: its last line.
        lo = line_start(text, lo.saturating_sub(1));
    }
    (hi > lo && hi - lo <= max_bytes).then_some((lo, hi))
}

/// A function whose body is empty or a placeholder (`pass`, `...`,
/// `todo!()`, `unimplemented!()`, a "not implemented" throw or panic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EmptyBody {
    /// Bytes to replace: the placeholder, or the inside of empty braces.
    pub start: usize,
    pub end: usize,
    /// Indentation of the function's first line.
    pub indent: String,
    /// The function's name, for the action's title.
    pub name: String,
    /// Whether the body is brace-delimited (the replacement goes inside).
    pub braces: bool,
}

fn is_placeholder(body: &str) -> bool {
    let b: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    let b = b.trim_end_matches(';');
    if matches!(b, "" | "pass" | "..." | "todo!()" | "unimplemented!()")
        || b.starts_with("todo!(\"")
        || b.starts_with("unimplemented!(\"")
    {
        return true;
    }
    let l = b.to_ascii_lowercase();
    (l.starts_with("thrownewerror(") || l.starts_with("panic(") || l.starts_with("thrownew"))
        && (l.contains("notimplemented") || l.contains("todo") || l.contains("unimplemented"))
        || l.starts_with("raisenotimplementederror")
}

/// The innermost function around `byte` whose body is empty or a
/// placeholder, if any.
pub(crate) fn empty_body_at(p: &Parsed, text: &str, byte: usize) -> Option<EmptyBody> {
    let byte = byte.min(text.len());
    let mut node = p.tree.root_node().descendant_for_byte_range(byte, byte)?;
    loop {
        if p.lang.rules().function_kinds.contains(&node.kind()) {
            if let Some(body) = node.child_by_field_name("body") {
                let (bs, be) = (body.start_byte(), body.end_byte());
                let raw = node_text(&body, text);
                let braces = raw.starts_with('{') && raw.ends_with('}') && raw.len() >= 2;
                let inner = if braces { &raw[1..raw.len() - 1] } else { raw };
                // A docstring may precede a Python placeholder.
                let inner_code = strip_leading_docstring(p.lang, inner);
                if is_placeholder(inner_code) {
                    let ls = line_start(text, node.start_byte());
                    let indent: String = text[ls..].chars().take_while(|c| *c == ' ' || *c == '\t').collect();
                    let name = node
                        .child_by_field_name("name")
                        .map(|n| node_text(&n, text).to_string())
                        .unwrap_or_else(|| "this function".into());
                    let (start, end) = if braces {
                        (bs + 1, be - 1)
                    } else {
                        let off = inner.len() - inner_code.len();
                        (bs + off, be)
                    };
                    return Some(EmptyBody { start, end, indent, name, braces });
                }
                return None;
            }
        }
        node = node.parent()?;
    }
}

fn strip_leading_docstring(lang: Lang, s: &str) -> &str {
    if !lang.rules().docstrings {
        return s;
    }
    let t = s.trim_start();
    for q in ["\"\"\"", "'''"] {
        if let Some(rest) = t.strip_prefix(q) {
            if let Some(i) = rest.find(q) {
                return &rest[i + 3..];
            }
        }
    }
    s
}

/// The smallest syntax node that spans whole lines and is larger than the
/// lines `[start, end)`: one level of surrounding code, for diagnostics
/// (indentation, say) whose fix may need the lines around them. Byte
/// offsets of whole lines; None when the result exceeds `max_bytes` or
/// only the root is larger.
pub(crate) fn widen_region(
    p: &Parsed,
    text: &str,
    start: usize,
    end: usize,
    max_bytes: usize,
) -> Option<(usize, usize)> {
    let mut n = p.tree.root_node().descendant_for_byte_range(start, end.saturating_sub(1).max(start))?;
    loop {
        let parent = n.parent()?;
        let (s, e) = (n.start_byte(), n.end_byte());
        if (n.is_named() || n.is_error()) && e > s && line_aligned(text, s, e) {
            let (ls, le) = (line_start(text, s), line_end(text, e.saturating_sub(1)));
            if ls < start || le > end {
                return (le - ls <= max_bytes).then_some((ls.min(start), le.max(end)));
            }
        }
        n = parent;
    }
}
