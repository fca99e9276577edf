//! From a document snapshot and a cursor to an engine request, and from the
//! engine's text back to an edit: context window, line policy, clean-up,
//! typed-ahead reuse. Pure functions; no LSP types, no model. The one
//! pipeline that runs them around the engine is [`suggest`].

mod suggest;
pub(crate) mod window;

pub(crate) use suggest::suggest;
pub use suggest::Empty;
pub use suggest::{prefetch, resolved, suggest_blocking, Outcome, SuggestRequest};

use crate::config::{Config, Multiline, PromptMode};
use crate::engine::{Request, Sampling, StopWhen, TokenCounter};
use crate::prompt::{self, Family, Piece, Prompt};
use crate::syntax::{self, CursorKind, Lang, Parsed};
use ropey::Rope;
use std::time::Duration;

/// Which optional context and clean-up stages run (all on in the server;
/// the evaluation switches them off one at a time to measure each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    /// Windows that keep whole definitions and the import header.
    pub syntax_window: bool,
    /// Definitions from other files.
    pub cross_file: bool,
    /// Reject or cut answers that add syntax errors (reparse check).
    pub syntax_check: bool,
    /// After a line's indentation, the model writes the indentation itself.
    pub model_indents: bool,
}

impl Default for Stages {
    fn default() -> Self {
        Stages { syntax_window: true, cross_file: true, syntax_check: true, model_indents: true }
    }
}

/// Another file that may hold definitions the cursor's code uses: its
/// definitions, extracted once (a server keeps them per document version
/// or file modification, so typing does not reparse other files).
#[derive(Debug, Clone)]
pub struct OtherFile {
    /// Path relative to the workspace (as the model sees it).
    pub path: String,
    pub lang: Option<Lang>,
    pub defs: std::sync::Arc<Vec<syntax::Definition>>,
}

impl OtherFile {
    /// Parses `text` for its definitions (none for a file without a
    /// grammar, or too large to parse).
    pub fn new(path: impl Into<String>, text: &str, lang: Option<Lang>) -> Self {
        OtherFile { path: path.into(), lang, defs: std::sync::Arc::new(definitions_of(text, lang)) }
    }
}

