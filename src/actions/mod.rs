//! Code actions that rewrite code with the model: fixes for diagnostics
//! (ours from tree-sitter, or any other server's that the client passes on)
//! and "complete this function" for empty or placeholder bodies.
//!
//! Everything here but [`run`] is pure: planning the region, building the
//! prompt, reading the answer, verifying it by reparsing, and cutting the
//! result down to the lines that changed. No LSP types.

pub mod run;

use crate::prompt::chat::chat;
use crate::prompt::{Family, FimOrder, Prompt};
use crate::syntax::{self, Lang, Parsed};

/// Largest region a fix may rewrite, in bytes (about 600 tokens); a larger
/// one gets a clear "too large" answer instead of a prompt that would not fit.
pub(crate) const MAX_REGION_BYTES: usize = 2400;
/// Lines of context shown around the region.
const CONTEXT_LINES_BEFORE: usize = 30;
const CONTEXT_LINES_AFTER: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixMode {
    /// The instruct model's chat template: the region, its context and the
    /// error message; the answer is the corrected region.
    Chat,
    /// Fill-in-the-middle regeneration of the region from its surroundings.
    Fim,
}

impl FixMode {
    pub fn parse(s: &str) -> Option<FixMode> {
        match s {
            "chat" => Some(FixMode::Chat),
            "fim" => Some(FixMode::Fim),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FixError {
    #[error("the diagnostic's range is outside the document")]
    OutOfRange,
    #[error("the code to rewrite is larger than the model's context budget ({0} bytes)")]
    TooLarge(usize),
    #[error("the document changed since the action was listed; ask for it again")]
    Stale,
    #[error("no model is loaded: {0}")]
    NoModel(String),
    #[error("the model's answers did not fix it ({0})")]
    NotFixed(String),
    #[error("the function body is not empty any more")]
    NotEmpty,
    #[error("{0}")]
    Engine(String),
}

/// A diagnostic to fix, in byte offsets of `text`.
#[derive(Debug, Clone)]
pub struct FixRequest<'a> {
    pub text: &'a str,
    pub lang: Option<Lang>,
    /// The editor's language id ("python"), for the prompt.
    pub language_id: &'a str,
    pub start: usize,
    pub end: usize,
    pub message: &'a str,
}

/// What a fix may rewrite and how to judge an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixPlan {
    /// Whole lines: `start` at a line start, `end` after a '\n' (or at the end).
    pub start: usize,
    pub end: usize,
    /// Syntax errors in the whole text before the fix, and inside the region.
    pub errors_total: usize,
    pub errors_in_region: usize,
    /// Whether the diagnostic is one of the syntax errors tree-sitter sees
    /// (then the fix must remove the region's errors). Otherwise (another
    /// server's diagnostic) it must change the code and break nothing.
    pub is_syntax: bool,
}

use crate::text::{floor_char, line_end, line_start};

/// Syntax errors overlapping `[s, e)` (a zero-width one at `s` counts).
fn errors_within(errs: &[syntax::SyntaxError], s: usize, e: usize) -> usize {
    errs.iter().filter(|x| x.start < e.max(s + 1) && x.end >= s && x.start >= s).count()
}

/// Chooses the region for a fix, with the text's parse and its
/// [`syntax::Analysis`] where the language has a grammar (a server keeps
/// both per document version).
pub(crate) fn plan_fix(req: &FixRequest, parsed: Option<(&Parsed, &syntax::Analysis)>) -> Result<FixPlan, FixError> {
    let text = req.text;
    if req.start > text.len() || req.end > text.len() || req.start > req.end {
        return Err(FixError::OutOfRange);
    }
    let (s, e) = (floor_char(text, req.start), floor_char(text, req.end));
    let (start, end) = match parsed {
        Some((p, a)) => {
            syntax::fix_region(p, text, s, e, MAX_REGION_BYTES, a).ok_or(FixError::TooLarge(MAX_REGION_BYTES))?
        }
        None => {
            let r = (line_start(text, s), line_end(text, e.saturating_sub(usize::from(e > s))));
            if r.1 - r.0 > MAX_REGION_BYTES {
                return Err(FixError::TooLarge(MAX_REGION_BYTES));
            }
            r
        }
    };
    let errs: &[syntax::SyntaxError] = parsed.map_or(&[], |(_, a)| &a.errors);
    // The diagnostic is a syntax error, or sits in code that has one: the
    // fix must leave the region parsing.
    let is_syntax = errs.iter().any(|x| x.start <= e && x.end >= s) || errors_within(errs, start, end) > 0;
    // Another server's diagnostic (indentation, a name, a type) may need the
    // code around the statement: one level more, when it fits.
    let (start, end) = match parsed {
        Some((p, _)) if !is_syntax => {
            syntax::widen_region(p, text, start, end, MAX_REGION_BYTES).unwrap_or((start, end))
        }
        _ => (start, end),
    };
    Ok(FixPlan { start, end, errors_total: errs.len(), errors_in_region: errors_within(errs, start, end), is_syntax })
}

/// The lines before and after the region shown as context.
pub fn context(text: &str, start: usize, end: usize) -> (&str, &str) {
    let mut b = start;
    for _ in 0..CONTEXT_LINES_BEFORE {
        if b == 0 {
            break;
        }
        b = line_start(text, b - 1);
    }
    let mut a = end;
    for _ in 0..CONTEXT_LINES_AFTER {
        if a >= text.len() {
            break;
        }
        a = line_end(text, a);
    }
    (&text[b..start], &text[end..a])
}

fn fence_lang(language_id: &str) -> &str {
    match language_id {
        "typescriptreact" => "tsx",
        "javascriptreact" => "jsx",
        "" => "",
        other => other,
    }
}

pub(crate) const FIX_SYSTEM: &str =
    "You are an expert programmer. You fix errors in code, changing as little as possible. You reply with code only.";

/// The prompt for a fix, and the text that ends the answer.
pub(crate) fn fix_prompt(
    mode: FixMode,
    req: &FixRequest,
    plan: &FixPlan,
    family: Option<Family>,
    chat_template: Option<&str>,
) -> (Prompt, Vec<String>) {
    let text = req.text;
    let region = &text[plan.start..plan.end];
    let (before, after) = context(text, plan.start, plan.end);
    match (mode, family) {
        (FixMode::Fim, Some(f)) => (f.fim(before, after, FimOrder::Psm), Vec::new()),
        _ => {
            let lang = fence_lang(req.language_id);
            let line = text[..plan.start].matches('\n').count() + 1;
            let err_line = text[..req.start.min(text.len())].matches('\n').count() + 1;
            let user = format!(
                "This {lang} code has an error on line {err_line}: {msg}\n\n```{lang}\n{before}{region}{after}```\n\n\
                 Rewrite lines {line} to {last} with the error fixed. Keep everything else as it is:\n\n```{lang}\n{region}```",
                msg = req.message.trim(),
                last = line + region.trim_end_matches('\n').matches('\n').count(),
            );
            let prompt = chat(chat_template, FIX_SYSTEM, &user, &format!("```{lang}\n"));
            (prompt, vec!["```".to_string()])
        }
    }
}

fn indent_of(line: &str) -> &str {
    &line[..line.len() - line.trim_start().len()]
}

/// Non-blank lines of `s`, trimmed, with their byte ranges in `s`.
fn code_lines(s: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut at = 0;
    for l in s.split_inclusive('\n') {
        if !l.trim().is_empty() {
            out.push((at, at + l.len(), l.trim()));
        }
        at += l.len();
    }
    out
}

/// The model's answer without the context it echoed: lines at its start
/// that repeat the end of the context shown before the region, and lines
/// at its end that repeat the start of the context after it.
pub(crate) fn strip_context<'a>(answer: &'a str, before: &str, after: &str) -> &'a str {
    let a = code_lines(answer);
    let b = code_lines(before);
    let c = code_lines(after);
    let mut from = 0;
    // The answer starts with before[j..]: cut those lines (longest first).
    for j in 0..b.len() {
        let n = b.len() - j;
        if n < a.len() && a[..n].iter().zip(&b[j..]).all(|(x, y)| x.2 == y.2) {
            from = a[n].0;
            break;
        }
    }
    let mut to = answer.len();
    // The answer ends with after[..k].
    for k in (1..=c.len()).rev() {
        if k < a.len() && a[a.len() - k..].iter().zip(&c[..k]).all(|(x, y)| x.2 == y.2) {
            to = a[a.len() - k].0;
            break;
        }
    }
    if from >= to {
        ""
    } else {
        &answer[from..to]
    }
}

