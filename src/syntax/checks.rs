use tree_sitter::{Node, Tree};

use super::lang::Lang;
use super::parse::{new_parser, parse_str, parse_str_with, ONE_SHOT_PARSE_BUDGET};

/// Pre-order walk of `root` and the nodes under it, entering only
/// subtrees that hold errors (`has_error`), so it is cheap on mostly-valid
/// code. `visit` sees each node and says whether to go into it (it is only
/// asked to for nodes with errors); returning `None` ends the walk.
/// Iterative: no stack overflow on deeply nested error trees.
pub(crate) fn walk_errors<'t>(root: Node<'t>, mut visit: impl FnMut(Node<'t>) -> Option<bool>) {
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let Some(enter) = visit(node) else { return };
        if enter && node.has_error() && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() || cursor.node() == root {
                return;
            }
        }
    }
}

/// Number of ERROR and MISSING nodes in a tree.
pub(crate) fn count_errors(tree: &Tree) -> usize {
    error_places(tree).len()
}

/// Start bytes and rows of the ERROR and MISSING nodes of a tree, in order.
pub(crate) fn error_places(tree: &Tree) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    walk_errors(tree.root_node(), |n| {
        if n.is_error() || n.is_missing() {
            out.push((n.start_byte(), n.start_position().row));
        }
        Some(true)
    });
    out
}

/// Counts ERROR and MISSING nodes in `text`. Returns 0 when the text is not
/// parsed (over size/line limits or parse budget): "no known errors".
pub fn error_count(lang: Lang, text: &str) -> usize {
    parse_str(lang, text).map_or(0, |t| count_errors(&t))
}

/// Text larger than this is checked through a window around the cursor.
const WINDOW_THRESHOLD_BYTES: usize = 100 * 1024;
/// Lines of context kept on each side of the cursor in windowed mode.
const WINDOW_LINES_EACH_SIDE: usize = 100;
/// Lines before the cursor and after the answer where its errors count.
const NEAR_LINES: usize = 40;
/// Total parses (baseline + full + cuts) allowed per call.
const MAX_PARSES: usize = 12;

/// Keeps the last `n` lines of `s` (the cursor's own partial line included).
fn tail_lines(s: &str, n: usize) -> &str {
    let mut idx = s.len();
    for _ in 0..n {
        match s[..idx].rfind('\n') {
            Some(i) => idx = i,
            None => return s,
        }
    }
    &s[idx + 1..]
}

/// Keeps the first `n` lines of `s`.
fn head_lines(s: &str, n: usize) -> &str {
    let mut idx = 0;
    for _ in 0..n {
        match s[idx..].find('\n') {
            Some(i) => idx += i + 1,
            None => return s,
        }
    }
    &s[..idx]
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Candidate truncations of `completion`, best (longest) first: first every
/// earlier line end, then token boundaries inside the first line.
fn cut_candidates<'a>(completion: &'a str) -> Vec<&'a str> {
    let mut cuts: Vec<&str> = Vec::new();
    let mut push = |c: &'a str| {
        let c = c.trim_end();
        if !c.is_empty() && c.len() < completion.trim_end().len() && !cuts.contains(&c) {
            cuts.push(c);
        }
    };
    let line_ends: Vec<usize> = completion.match_indices('\n').map(|(i, _)| i).collect();
    for &i in line_ends.iter().rev() {
        push(&completion[..i]);
    }
    let first_line = &completion[..line_ends.first().copied().unwrap_or(completion.len())];
    let chars: Vec<(usize, char)> = first_line.char_indices().collect();
    for w in chars.windows(2).rev() {
        let ((_, a), (i, b)) = (w[0], w[1]);
        // A boundary is anywhere a word does not continue across the cut.
        if !(is_word(a) && is_word(b)) {
            push(&first_line[..i]);
        }
    }
    cuts
}