/// The definitions of a file, as cross-file context uses them.
pub(crate) fn definitions_of(text: &str, lang: Option<Lang>) -> Vec<syntax::Definition> {
    match lang {
        Some(l) if text.len() <= SYNTAX_MAX_BYTES => {
            Parsed::parse(l, text).map(|p| p.definitions(text)).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Everything the context builder reads, as plain data.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub rope: &'a Rope,
    pub cursor: usize,
    pub lang: Option<Lang>,
    pub parsed: Option<&'a Parsed>,
    /// The current file's path relative to the workspace.
    pub path: &'a str,
    pub repo_name: &'a str,
    pub others: &'a [OtherFile],
}

/// Files larger than this are windowed without syntax queries.
const SYNTAX_MAX_BYTES: usize = syntax::MAX_PARSE_BYTES;

/// Characters per token assumed when cutting windows before tokenizing.
const CHARS_PER_TOKEN: usize = 3;

#[derive(Debug, Clone)]
pub struct Plan {
    pub request: Request,
    /// Char index where the already-typed word before the cursor starts.
    pub word_start: usize,
    pub word: String,
    pub multiline: bool,
    /// Text right of the cursor on its line (for overlap trimming).
    pub rest_of_line: String,
    /// Text from the start of the cursor's line to the cursor.
    pub line_prefix: String,
    pub suffix_head: String,
    pub lang: Option<Lang>,
    pub stages: Stages,
    /// The prompt's prefix and suffix windows (for the syntax check).
    pub prefix: String,
    pub suffix: String,
    /// Definitions from other files that went into the prompt.
    pub cross_file: Vec<String>,
}

/// Whether to ask for several lines: an empty line right after a line that
/// opens a block gets a body; otherwise the rest of the line.
pub(crate) fn wants_multiline(prefix: &str, rest_of_line: &str, policy: Multiline) -> bool {
    match policy {
        Multiline::Always => true,
        Multiline::Never => false,
        Multiline::Auto => {
            if !rest_of_line.trim().is_empty() {
                return false;
            }
            // A blank line (the cursor in its indentation) is where a new
            // statement or a block's body goes: ask for lines.
            let current = prefix.rsplit('\n').next().unwrap_or("");
            current.trim().is_empty()
        }
    }
}

/// The suffix the model sees: with `lines > 0`, the rest of the cursor's
/// line and at most `lines` lines after it.
fn short_suffix(suffix: &str, lines: usize) -> &str {
    if lines == 0 {
        return suffix;
    }
    match suffix.match_indices('\n').nth(lines) {
        Some((i, _)) => &suffix[..i + 1],
        None => suffix,
    }
}

/// A stop rule for several lines: generation is over once a finished line
/// (after the first) leaves the cursor's block (dedents below the cursor's
/// indentation, a closing bracket at a lower level) or repeats the first
/// line of the code after the cursor, which the answer would only copy.
fn block_end_rule(line_prefix: &str, suffix: &str) -> Option<StopWhen> {
    let base = indent_width(line_prefix);
    let next: String = suffix.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string();
    if base == 0 && next.is_empty() {
        return None;
    }
    Some(StopWhen(std::sync::Arc::new(move |text: &str| {
        let Some(done) = text.rfind('\n') else { return false };
        text[..done].split('\n').skip(1).any(|l| {
            let t = l.trim();
            !t.is_empty() && ((base > 0 && indent_width(l) < base) || (!next.is_empty() && t == next))
        })
    })))
}

/// Columns of leading whitespace (a tab counts as one, as in the text).
fn indent_width(l: &str) -> usize {
    l.len() - l.trim_start_matches([' ', '\t']).len()
}

/// Builds the request for a completion at the cursor, or None where wick
/// should stay quiet (inside a comment or string, unless configured).
///
/// With `tokens` (the model's own count), the windows are sized so that the
/// prompt's text comes to `contextTokens` tokens; without it, at
/// [`CHARS_PER_TOKEN`].
pub fn plan(
    inp: &Input,
    cfg: &Config,
    family: Option<Family>,
    tokens: Option<&TokenCounter>,
    stages: Stages,
) -> Option<Plan> {
    plan_window(inp, cfg, family, tokens, stages, window::Start::Fitting)
}

/// [`plan`], with the prefix window starting where `start` says: where it
/// fits now, or where it will move next (prefetched ahead of typing).
pub(crate) fn plan_window(
    inp: &Input,
    cfg: &Config,
    family: Option<Family>,
    tokens: Option<&TokenCounter>,
    stages: Stages,
    start: window::Start,
) -> Option<Plan> {
    let rope = inp.rope;
    let cursor = inp.cursor.min(rope.len_chars());
    let budget_chars = cfg.context_tokens * CHARS_PER_TOKEN;
    // Syntax queries need the text; very large files are windowed blind.
    let use_syntax = inp.lang.is_some() && rope.len_bytes() <= SYNTAX_MAX_BYTES;
    let text = if use_syntax { Some(rope.to_string()) } else { None };
    let cur_b = rope.char_to_byte(cursor);
    let parsed_owned;
    let parsed = match (inp.parsed, &text, inp.lang) {
        (Some(p), _, _) => Some(p),
        (None, Some(t), Some(l)) => {
            parsed_owned = Parsed::parse(l, t);
            parsed_owned.as_ref()
        }
        _ => None,
    };
    let cctx = match (parsed, &text) {
        (Some(p), Some(t)) => Some(p.cursor_context(t, cur_b)),
        _ => None,
    };
    if let Some(c) = &cctx {
        if c.kind != CursorKind::Code && !cfg.in_comments {
            return None;
        }
    }

    // Reserve a quarter of the budget for other files' definitions.
    let mut cross_file = Vec::new();
    let mut context_prompt = Prompt::default();
    let mut own_budget = budget_chars;
    if stages.cross_file && !inp.others.is_empty() {
        if let (Some(p), Some(t)) = (parsed, &text) {
            let (pieces, names, used) = cross_file_context(p, t, cur_b, inp, family, budget_chars / 4);
            context_prompt = pieces;
            cross_file = names;
            own_budget = budget_chars.saturating_sub(used);
        }
    }
    // Plain continuation sends no suffix: the prefix gets the whole budget
    // (the suffix window still ends the answer).
    let fim = family.is_some() && cfg.prompt != PromptMode::Prefix;
    let defs = match (stages.syntax_window, parsed, &text) {
        (true, Some(p), Some(t)) => Some(p.definitions(t)),
        _ => None,
    };
    let src = window::Source { rope, cursor, syntax: text.as_deref().zip(defs.as_deref()) };
    // What the model is sent of the windows: the suffix only with FIM.
    let suffix_lines = fim.then_some(cfg.suffix_lines);
    let (prefix, suffix) = window::cut(&src, own_budget / CHARS_PER_TOKEN, suffix_lines, tokens, start);
    let rest_of_line = suffix.split('\n').next().unwrap_or("").trim_end_matches('\r').to_string();
    let multiline = match (cfg.multiline, &cctx) {
        (Multiline::Auto, Some(c)) => {
            let blank = prefix.rsplit('\n').next().unwrap_or("").trim().is_empty() && rest_of_line.trim().is_empty();
            (c.block_just_opened || blank) && !c.mid_expression
        }
        _ => wants_multiline(&prefix, &rest_of_line, cfg.multiline),
    };
    let word: String = {
        let rev: Vec<char> = prefix.chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        rev.into_iter().rev().collect()
    };
    let word_start = cursor - word.chars().count();
    // After the indentation of a line, the prompt stops at the line's start
    // and the model writes the indentation: the indentation alone is an
    // unusual token boundary, after which small models tend to write more
    // whitespace (or nothing). Cleaning removes what repeats it.
    let line_start = prefix.len() - prefix.rsplit('\n').next().unwrap_or("").len();
    let indent_only = line_start < prefix.len() && prefix[line_start..].trim().is_empty();
    let shown = if stages.model_indents && indent_only { &prefix[..line_start] } else { &prefix[..] };
    let mut p = match family {
        Some(f) if fim => f.fim(shown, short_suffix(&suffix, cfg.suffix_lines), cfg.fim_order),
        _ => prompt::prefix_only(shown),
    };
    if !context_prompt.pieces.is_empty() {
        p.prepend(context_prompt);
    }
    let mut request = Request::new(p);
    request.max_tokens = if multiline { cfg.max_tokens } else { cfg.max_tokens.min(48) };
    request.sampling = Sampling { temperature: cfg.temperature, ..Sampling::default() };
    request.budget = Some(Duration::from_millis(cfg.timeout_ms));
    let line_prefix = prefix.rsplit('\n').next().unwrap_or("").to_string();
    if multiline {
        request.stop.push("\n\n\n".into());
        request.until = block_end_rule(&line_prefix, &suffix);
    } else if line_prefix.trim().is_empty() {
        // After the indentation the model may first end the blank line: the
        // answer is over when a line with code in it ends.
        request.until = Some(StopWhen(std::sync::Arc::new(|text: &str| text.trim_start().contains('\n'))));
    } else {
        request.stop.push("\n".into());
    }
    let suffix_head: String = suffix.chars().take(256).collect();
    Some(Plan {
        request,
        word_start,
        word,
        multiline,
        rest_of_line,
        line_prefix,
        suffix_head,
        lang: inp.lang,
        stages,
        prefix,
        suffix,
        cross_file,
    })
}

/// Definitions from other files of names used near the cursor, laid out in
/// the family's repository format (or as comments), in a stable order
/// (by path, then by position) so the KV-cache prefix survives typing.
fn cross_file_context(
    p: &Parsed,
    text: &str,
    cur: usize,
    inp: &Input,
    family: Option<Family>,
    budget_chars: usize,
) -> (Prompt, Vec<String>, usize) {
    // Names from above the cursor's line: typing the current word does not
    // change the context, so the cache stays reusable.
    let line_start = text[..cur].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let names = p.identifiers_near(text, line_start, 3000);
    let local: std::collections::HashSet<String> = p.definitions(text).into_iter().map(|d| d.name).collect();
    let wanted: std::collections::HashSet<&str> =
        names.iter().map(String::as_str).filter(|n| !local.contains(*n) && n.len() > 1).collect();
    let mut files: Vec<&OtherFile> = inp.others.iter().filter(|f| f.path != inp.path).collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut blocks: Vec<(String, String)> = Vec::new();
    let mut used = 0;
    let mut taken = Vec::new();
    for f in files {
        let mut sigs = Vec::new();
        for d in f.defs.iter() {
            if wanted.contains(d.name.as_str()) && used + d.signature.len() + f.path.len() + 8 <= budget_chars {
                used += d.signature.len() + 1;
                taken.push(format!("{}:{}", f.path, d.name));
                sigs.push(d.signature.clone());
            }
        }
        if !sigs.is_empty() {
            used += f.path.len() + 8;
            blocks.push((f.path.clone(), sigs.join("\n")));
        }
    }
    let mut out = Prompt::default();
    if blocks.is_empty() {
        return (out, taken, 0);
    }
    match family.map(|f| f.tokens()) {
        Some(t) if t.file_sep.is_some() => {
            let sep = t.file_sep.unwrap_or_default();
            if let Some(repo) = t.repo_name {
                out.special(repo)
                    .text(format!("{}\n", if inp.repo_name.is_empty() { "workspace" } else { inp.repo_name }));
            }
            for (path, body) in &blocks {
                out.special(sep).text(format!("{path}\n{body}\n"));
            }
            out.special(sep).text(format!("{}\n", if inp.path.is_empty() { "current" } else { inp.path }));
        }
        _ => {
            let c = inp.lang.map_or("//", |l| l.rules().line_comment);
            let mut s = String::new();
            for (path, body) in &blocks {
                s.push_str(&format!("{c} {path}\n"));
                for l in body.lines() {
                    s.push_str(&format!("{c} {l}\n"));
                }
            }
            out.pieces.push(Piece::Text(s));
        }
    }
    (out, taken, used)
}

/// Cleans the model's text: cut to one line when asked, drop what repeats
/// the text right of the cursor, drop trailing lines that repeat the suffix,
/// trim trailing whitespace. `truncated`: generation was cut short (token
/// count, time budget), so its last line may be unfinished. Empty answers
/// say why.
pub fn clean(text: &str, plan: &Plan, truncated: bool) -> Result<String, Empty> {
    let mut t = text.replace("\r\n", "\n");
    if t.trim().is_empty() {
        return Err(Empty::ModelEmpty);
    }
    if plan.line_prefix.trim().is_empty() {
        // On a blank line the model may first finish that line and start the
        // next one: keep what goes on the cursor's line, at its indentation.
        while let Some(nl) = t.find('\n') {
            if !t[..nl].trim().is_empty() {
                break;
            }
            t.drain(..nl + 1);
        }
        // The cursor is after the indentation: an answer that repeats it
        // would indent the line twice.
        if !plan.line_prefix.is_empty() {
            let first_indent = t.len() - t.trim_start_matches([' ', '\t']).len();
            t.drain(..first_indent);
        }
    }
    if plan.multiline && truncated {
        // The last line may stop mid-token: keep the finished ones.
        if let Some(i) = t.trim_end().rfind('\n') {
            t.truncate(i);
        }
    }
    if !plan.multiline {
        if let Some(i) = t.find('\n') {
            t.truncate(i);
        }
    }
    // Overlap with the rest of the line: "foo(|)" completed as "x)" -> "x".
    let rest = plan.rest_of_line.trim();
    if !rest.is_empty() {
        let first_line_end = t.find('\n').unwrap_or(t.len());
        let first = t[..first_line_end].trim_end();
        if let Some(stripped) = first.strip_suffix(rest) {
            let keep = stripped.len();
            t = format!("{}{}", &t[..keep], &t[first_line_end..]);
        }
    }
    if plan.multiline {
        // The block closes where a line dedents below the cursor's line.
        let base = indent_width(&plan.line_prefix);
        if base > 0 {
            let mut keep = Vec::new();
            for (i, l) in t.split('\n').enumerate() {
                if i > 0 && !l.trim().is_empty() && indent_width(l) < base {
                    break;
                }
                keep.push(l);
            }
            t = keep.join("\n");
        }
        // Drop trailing lines that repeat the start of the suffix.
        let first_suffix = plan.suffix_head.lines().map(str::trim).find(|l| !l.is_empty());
        if let Some(first_suffix) = first_suffix {
            let lines: Vec<&str> = t.split('\n').collect();
            if let Some(i) = lines.iter().position(|l| l.trim() == first_suffix) {
                if i > 0 {
                    t = lines[..i].join("\n");
                }
            }
        }
    }
    let mut t = t.trim_end().to_string();
    if t.is_empty() {
        return Err(Empty::Overlap);
    }
    if !plan.multiline {
        // Closers the completion may use: brackets opened earlier on the line
        // and not closed by the text after the cursor.
        let open_before = unclosed(&plan.line_prefix);
        let closed_after = plan.rest_of_line.trim_start().chars().take_while(|c| matches!(c, ')' | ']' | '}')).count();
        t = cut_unmatched_closer(&t, open_before.saturating_sub(closed_after));
        if t.is_empty() {
            return Err(Empty::Closer);
        }
    }
    if plan.stages.syntax_check {
        if let Some(lang) = plan.lang {
            // Reject what adds syntax errors, or keep its longest part that adds none.
            t = syntax::accept_completion(lang, &plan.prefix, &t, &plan.suffix).ok_or(Empty::Syntax)?;
        }
    }
    Ok(t)
}

/// [`clean`], with an empty string for an empty answer (tests, typed-ahead).
pub(crate) fn postprocess(text: &str, plan: &Plan) -> String {
    clean(text, plan, false).unwrap_or_default()
}

/// Brackets opened and not closed in `s` (quotes skipped roughly).
fn unclosed(s: &str) -> usize {
    let mut depth: isize = 0;
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = (depth - 1).max(0),
            _ => {}
        }
    }
    depth as usize
}