/// Turns the model's answer into the region's replacement: the context it
/// echoed cut off, the region's line ending, and the region's indentation
/// (its first line keeps its place; the rest move with it).
pub(crate) fn shape_answer(region: &str, answer: &str) -> String {
    let answer = answer.trim_end_matches(['\n', '\r', ' ', '\t']);
    let answer = answer.trim_start_matches('\n');
    let first_indent = |s: &str| s.lines().find(|l| !l.trim().is_empty()).map(indent_of).unwrap_or("").to_string();
    let (want, got) = (first_indent(region), first_indent(answer));
    let mut out = String::new();
    for (i, l) in answer.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if l.trim().is_empty() {
            continue;
        }
        if want.len() >= got.len() {
            out.push_str(&want[..want.len() - got.len()]);
            out.push_str(l);
        } else {
            // Over-indented: remove the excess where the line has it.
            let excess = got.len() - want.len();
            let ind = indent_of(l).len();
            out.push_str(&l[excess.min(ind)..]);
        }
    }
    if region.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// Length of the longest common subsequence of two char sequences.
fn lcs(a: &[char], b: &[char]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for &x in a {
        for (j, &y) in b.iter().enumerate() {
            cur[j + 1] = if x == y { prev[j] + 1 } else { prev[j + 1].max(cur[j]) };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Judges a replacement of the region: for a syntax error, the region's
/// errors must be gone and no error may appear elsewhere; for any
/// diagnostic, the text must change, no syntax error may be added, and most
/// of the region's code must survive (deleting the broken code is no fix).
/// Returns the reason for a rejection.
pub(crate) fn verify(req: &FixRequest, plan: &FixPlan, replacement: &str) -> Result<(), String> {
    let region = &req.text[plan.start..plan.end];
    if replacement == region {
        return Err("the answer left the code unchanged".into());
    }
    let squash = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<Vec<char>>();
    let (old, new) = (squash(region), squash(replacement));
    if old == new && plan.is_syntax && !region.contains('\n') {
        return Err("the answer only changed whitespace".into());
    }
    if old.len() <= 6000 && new.len() <= 9000 {
        let kept = lcs(&old, &new);
        if (kept as f64) < 0.7 * old.len() as f64 || new.len() > old.len() * 3 / 2 + 80 {
            return Err("the answer rewrote the code instead of fixing it".into());
        }
    }
    let Some(lang) = req.lang else { return Ok(()) };
    let mut text = String::with_capacity(req.text.len() + replacement.len());
    text.push_str(&req.text[..plan.start]);
    text.push_str(replacement);
    text.push_str(&req.text[plan.end..]);
    let Some(p) = Parsed::parse(lang, &text) else { return Ok(()) };
    let errs = syntax::syntax_errors(&p, &text, syntax::ANALYSIS_MAX_ERRORS);
    let inside = errors_within(&errs, plan.start, plan.start + replacement.len());
    let outside = errs.len() - inside;
    let outside_before = plan.errors_total - plan.errors_in_region;
    if plan.is_syntax && inside > 0 {
        return Err(format!("the code still does not parse ({})", errs[0].message));
    }
    if outside > outside_before || inside > plan.errors_in_region {
        return Err("the answer broke other code".into());
    }
    Ok(())
}

/// A replacement of whole lines: `[start_line, end_line)` (0-based) becomes
/// `text` (whole lines, each ending in '\n' except maybe at the end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineEdit {
    pub start_line: usize,
    pub end_line: usize,
    /// Byte range of those lines in the original text.
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// The smallest whole-line edit that turns the region into `replacement`:
/// lines the two share at the start and the end are left alone.
pub(crate) fn minimal_edit(text: &str, start: usize, end: usize, replacement: &str) -> Option<LineEdit> {
    let old: Vec<&str> = text[start..end].split_inclusive('\n').collect();
    let new: Vec<&str> = replacement.split_inclusive('\n').collect();
    let mut head = 0;
    while head < old.len() && head < new.len() && old[head] == new[head] {
        head += 1;
    }
    let mut tail = 0;
    while tail < old.len() - head && tail < new.len() - head && old[old.len() - 1 - tail] == new[new.len() - 1 - tail] {
        tail += 1;
    }
    if head == old.len() && head == new.len() {
        return None;
    }
    let first_line = text[..start].matches('\n').count();
    let s = start + old[..head].iter().map(|l| l.len()).sum::<usize>();
    let e = end - old[old.len() - tail..].iter().map(|l| l.len()).sum::<usize>();
    Some(LineEdit {
        start_line: first_line + head,
        end_line: first_line + old.len() - tail,
        start: s,
        end: e,
        text: new[head..new.len() - tail].concat(),
    })
}

/// The indentation one level adds in this text (its first indented line's),
/// else four spaces (a tab for Go).
pub(crate) fn indent_unit(text: &str, lang: Option<Lang>) -> String {
    for l in text.lines().take(2000) {
        let ind = indent_of(l);
        if !ind.is_empty() && !l.trim().is_empty() {
            return if ind.starts_with('\t') { "\t".into() } else { ind.to_string() };
        }
    }
    lang.map_or("    ", |l| l.rules().default_indent).into()
}

/// The prompt pieces for filling an empty body: the text before and after
/// the body's new contents, where the model writes.
#[derive(Debug, Clone)]
pub(crate) struct FillPlan {
    pub body: syntax::EmptyBody,
    pub prefix: String,
    pub suffix: String,
    /// Indentation of the body's lines.
    pub indent: String,
}

pub(crate) fn plan_fill(text: &str, parsed: &Parsed, byte: usize) -> Option<FillPlan> {
    let body = syntax::empty_body_at(parsed, text, byte)?;
    let unit = indent_unit(text, Some(parsed.lang));
    let indent = format!("{}{unit}", body.indent);
    let (prefix, suffix) = if body.braces {
        (format!("{}\n{indent}", &text[..body.start]), format!("\n{}{}", body.indent, &text[body.end..]))
    } else {
        (text[..body.start].to_string(), text[body.end..].to_string())
    };
    Some(FillPlan { body, prefix, suffix, indent })
}

/// Cuts a generated body where it leaves the function: at a line indented
/// less than the body (Python), or where its braces close the function. A
/// first line indented again (the prompt already ends in the body's
/// indentation) loses that repeat, and so do the lines after it when they
/// all carry it.
pub(crate) fn cut_body(answer: &str, plan: &FillPlan) -> String {
    let (end, _) = body_end(answer, plan);
    let body = answer[..end].trim_end();
    let first_end = body.find('\n').unwrap_or(body.len());
    let extra = indent_of(&body[..first_end]);
    if extra.is_empty() {
        return body.to_string();
    }
    let later_lines = || body[first_end..].split_inclusive('\n').filter(|l| !l.trim().is_empty());
    let deeper = format!("{}{extra}", plan.indent);
    let shift_later = !plan.body.braces && later_lines().all(|l| l.starts_with(&deeper));
    let mut out = body[extra.len()..first_end].to_string();
    for l in body[first_end..].split_inclusive('\n') {
        match l.strip_prefix(plan.indent.as_str()).and_then(|r| r.strip_prefix(extra)) {
            Some(rest) if shift_later => {
                out.push_str(&plan.indent);
                out.push_str(rest);
            }
            _ => out.push_str(l),
        }
    }
    out
}

/// Where a generated body leaves the function (a byte offset of `answer`),
/// and whether it has: then generating more is wasted.
pub(crate) fn body_end(answer: &str, plan: &FillPlan) -> (usize, bool) {
    if plan.body.braces {
        let mut depth: i64 = 0;
        let mut in_str: Option<char> = None;
        let mut prev = '\0';
        for (i, ch) in answer.char_indices() {
            match in_str {
                Some(q) => {
                    if ch == q && prev != '\\' {
                        in_str = None;
                    }
                }
                None => match ch {
                    '"' | '\'' | '`' => in_str = Some(ch),
                    '{' | '(' | '[' => depth += 1,
                    '}' | ')' | ']' => {
                        depth -= 1;
                        if depth < 0 {
                            return (i, true);
                        }
                    }
                    _ => {}
                },
            }
            if ch == '\n' {
                in_str = None;
            }
            prev = ch;
        }
        (answer.len(), false)
    } else {
        let mut at = 0;
        for (i, l) in answer.split_inclusive('\n').enumerate() {
            if i > 0 && !l.trim().is_empty() && indent_of(l).len() < plan.indent.len() {
                return (at, true);
            }
            at += l.len();
        }
        (answer.len(), false)
    }
}

#[cfg(test)]
mod tests;
