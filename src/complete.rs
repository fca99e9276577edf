//! From a document snapshot and a cursor to an engine request, and from the
//! engine's text back to an edit: context window, line policy, clean-up,
//! typed-ahead reuse. Pure functions; no LSP types, no model.

use crate::config::{Config, Multiline};
use crate::engine::{Request, Sampling};
use crate::prompt::{self, Family};
use ropey::Rope;
use std::time::Duration;

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
}

/// Splits the text around `cursor` (a char index) into the prefix and suffix
/// windows the budget allows, cut at line boundaries.
pub fn windows(rope: &Rope, cursor: usize, budget_tokens: usize) -> (String, String) {
    let budget_chars = budget_tokens * CHARS_PER_TOKEN;
    let pre_chars = budget_chars * 3 / 4;
    let suf_chars = budget_chars - pre_chars;
    let cursor = cursor.min(rope.len_chars());
    let mut start = cursor.saturating_sub(pre_chars);
    if start > 0 {
        // Start at a line boundary so the model sees whole lines.
        let line = rope.char_to_line(start);
        let next = rope.line_to_char((line + 1).min(rope.len_lines().saturating_sub(1)));
        if next <= cursor {
            start = next;
        }
    }
    let mut end = (cursor + suf_chars).min(rope.len_chars());
    if end < rope.len_chars() {
        let line = rope.char_to_line(end);
        let ls = rope.line_to_char(line);
        if ls > cursor {
            end = ls;
        }
    }
    (rope.slice(start..cursor).to_string(), rope.slice(cursor..end).to_string())
}