/// Cuts a one-line completion before the first closing bracket beyond the
/// `allowed` ones that close brackets opened before the cursor: such a
/// bracket belongs to the text after the cursor.
fn cut_unmatched_closer(t: &str, mut allowed: usize) -> String {
    let mut stack = Vec::new();
    let mut quote: Option<char> = None;
    for (i, c) in t.char_indices() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '(' | '[' | '{' => stack.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.last() == Some(&open) {
                    stack.pop();
                } else if stack.is_empty() && allowed > 0 {
                    allowed -= 1;
                } else {
                    return t[..i].trim_end().to_string();
                }
            }
            _ => {}
        }
    }
    t.to_string()
}

/// The last suggestions for a document (the one shown first, then the
/// others the editor could cycle to), to answer typed-ahead keystrokes
/// without the model.
#[derive(Debug, Clone)]
pub struct LastSuggestion {
    pub prefix_tail: String,
    pub suffix_head: String,
    pub texts: Vec<String>,
}

const TAIL: usize = 256;

pub(crate) fn tail(rope: &Rope, cursor: usize) -> String {
    let start = cursor.saturating_sub(TAIL + 128);
    rope.slice(start..cursor.min(rope.len_chars())).to_string()
}

impl LastSuggestion {
    pub fn new(rope: &Rope, cursor: usize, suffix_head: String, text: String) -> Self {
        Self::of(rope, cursor, suffix_head, vec![text])
    }