/// Syntax-gates a completion: returns it unchanged if inserting it between
/// `prefix` and `suffix` adds no ERROR/MISSING nodes, otherwise its longest
/// truncation (at a line end, else at a token boundary within the first line)
/// that adds none, or `None`. Errors count within [`NEAR_LINES`] lines
/// of the cursor and of the answer's end.
///
/// Work is bounded to [`MAX_PARSES`] parses; inputs over 100 KB are judged on
/// a window of ~200 lines around the cursor. When the text cannot be parsed
/// at all (limits, timeouts), or the text around the cursor already has
/// several errors (the grammar does not know this dialect), the completion
/// is accepted as-is: no evidence against it.
pub(crate) fn accept_completion(lang: Lang, prefix: &str, completion: &str, suffix: &str) -> Option<String> {
    if completion.trim().is_empty() {
        return None;
    }
    let (prefix, suffix) = if prefix.len() + suffix.len() > WINDOW_THRESHOLD_BYTES {
        (tail_lines(prefix, WINDOW_LINES_EACH_SIDE), head_lines(suffix, WINDOW_LINES_EACH_SIDE))
    } else {
        (prefix, suffix)
    };
    // One parser reused across all attempts.
    let Some(mut parser) = new_parser(lang) else {
        return Some(completion.to_string());
    };
    // Errors count near the cursor only: the windows are cut from a larger
    // file, and where they start and end the grammar sees pieces of code
    // (a function cut in half) whose errors shift with any change in
    // between. An answer that opens a block (`if (x) {`) whose body and
    // closer follow would otherwise "add" an error at the window's end.
    let lo = prefix.len() - tail_lines(prefix, NEAR_LINES).len();
    let after = head_lines(suffix, NEAR_LINES).len();
    let mut buf = String::with_capacity(prefix.len() + completion.len() + suffix.len());
    let mut errors_with = |middle: &str| -> Option<usize> {
        buf.clear();
        buf.push_str(prefix);
        buf.push_str(middle);
        buf.push_str(suffix);
        let hi = prefix.len() + middle.len() + after;
        let tree = parse_str_with(&mut parser, &buf, ONE_SHOT_PARSE_BUDGET)?;
        Some(error_places(&tree).into_iter().filter(|&(b, _)| lo <= b && b < hi).count())
    };

    let Some(baseline) = errors_with("") else {
        return Some(completion.to_string());
    };
    match errors_with(completion) {
        Some(n) if n <= baseline => return Some(completion.to_string()),
        None => return Some(completion.to_string()),
        Some(_) => {}
    }
    for cut in cut_candidates(completion).into_iter().take(MAX_PARSES - 2) {
        if errors_with(cut).is_some_and(|n| n <= baseline) {
            return Some(cut.to_string());
        }
    }
    // Code the grammar does not understand (compiler extensions such as
    // AltiVec's `vector signed char`, heavy macros) already has errors
    // around the cursor, and a correct line written like its neighbours
    // adds one more: there the check is no evidence against the answer.
    if baseline >= GRAMMAR_BLIND_ERRORS {
        return Some(completion.to_string());
    }
    None
}

/// Syntax errors in the judged window from which the grammar is taken to
/// be blind to this code (see [`accept_completion`]).
const GRAMMAR_BLIND_ERRORS: usize = 3;

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn cuts_are_longest_first() {
        let c = cut_candidates("foo(a, b)\nbar(\nbaz");
        assert_eq!(c[0], "foo(a, b)\nbar(");
        assert_eq!(c[1], "foo(a, b)");
        assert!(c.contains(&"foo(a,"));
        assert!(c.contains(&"foo"));
        assert!(!c.contains(&"fo"));
    }

    #[test]
    fn windows() {
        assert_eq!(tail_lines("a\nb\nc", 1), "c");
        assert_eq!(tail_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_lines("a\nb\nc", 9), "a\nb\nc");
        assert_eq!(head_lines("a\nb\nc", 1), "a\n");
        assert_eq!(head_lines("a\nb\nc", 9), "a\nb\nc");
    }
}