/// Whether to ask for several lines: an empty line right after a line that
/// opens a block gets a body; otherwise the rest of the line.
pub fn wants_multiline(prefix: &str, rest_of_line: &str, policy: Multiline) -> bool {
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

pub fn plan(rope: &Rope, cursor: usize, cfg: &Config, family: Option<Family>) -> Plan {
    let (prefix, suffix) = windows(rope, cursor, cfg.context_tokens);
    let rest_of_line = suffix.split('\n').next().unwrap_or("").trim_end_matches('\r').to_string();
    let multiline = wants_multiline(&prefix, &rest_of_line, cfg.multiline);
    let word: String = {
        let rev: Vec<char> = prefix.chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        rev.into_iter().rev().collect()
    };
    let word_start = cursor - word.chars().count();
    let p = match family {
        Some(f) => f.fim(&prefix, &suffix, cfg.fim_order),
        None => prompt::prefix_only(&prefix),
    };
    let mut request = Request::new(p);
    request.max_tokens = if multiline { cfg.max_tokens } else { cfg.max_tokens.min(48) };
    request.sampling = Sampling { temperature: cfg.temperature, ..Sampling::default() };
    request.budget = Some(Duration::from_millis(cfg.timeout_ms));
    if multiline {
        request.stop.push("\n\n\n".into());
    } else {
        request.stop.push("\n".into());
    }
    let suffix_head: String = suffix.chars().take(256).collect();
    let line_prefix = prefix.rsplit('\n').next().unwrap_or("").to_string();
    Plan { request, word_start, word, multiline, rest_of_line, line_prefix, suffix_head }
}

/// Cleans the model's text: cut to one line when asked, drop what repeats
/// the text right of the cursor, drop trailing lines that repeat the suffix,
/// trim trailing whitespace.
pub fn postprocess(text: &str, plan: &Plan) -> String {
    let mut t = text.replace("\r\n", "\n");
    // On a blank line the model may first finish that line and start the
    // next one: keep what goes on the cursor's line, at its indentation.
    if plan.line_prefix.trim().is_empty() {
        if let Some(nl) = t.find('\n') {
            if t[..nl].trim().is_empty() {
                let rest = &t[nl + 1..];
                t = rest.strip_prefix(plan.line_prefix.as_str()).unwrap_or(rest.trim_start_matches([' ', '\t'])).to_string();
            }
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
        let indent = |l: &str| l.len() - l.trim_start_matches([' ', '\t']).len();
        let base = indent(&plan.line_prefix);
        if base > 0 {
            let mut keep = Vec::new();
            for (i, l) in t.split('\n').enumerate() {
                if i > 0 && !l.trim().is_empty() && indent(l) < base {
                    break;
                }
                keep.push(l);
            }
            t = keep.join("\n");
        }
        // Drop trailing lines that repeat the start of the suffix.
        let suffix_lines: Vec<&str> = plan.suffix_head.lines().map(str::trim).filter(|l| !l.is_empty()).take(3).collect();
        if let Some(first_suffix) = suffix_lines.first() {
            let lines: Vec<&str> = t.split('\n').collect();
            if let Some(i) = lines.iter().position(|l| l.trim() == *first_suffix && !l.trim().is_empty()) {
                if i > 0 {
                    t = lines[..i].join("\n");
                }
            }
        }
    }
    t.trim_end().to_string()
}

/// The last suggestion for a document, to answer typed-ahead keystrokes
/// without the model.
#[derive(Debug, Clone)]
pub struct LastSuggestion {
    pub prefix_tail: String,
    pub suffix_head: String,
    pub text: String,
}

const TAIL: usize = 256;

pub fn tail(rope: &Rope, cursor: usize) -> String {
    let start = cursor.saturating_sub(TAIL + 128);
    rope.slice(start..cursor.min(rope.len_chars())).to_string()
}

impl LastSuggestion {
    pub fn new(rope: &Rope, cursor: usize, suffix_head: String, text: String) -> Self {
        let t = tail(rope, cursor);
        let skip = t.chars().count().saturating_sub(TAIL);
        LastSuggestion { prefix_tail: t.chars().skip(skip).collect(), suffix_head, text }
    }

    /// If the user has typed the start of the suggestion since, the rest.
    pub fn remainder(&self, current_tail: &str, current_suffix_head: &str) -> Option<String> {
        if current_suffix_head != self.suffix_head {
            return None;
        }
        let mut typed_end = 0;
        for (i, c) in self.text.char_indices() {
            typed_end = i + c.len_utf8();
            let typed = &self.text[..typed_end];
            if current_tail.ends_with(&format!("{}{}", self.prefix_tail, typed)) {
                let rest = &self.text[typed_end..];
                return if rest.trim().is_empty() { None } else { Some(rest.to_string()) };
            }
        }
        let _ = typed_end;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(plan(&r, c, &cfg, Some(Family::QwenCoder)).multiline);
        let (r, c) = at("x = foo($0)\n");
        let p = plan(&r, c, &cfg, Some(Family::QwenCoder));
        assert!(!p.multiline);
        assert_eq!(p.rest_of_line, ")");
        let (r, c) = at("let value = compu$0\n");
        let p = plan(&r, c, &cfg, None);
        assert_eq!(p.word, "compu");
        assert_eq!(p.word_start, c - 5);
    }

    #[test]
    fn postprocess_trims_overlap_and_lines() {
        let cfg = Config::default();
        let (r, c) = at("x = foo($0)\n");
        let p = plan(&r, c, &cfg, None);
        assert_eq!(postprocess("a, b)\nmore", &p), "a, b");
        let (r, c) = at("def f(x):\n    $0\n\ndef g():\n    pass\n");
        let p = plan(&r, c, &cfg, None);
        assert_eq!(postprocess("return x\n\ndef g():\n", &p), "return x");
        // A leading line break on a blank line is dropped with the re-indent.
        assert_eq!(postprocess("\n    return x\n", &p), "return x");
        // The block ends where the text dedents.
        assert_eq!(postprocess("y = x\n    return y\n\nprint(f(2))", &p), "y = x\n    return y");
    }

    #[test]
    fn windows_respect_the_budget_and_lines() {
        let text: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        let rope = Rope::from_str(&text);
        let cursor = rope.line_to_char(1000);
        let (pre, suf) = windows(&rope, cursor, 100);
        assert!(pre.len() <= 300 && suf.len() <= 300);
        assert!(pre.starts_with("line "));
        assert!(pre.ends_with('\n'));
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
}