    /// Several suggestions at one cursor, the first one shown first.
    pub fn of(rope: &Rope, cursor: usize, suffix_head: String, texts: Vec<String>) -> Self {
        let t = tail(rope, cursor);
        let skip = t.chars().count().saturating_sub(TAIL);
        LastSuggestion { prefix_tail: t.chars().skip(skip).collect(), suffix_head, texts }
    }

    /// If the user has typed the start of one of the suggestions since (the
    /// first one that fits), the rest of it.
    pub(crate) fn remainder(&self, current_tail: &str, current_suffix_head: &str) -> Option<String> {
        if current_suffix_head != self.suffix_head {
            return None;
        }
        self.texts.iter().find_map(|text| {
            for (i, c) in text.char_indices() {
                let typed = &text[..i + c.len_utf8()];
                if current_tail.ends_with(&format!("{}{}", self.prefix_tail, typed)) {
                    let rest = &text[typed.len()..];
                    return if rest.trim().is_empty() { None } else { Some(rest.to_string()) };
                }
            }
            None
        })
    }
}

#[cfg(test)]
mod tests {
    use super::suggest::rank;
    use super::*;
    use crate::syntax::Lang;

    /// The plan for text without a language: no syntax, no other files.
    fn blind(rope: &Rope, cursor: usize, cfg: &Config, family: Option<Family>) -> Plan {
        let input = Input { rope, cursor, lang: None, parsed: None, path: "", repo_name: "", others: &[] };
        let stages = Stages { syntax_window: false, cross_file: false, ..Stages::default() };
        plan(&input, cfg, family, None, stages).expect("without syntax there is no reason to skip")
    }

    /// `$0` marks the cursor.
    fn at(fixture: &str) -> (Rope, usize) {
        let i = fixture.find("$0").unwrap();
        let text = fixture.replace("$0", "");
        let rope = Rope::from_str(&text);
        let cursor = rope.byte_to_char(i);
        (rope, cursor)
    }

    #[test]
    fn line_policy_from_the_text_at_the_cursor() {
        let cfg = Config::default();
        let (r, c) = at("def f(x):\n    $0\n");
        assert!(blind(&r, c, &cfg, Some(Family::QwenCoder)).multiline);
        let (r, c) = at("x = foo($0)\n");
        let p = blind(&r, c, &cfg, Some(Family::QwenCoder));
        assert!(!p.multiline);
        assert_eq!(p.rest_of_line, ")");
        let (r, c) = at("let value = compu$0\n");
        let p = blind(&r, c, &cfg, None);
        assert_eq!(p.word, "compu");
        assert_eq!(p.word_start, c - 5);
    }

    #[test]
    fn postprocess_trims_overlap_and_lines() {
        let cfg = Config::default();
        let (r, c) = at("x = foo($0)\n");
        let p = blind(&r, c, &cfg, None);
        assert_eq!(postprocess("a, b)\nmore", &p), "a, b");
        let (r, c) = at("def f(x):\n    $0\n\ndef g():\n    pass\n");
        let p = blind(&r, c, &cfg, None);
        assert_eq!(postprocess("return x\n\ndef g():\n", &p), "return x");
        // A leading line break on a blank line is dropped with the re-indent.
        assert_eq!(postprocess("\n    return x\n", &p), "return x");
        // The block ends where the text dedents.
        assert_eq!(postprocess("y = x\n    return y\n\nprint(f(2))", &p), "y = x\n    return y");
    }

    #[test]
    fn closing_brackets_close_what_is_open() {
        let cfg = Config::default();
        // The model closes the call opened before the cursor: kept.
        let (r, c) = at("x = foo(a, $0\n");
        assert_eq!(postprocess("b)", &blind(&r, c, &cfg, None)), "b)");
        // The text after the cursor already closes it: cut.
        let (r, c) = at("x = foo(a, $0)\n");
        assert_eq!(postprocess("b) + 1", &blind(&r, c, &cfg, None)), "b");
    }

    #[test]
    fn snapshot_syntax_window_keeps_imports_and_whole_functions() {
        // A budget that holds the cursor's function and a little more: the
        // window drops the half of `first` it would cut, keeps the imports.
        let src = "import os\nimport sys\n\ndef first(a):\n    x = a + 1\n    y = x * 2\n    z = y - 3\n    return z\n\ndef second(b):\n    return b$0\n\ndef third(c):\n    return c\n";
        let (rope, cursor) = at(src);
        let cfg = Config { context_tokens: 40, ..Default::default() };
        let input = Input {
            rope: &rope,
            cursor,
            lang: Some(Lang::Python),
            parsed: None,
            path: "m.py",
            repo_name: "",
            others: &[],
        };
        let p = plan(&input, &cfg, Some(Family::QwenCoder), None, Stages::default()).unwrap();
        expect_test::expect![[r#"
            [<|fim_prefix|>]import os
            import sys

            def second(b):
                return b$0[<|fim_suffix|>]

            def third(c):
                return c
            [<|fim_middle|>]"#]]
        .assert_eq(&p.request.prompt.shown());
        // Without the syntax-aware window: a plain line-aligned cut.
        let p = plan(&input, &cfg, Some(Family::QwenCoder), None, Stages { syntax_window: false, ..Stages::default() })
            .unwrap();
        expect_test::expect![[r#"
            [<|fim_prefix|>]    x = a + 1
                y = x * 2
                z = y - 3
                return z

            def second(b):
                return b$0[<|fim_suffix|>]

            def third(c):
                return c
            [<|fim_middle|>]"#]]
        .assert_eq(&p.request.prompt.shown());
    }

    /// The prompt for `fixture` with these settings, rendered.
    fn prompt_for(fixture: &str, settings: serde_json::Value) -> String {
        let (rope, cursor) = at(fixture);
        let mut cfg = Config::default();
        assert!(cfg.update(&settings).is_empty());
        let input = Input {
            rope: &rope,
            cursor,
            lang: Some(Lang::Python),
            parsed: None,
            path: "m.py",
            repo_name: "",
            others: &[],
        };
        plan(&input, &cfg, Some(Family::QwenCoder), None, Stages::default()).unwrap().request.prompt.shown()
    }

    const TWO_FUNCTIONS: &str =
        "import os\n\ndef first(a):\n    x = a + 1\n    return $0\n\ndef second(b):\n    y = b * 2\n    return y\n";

    #[test]
    fn snapshot_prompt_variants() {
        use expect_test::expect;
        expect![[r#"
            [<|fim_prefix|>]import os

            def first(a):
                x = a + 1
                return $0[<|fim_suffix|>]

            def second(b):
                y = b * 2
                return y
            [<|fim_middle|>]"#]]
        .assert_eq(&prompt_for(TWO_FUNCTIONS, serde_json::json!({"prompt": "fim"})));
        expect![[r#"
            [<|fim_suffix|>]

            def second(b):
                y = b * 2
                return y
            [<|fim_prefix|>]import os

            def first(a):
                x = a + 1
                return $0[<|fim_middle|>]"#]]
        .assert_eq(&prompt_for(TWO_FUNCTIONS, serde_json::json!({"prompt": "fim", "fimOrder": "spm"})));
        // A short suffix: the rest of the line and two lines after it.
        expect![[r#"
            [<|fim_prefix|>]import os

            def first(a):
                x = a + 1
                return $0[<|fim_suffix|>]

            def second(b):
            [<|fim_middle|>]"#]]
        .assert_eq(&prompt_for(TWO_FUNCTIONS, serde_json::json!({"prompt": "fim", "suffixLines": 2})));
        // Plain continuation: the prefix only, ending at the cursor.
        expect![[r#"
            import os

            def first(a):
                x = a + 1
                return $0"#]]
        .assert_eq(&prompt_for(TWO_FUNCTIONS, serde_json::json!({"prompt": "prefix"})));
        // After the indentation the prompt stops at the line's start.
        expect![[r#"
            def first(a):
                x = a + 1
            $0"#]]
        .assert_eq(&prompt_for("def first(a):\n    x = a + 1\n    $0\n", serde_json::json!({"prompt": "prefix"})));
    }

    #[test]
    fn answers_that_repeat_the_indentation_or_end_the_blank_line_first_are_cleaned() {
        let cfg = Config { multiline: Multiline::Never, ..Config::default() };
        let (r, c) = at("def f(x):\n    y = x\n    $0\n    return y\n");
        let p = blind(&r, c, &cfg, None);
        assert_eq!(clean("    y += 1", &p, false), Ok("y += 1".into()));
        assert_eq!(clean("\n    y += 1", &p, false), Ok("y += 1".into()));
        assert_eq!(clean("  \n", &p, false), Err(Empty::ModelEmpty));
        // At column 0 the indentation is the model's to choose.
        let (r, c) = at("def f(x):\n$0\n");
        assert_eq!(clean("    return x", &blind(&r, c, &cfg, None), false), Ok("    return x".into()));
    }

    #[test]
    fn a_truncated_multi_line_answer_keeps_its_finished_lines() {
        let (r, c) = at("def f(x):\n    $0\n");
        let p = blind(&r, c, &Config::default(), None);
        assert!(p.multiline);
        assert_eq!(clean("y = x + 1\n    z = y *", &p, true), Ok("y = x + 1".into()));
        assert_eq!(clean("y = x + 1\n    z = y *", &p, false), Ok("y = x + 1\n    z = y *".into()));
        // One unfinished line is still the answer (the syntax check judges it).
        assert_eq!(clean("y = x + 1", &p, true), Ok("y = x + 1".into()));
    }

    #[test]
    fn multi_line_generation_stops_where_the_block_ends_or_the_suffix_begins() {
        let (r, c) = at("def f(x):\n    $0\n    return y\n");
        let p = blind(&r, c, &Config::default(), None);
        let until = p.request.until.clone().expect("a stop rule for several lines");
        assert!(!(until.0)("y = x\n    z = y\n"));
        assert!((until.0)("y = x\n    return y\n"), "repeats the next line");
        assert!((until.0)("y = x\n\ndef g():\n"), "dedents below the block");
        // A line not yet finished is not judged.
        assert!(!(until.0)("y = x\ndef"));
    }

    #[test]
    fn single_line_at_the_indentation_waits_for_a_line_with_code() {
        let cfg = Config { multiline: Multiline::Never, ..Config::default() };
        let (r, c) = at("def f(x):\n    $0\n");
        let p = blind(&r, c, &cfg, None);
        assert!(p.request.stop.is_empty());
        let until = p.request.until.clone().unwrap();
        assert!(!(until.0)("\n    "));
        assert!((until.0)("\n    return x\n"));
        // Mid-line the line's end is the stop.
        let (r, c) = at("x = foo($0)\n");
        assert_eq!(blind(&r, c, &cfg, None).request.stop, vec!["\n".to_string()]);
    }

    #[test]
    fn no_completion_inside_comments_or_strings_unless_asked() {
        let (rope, cursor) = at("x = 1  # a comment $0here\n");
        let input = Input {
            rope: &rope,
            cursor,
            lang: Some(Lang::Python),
            parsed: None,
            path: "m.py",
            repo_name: "",
            others: &[],
        };
        assert!(plan(&input, &Config::default(), None, None, Stages::default()).is_none());
        let cfg = Config { in_comments: true, ..Config::default() };
        assert!(plan(&input, &cfg, None, None, Stages::default()).is_some());
    }

    #[test]
    fn context_building_is_bounded_on_hostile_files() {
        let cfg = Config::default();
        let budget = cfg.context_tokens * CHARS_PER_TOKEN + 64;
        let big: String = (0..250_000).map(|i| format!("def f{i}(x):\n    return x\n")).collect();
        let long_line = "x = 1 + ".repeat(150_000);
        let binary = String::from_utf8_lossy(
            &(0..200_000u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<u8>>(),
        )
        .into_owned();
        let errors = "(((\n".repeat(5000);
        for (name, text) in [("10 MB", big), ("long line", long_line), ("binary", binary), ("errors", errors)] {
            let rope = Rope::from_str(&text);
            let cursor = rope.len_chars() / 2;
            let input = Input {
                rope: &rope,
                cursor,
                lang: Some(Lang::Python),
                parsed: None,
                path: "x.py",
                repo_name: "",
                others: &[],
            };
            let p = plan(&input, &cfg, Some(Family::QwenCoder), None, Stages::default());
            if let Some(p) = p {
                assert!(p.prefix.len() + p.suffix.len() <= budget * 4, "{name}: window too big");
                assert!(!p.request.prompt.pieces.is_empty(), "{name}");
                // Cleaning is bounded too, and an empty answer says why.
                let answer = "x = (1 +\n".repeat(50);
                let r = clean(&answer, &p, true);
                assert!(r.as_ref().map_or(true, |s| !s.is_empty()), "{name}: {r:?}");
            }
        }
    }

    /// The plan's windows with a counter of `chars_per_token` characters
    /// per token, and the tokens they come to.
    fn counted_plan(text: &str, chars_per_token: usize, cfg: &Config) -> (Plan, usize) {
        let rope = Rope::from_str(text);
        let cursor = rope.len_chars() / 2;
        let input = Input {
            rope: &rope,
            cursor,
            lang: Some(Lang::Python),
            parsed: None,
            path: "m.py",
            repo_name: "",
            others: &[],
        };
        let counter = TokenCounter::new(move |t: &str| Some(t.len().div_ceil(chars_per_token)));
        let p = plan(&input, cfg, Some(Family::QwenCoder), Some(&counter), Stages::default()).unwrap();
        let sent =
            counter.count(&p.prefix).unwrap() + counter.count(short_suffix(&p.suffix, cfg.suffix_lines)).unwrap();
        (p, sent)
    }

    #[test]
    fn windows_are_sized_in_the_models_own_tokens() {
        let text: String = (0..4000).map(|i| format!("def f{i}(x):\n    return x + {i}\n")).collect();
        let cfg = Config { prompt: PromptMode::Fim, ..Config::default() };
        let target = cfg.context_tokens;
        // Dense text (6 characters per token, twice the estimate): the
        // window grows until it holds about the budget (less at most a grid
        // step of lines: the prefix starts on one).
        let (p, sent) = counted_plan(&text, 6, &cfg);
        assert!(sent <= target && sent * 10 >= target * 9, "{sent} tokens for a budget of {target}");
        assert!(p.prefix.len() + p.suffix.len() > target * CHARS_PER_TOKEN);
        // Sparse text (one character per token): it shrinks to fit.
        let (_, sent) = counted_plan(&text, 1, &cfg);
        assert!(sent <= target && sent * 100 >= target * 85, "{sent} tokens for a budget of {target}");
        // A file smaller than the budget is sent whole.
        let small = "def f(x):\n    return x\n".repeat(10);
        let (p, _) = counted_plan(&small, 6, &cfg);
        assert_eq!(p.prefix.len() + p.suffix.len(), small.len());
        // The next plan starts from the measured ratio: a few counts suffice
        // (the suffix, the prefix's grid line and the one before it).
        let rope = Rope::from_str(&text);
        let input = Input {
            rope: &rope,
            cursor: 40_000,
            lang: Some(Lang::Python),
            parsed: None,
            path: "m.py",
            repo_name: "",
            others: &[],
        };
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = calls.clone();
        let counter = TokenCounter::new(move |t: &str| {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(t.len().div_ceil(6))
        });
        plan(&input, &cfg, Some(Family::QwenCoder), Some(&counter), Stages::default()).unwrap();
        let first = calls.swap(0, std::sync::atomic::Ordering::Relaxed);
        let input = Input { cursor: 40_100, ..input };
        plan(&input, &cfg, Some(Family::QwenCoder), Some(&counter), Stages::default()).unwrap();
        assert!(first > 2 && calls.load(std::sync::atomic::Ordering::Relaxed) <= 4, "{first} then {calls:?}");
        // Plain continuation: only the prefix is sent, and it gets the budget.
        let cfg = Config { prompt: PromptMode::Prefix, ..Config::default() };
        let (p, _) = counted_plan(&text, 6, &cfg);
        let sent = p.prefix.len().div_ceil(6);
        assert!(sent <= target && sent * 10 >= target * 9, "{sent} tokens for a budget of {target}");
    }

    #[test]
    fn typed_ahead_returns_the_rest() {
        let (r, c) = at("print($0)\n");
        let s = LastSuggestion::new(&r, c, ")\n".into(), "total + 1".into());
        let (r2, c2) = at("print(tot$0)\n");
        assert_eq!(s.remainder(&tail(&r2, c2), ")\n").as_deref(), Some("al + 1"));
        let (r3, c3) = at("print(tx$0)\n");
        assert_eq!(s.remainder(&tail(&r3, c3), ")\n"), None);
    }

    #[test]
    fn typed_ahead_continues_whichever_suggestion_was_typed() {
        let (r, c) = at("print($0)\n");
        let texts = vec!["total + 1".to_string(), "count".to_string(), "totals[0]".to_string()];
        let s = LastSuggestion::of(&r, c, ")\n".into(), texts);
        // The first one that fits: "tot" fits the first and the third.
        let (r2, c2) = at("print(tot$0)\n");
        assert_eq!(s.remainder(&tail(&r2, c2), ")\n").as_deref(), Some("al + 1"));
        let (r3, c3) = at("print(totals$0)\n");
        assert_eq!(s.remainder(&tail(&r3, c3), ")\n").as_deref(), Some("[0]"));
        let (r4, c4) = at("print(co$0)\n");
        assert_eq!(s.remainder(&tail(&r4, c4), ")\n").as_deref(), Some("unt"));
        assert_eq!(s.remainder(&tail(&r4, c4), "]\n"), None, "another suffix");
    }

    #[test]
    fn suggestions_are_ranked_distinct_and_bounded() {
        let ok = |s: &str| Ok::<String, Empty>(s.to_string());
        // The main answer first, then the alternatives in the engine's order,
        // duplicates (after clean-up) and empty ones dropped, at most n.
        let (main, rest) = rank(ok("a + b"), [ok("a + b"), Err(Empty::Syntax), ok("a - b"), ok("  "), ok("b")], 3);
        assert_eq!(main, ok("a + b"));
        assert_eq!(rest, vec!["a - b", "b"]);
        let (_, rest) = rank(ok("x"), [ok("y"), ok("z"), ok("w")], 2);
        assert_eq!(rest, vec!["y"]);
        // One suggestion: no alternatives whatever the engine gave.
        let (_, rest) = rank(ok("x"), [ok("y")], 1);
        assert!(rest.is_empty());
        // An empty main answer gives way to the first usable alternative.
        let (main, rest) = rank(Err(Empty::Syntax), [Err(Empty::Closer), ok("c"), ok("d")], 3);
        assert_eq!(main, ok("c"));
        assert_eq!(rest, vec!["d"]);
        let (main, rest) = rank(Err(Empty::Syntax), [ok("c"), ok("d")], 1);
        assert_eq!((main, rest), (ok("c"), vec![]));
        // Nothing usable: the main answer's reason stays.
        let (main, rest) = rank(Err(Empty::Overlap), [Err(Empty::Syntax)], 3);
        assert_eq!((main, rest), (Err(Empty::Overlap), vec![]));
    }

    /// What the user sees for what the model wrote: the clean-up, case by
    /// case (the document with `$0` at the cursor, the model's text, and
    /// whether generation was cut short), with the syntax check on.
    #[test]
    fn snapshot_clean_up() {
        let cases: &[(&str, &str, &str, bool)] = &[
            ("python", "x = foo($0)\n", "a, b)\nmore", false),
            ("python", "def f(x):\n    $0\n\ndef g():\n    pass\n", "return x\n\ndef g():\n", false),
            ("python", "def f(x):\n    $0\n", "\n    return x + 1\n", false),
            ("python", "def f(x):\n    $0\n    return y\n", "y = x * 2\n    return y\n", false),
            ("python", "def f(x):\n    y = x\n    $0\n", "    y += 1\n    return y", false),
            ("python", "def f(x):\n    $0\n", "y = x + 1\n    z = y *", true),
            ("python", "print(len(xs$0))\n", ")) + 1", false),
            ("python", "x = foo($0)\n", ")", false),
            ("python", "x = $0\n", "   \n", false),
            ("python", "def f(x):\n    return x$0\n", " + (", false),
            ("python", "def f(x):\n    return $0 + 1\n", "x + 1", false),
            ("python", "# a note $0\n", "about it", false),
            ("rust", "fn f(v: &[u8]) -> usize {\n    v.$0\n}\n", "len()\n}", false),
            ("rust", "fn f() {\n    let x = vec![1, 2$0];\n}\n", ", 3];", false),
            ("go", "func f(xs []int) int {\n\treturn len($0)\n}\n", "xs)", false),
            ("javascript", "const a = [1, 2, 3].map((x) => $0);\n", "x * 2);", false),
            ("c", "int f(int x) {\n    $0\n}\n", "return x + 1;\n}\n", false),
        ];
        let mut out = String::new();
        for (lang, doc, raw, cut) in cases {
            let (r, c) = at(doc);
            let input = Input {
                rope: &r,
                cursor: c,
                lang: Lang::from_language_id(lang),
                parsed: None,
                path: "",
                repo_name: "",
                others: &[],
            };
            let shown = match plan(&input, &Config::default(), None, None, Stages::default()) {
                None => "quiet (comment or string)".to_string(),
                Some(p) => match clean(raw, &p, *cut) {
                    Ok(t) => format!("{t:?}"),
                    Err(e) => format!("empty: {}", e.name()),
                },
            };
            let cut = if *cut { " (cut short)" } else { "" };
            out.push_str(&format!("{lang} {doc:?} + {raw:?}{cut}\n    -> {shown}\n"));
        }
        expect_test::expect![[r##"
            python "x = foo($0)\n" + "a, b)\nmore"
                -> "a, b"
            python "def f(x):\n    $0\n\ndef g():\n    pass\n" + "return x\n\ndef g():\n"
                -> "return x"
            python "def f(x):\n    $0\n" + "\n    return x + 1\n"
                -> "return x + 1"
            python "def f(x):\n    $0\n    return y\n" + "y = x * 2\n    return y\n"
                -> "y = x * 2"
            python "def f(x):\n    y = x\n    $0\n" + "    y += 1\n    return y"
                -> "y += 1\n    return y"
            python "def f(x):\n    $0\n" + "y = x + 1\n    z = y *" (cut short)
                -> "y = x + 1"
            python "print(len(xs$0))\n" + ")) + 1"
                -> empty: only-a-closer
            python "x = foo($0)\n" + ")"
                -> empty: only-repeats-the-line
            python "x = $0\n" + "   \n"
                -> empty: model-wrote-nothing
            python "def f(x):\n    return x$0\n" + " + ("
                -> empty: adds-syntax-errors
            python "def f(x):\n    return $0 + 1\n" + "x + 1"
                -> "x"
            python "# a note $0\n" + "about it"
                -> quiet (comment or string)
            rust "fn f(v: &[u8]) -> usize {\n    v.$0\n}\n" + "len()\n}"
                -> "len()"
            rust "fn f() {\n    let x = vec![1, 2$0];\n}\n" + ", 3];"
                -> ", 3"
            go "func f(xs []int) int {\n\treturn len($0)\n}\n" + "xs)"
                -> "xs"
            javascript "const a = [1, 2, 3].map((x) => $0);\n" + "x * 2);"
                -> "x * 2"
            c "int f(int x) {\n    $0\n}\n" + "return x + 1;\n}\n"
                -> "return x + 1;"
        "##]]
        .assert_eq(&out);
    }
}
