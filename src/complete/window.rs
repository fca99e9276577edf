//! The windows of the current file a prompt shows: the text before the
//! cursor (prefix) and after it (suffix), sized in the model's tokens.
//!
//! The prefix starts on a line whose number is a multiple of a grid step:
//! the earliest such line whose window fits the budget. While the user
//! types, the start stays put until the window outgrows the budget, then
//! moves a whole step, so the prompt's first tokens, and the KV cache the
//! engine keeps for them, survive typing. A start cut at a character budget
//! moves with nearly every line typed, and each move is a cold prefill of
//! the whole prompt (seconds on a laptop's CPU).

use super::{short_suffix, CHARS_PER_TOKEN};
use crate::engine::TokenCounter;
use crate::syntax::{Definition, Lang};
use crate::text::floor_char;
use ropey::Rope;

/// The file the windows are cut from.
pub(crate) struct Source<'a> {
    pub rope: &'a Rope,
    /// Char index.
    pub cursor: usize,
    /// The whole text and its definitions (outer first), when the windows
    /// grow to whole definitions.
    pub syntax: Option<(&'a str, &'a [Definition])>,
}

/// Where the prefix window starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// The earliest grid line whose window fits.
    Fitting,
    /// One grid step after it, where typing on will move it: a prefetch
    /// prepares that prompt's cache ahead of time. The same as `Fitting`
    /// when the window starts at the file's first line.
    Next,
}

/// With FIM, the suffix takes at most this share of the budget (a quarter).
const SUFFIX_SHARE: usize = 4;

/// Lines per grid step for a prefix of `tokens` tokens: about a twelfth of
/// the window at ten tokens a line. A larger step moves the start less
/// often and shows fewer lines on average (half a step).
fn grid_step(tokens: usize) -> usize {
    (tokens / 128).clamp(1, 16)
}

/// Cuts the windows so that what the model is sent comes to at most
/// `tokens` tokens (counted by `counter`; without one, at
/// [`CHARS_PER_TOKEN`]). `suffix_lines`: None when the suffix is not sent
/// (plain continuation; it is still cut, for the clean-up to read), else
/// the `suffixLines` setting it is sent with.
pub(crate) fn cut(
    src: &Source,
    tokens: usize,
    suffix_lines: Option<usize>,
    counter: Option<&TokenCounter>,
    start: Start,
) -> (String, String) {
    let count = |s: &str| counter.and_then(|c| c.count(s));
    // The measured characters per token guide the first cut only: the
    // start found does not depend on it.
    let ratio = counter.and_then(|c| c.bytes_per_token()).unwrap_or(CHARS_PER_TOKEN as f64).clamp(1.0, 12.0);
    let chars_for = |t: usize| (t as f64 * ratio) as usize;
    let (suffix, reserved) = match suffix_lines {
        None => (suffix_window(src, chars_for(tokens / 3)), 0),
        Some(lines) => {
            let share = tokens / SUFFIX_SHARE;
            let whole = suffix_window(src, chars_for(share));
            let sent = |s: &str| count(short_suffix(s, lines));
            match sent(&whole) {
                // All of it is sent (the file or the sent lines end first):
                // it reserves what it takes, the same on every keystroke.
                Some(n) if n <= share && !cut_short(src, &whole, lines) => (whole, n),
                // Cut by the budget: it reserves its whole share, so the
                // prefix's budget does not move with the suffix's end.
                Some(_) => {
                    let fitted = fit(|c| suffix_window(src, c), chars_for(share), share, |s| sent(s));
                    (fitted, share)
                }
                None => (whole, share),
            }
        }
    };
    let budget = tokens.saturating_sub(reserved).max(1);
    (prefix_window(src, budget, &count, chars_for(budget), start), suffix)
}

/// Whether the suffix window stops before the text sent of it would: the
/// budget cut it, not the end of the file or the lines sent.
fn cut_short(src: &Source, window: &str, lines: usize) -> bool {
    let to_end = src.rope.len_chars() - src.cursor.min(src.rope.len_chars());
    window.chars().count() < to_end && short_suffix(window, lines).len() == window.len()
}

/// The prefix: from the earliest grid line whose window comes to at most
/// `budget` tokens; from a later line, or from inside the cursor's line,
/// when even the last grid step does not fit (very long lines). Without a
/// count, the character budget decides.
fn prefix_window(
    src: &Source,
    budget: usize,
    count: &dyn Fn(&str) -> Option<usize>,
    guess_chars: usize,
    start: Start,
) -> String {
    let rope = src.rope;
    let cursor = src.cursor.min(rope.len_chars());
    let cur_line = rope.char_to_line(cursor);
    let step = grid_step(budget);
    // The import header may take a quarter of the budget, counted in
    // characters so that it is the same on every keystroke.
    let header_max = budget * CHARS_PER_TOKEN / 4;
    let from_byte = |b: usize| prefix_from(src, b, header_max);
    let from_line = |line: usize| from_byte(rope.line_to_byte(line));
    let fits = |line: usize| count(&from_line(line)).map(|n| n <= budget);
    let guess_line = rope.char_to_line(cursor.saturating_sub(guess_chars));
    // Grid lines first, then single lines after the last grid line.
    let last_grid = cur_line / step * step;
    let mut found = earliest(cur_line / step, guess_line.div_ceil(step), |k| fits(k * step));
    if let Found::At(k) = found {
        // A window already cut at its start (k > 0) moves a step next.
        let next = (k + 1) * step;
        if start == Start::Next && k > 0 && next <= cur_line {
            return from_line(next);
        }
        return from_line(k * step);
    }
    if let Found::NotEven = found {
        found = earliest(cur_line - last_grid, guess_line.saturating_sub(last_grid), |i| fits(last_grid + i));
        if let Found::At(i) = found {
            return from_line(last_grid + i);
        }
    }
    match found {
        // The cursor's line alone is over the budget: cut inside it.
        Found::NotEven => {
            let back = |chars: usize| from_byte(rope.char_to_byte(cursor.saturating_sub(chars)));
            fit(back, guess_chars, budget, count)
        }
        _ => from_byte(rope.char_to_byte(char_budget_start(rope, cursor, guess_chars, step))),
    }
}

/// Without a token count: the first grid line inside the character budget,
/// else the first line inside it, else (a line longer than the budget) the
/// budget itself. A char index.
fn char_budget_start(rope: &Rope, cursor: usize, chars: usize, step: usize) -> usize {
    if cursor <= chars {
        return 0;
    }
    let raw = cursor - chars;
    let cur_line = rope.char_to_line(cursor);
    let first = rope.char_to_line(raw) + 1;
    let grid = first.div_ceil(step) * step;
    if grid <= cur_line {
        rope.line_to_char(grid)
    } else if first <= cur_line {
        rope.line_to_char(first)
    } else {
        raw
    }
}

enum Found {
    At(usize),
    /// Not even the last candidate fits.
    NotEven,
    /// The tokens could not be counted.
    Uncounted,
}

/// The smallest `k` in `0..=last` for which `fits` holds, `fits` being
/// false below some `k` and true from it on: galloping from `guess`, then
/// halving. A guess one step off costs two counts.
fn earliest(last: usize, guess: usize, fits: impl Fn(usize) -> Option<bool>) -> Found {
    let guess = guess.min(last);
    let Some(at_guess) = fits(guess) else { return Found::Uncounted };
    // `lo` does not fit (or is below 0), `hi` fits.
    let (mut lo, mut hi): (Option<usize>, usize);
    if at_guess {
        hi = guess;
        let mut step = 1;
        loop {
            if hi == 0 {
                return Found::At(0);
            }
            let k = hi.saturating_sub(step);
            match fits(k) {
                Some(true) => {
                    hi = k;
                    step *= 2;
                }
                Some(false) => {
                    lo = Some(k);
                    break;
                }
                None => return Found::Uncounted,
            }
        }
    } else {
        let mut below = guess;
        let mut step = 1;
        loop {
            if below == last {
                return Found::NotEven;
            }
            let k = (below + step).min(last);
            match fits(k) {
                Some(true) => {
                    hi = k;
                    lo = Some(below);
                    break;
                }
                Some(false) => {
                    below = k;
                    step *= 2;
                }
                None => return Found::Uncounted,
            }
        }
    }
    while let Some(l) = lo {
        if hi - l <= 1 {
            break;
        }
        let mid = l + (hi - l) / 2;
        match fits(mid) {
            Some(true) => hi = mid,
            Some(false) => lo = Some(mid),
            None => return Found::Uncounted,
        }
    }
    Found::At(hi)
}

/// The prefix from byte `start` to the cursor. With syntax: a definition
/// that straddles the start without holding the cursor is left out whole,
/// and the file's import header is kept when the window starts below it
/// (if at most `header_max` bytes).
fn prefix_from(src: &Source, start: usize, header_max: usize) -> String {
    let rope = src.rope;
    let cur = rope.char_to_byte(src.cursor.min(rope.len_chars()));
    let Some((text, defs)) = src.syntax else {
        let start = rope.byte_to_char(start.min(cur));
        return rope.slice(start..src.cursor.min(rope.len_chars())).to_string();
    };
    let cur = floor_char(text, cur.min(text.len()));
    let mut start = floor_char(text, start.min(cur));
    let line_after = |i: usize| text[i..].find('\n').map(|j| i + j + 1).unwrap_or(text.len());
    for d in defs {
        let (a, b) = d.byte_range;
        if a < start && start < b && !(a <= cur && cur <= b) {
            let after = line_after(b.min(cur));
            if after <= cur {
                start = start.max(after);
            }
        }
    }
    let mut prefix = String::new();
    if start > 0 {
        let header = import_header(text, start);
        if !header.is_empty() && header.len() <= header_max {
            prefix.push_str(header);
            if !header.ends_with('\n') {
                prefix.push('\n');
            }
        }
    }
    prefix.push_str(&text[start..cur]);
    prefix
}

/// The file's leading block of imports, if it ends before `limit`.
fn import_header(text: &str, limit: usize) -> &str {
    let mut end = 0;
    let mut pos = 0;
    for (n, line) in text.split_inclusive('\n').enumerate() {
        if n > 80 || pos >= limit {
            break;
        }
        let t = line.trim_start();
        // Any language's import lines: the window may not know the language.
        let is_import = Lang::ALL.iter().flat_map(|l| l.rules().import_prefixes).any(|k| t.starts_with(k))
            && !t.starts_with("const {");
        pos += line.len();
        if is_import && pos <= limit {
            end = pos;
        }
    }
    &text[..end]
}

/// The suffix: at most `chars` characters after the cursor, ending at a line
/// boundary. With syntax, a definition that begins after the cursor and
/// straddles the end is left out whole.
fn suffix_window(src: &Source, chars: usize) -> String {
    let rope = src.rope;
    let cursor = src.cursor.min(rope.len_chars());
    let Some((text, defs)) = src.syntax else {
        let mut end = (cursor + chars).min(rope.len_chars());
        if end < rope.len_chars() {
            let ls = rope.line_to_char(rope.char_to_line(end));
            if ls > cursor {
                end = ls;
            }
        }
        return rope.slice(cursor..end).to_string();
    };
    let cur = floor_char(text, rope.char_to_byte(cursor).min(text.len()));
    let line_before = |i: usize| text[..i].rfind('\n').map(|j| j + 1).unwrap_or(0);
    let mut end = floor_char(text, (cur + chars).min(text.len()));
    if end < text.len() {
        let aligned = line_before(end);
        if aligned > cur {
            end = aligned;
        }
    }
    for d in defs {
        let (a, b) = d.byte_range;
        if a < end && end < b && a > cur {
            end = line_before(a).max(cur);
        }
    }
    text[cur..end.max(cur)].to_string()
}

/// Cuts (`cut` takes a size in characters, starting from `estimate`) until
/// the text comes to at most `target` tokens and, when there is more, at
/// least nine tenths of it. Each step scales the size by the measured
/// tokens; a few steps suffice.
fn fit(cut: impl Fn(usize) -> String, estimate: usize, target: usize, sent: impl Fn(&str) -> Option<usize>) -> String {
    let mut chars = estimate.max(1);
    let mut w = cut(chars);
    // The largest cut seen that fits.
    let mut best: Option<(usize, String)> = None;
    for _ in 0..4 {
        let Some(n) = sent(&w) else { return w };
        if n <= target && best.as_ref().is_none_or(|(m, _)| n > *m) {
            best = Some((n, w.clone()));
        }
        if n == 0 || (n <= target && n * 10 >= target * 9) {
            break;
        }
        // Aim a little under the target, so that the next step ends.
        let next = (chars as u128 * target as u128 * 95 / (100 * n as u128)) as usize;
        let next = next.clamp(1, estimate.saturating_mul(4).max(1));
        let w2 = cut(next);
        if next > chars && w2.len() == w.len() {
            break; // all there is is in already
        }
        chars = next;
        w = w2;
    }
    best.map_or(w, |(_, b)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(chars_per_token: usize) -> TokenCounter {
        TokenCounter::new(move |t: &str| Some(t.len().div_ceil(chars_per_token)))
    }

    fn blind(rope: &Rope, cursor: usize) -> Source<'_> {
        Source { rope, cursor, syntax: None }
    }

    #[test]
    fn the_earliest_fitting_candidate_from_any_guess() {
        for first in 0..=20 {
            for guess in 0..=25 {
                let got = earliest(20, guess, |k| Some(k >= first));
                assert!(matches!(got, Found::At(k) if k == first), "first {first} guess {guess}");
            }
        }
        assert!(matches!(earliest(20, 3, |_| Some(false)), Found::NotEven));
        assert!(matches!(earliest(20, 3, |_| None), Found::Uncounted));
        // A guess on the answer costs two counts.
        let calls = std::cell::Cell::new(0);
        earliest(100, 40, |k| {
            calls.set(calls.get() + 1);
            Some(k >= 40)
        });
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn the_prefix_starts_on_a_grid_line_and_stays_while_typing() {
        let text: String = (0..3000).map(|i| format!("let v{i} = f({i});\n")).collect();
        let mut rope = Rope::from_str(&text);
        let mut cursor = rope.line_to_char(2000);
        let c = counter(4);
        let budget = 1536;
        let step = grid_step(budget);
        let mut starts = Vec::new();
        for ch in "    let total = compute(a, b);\n".repeat(20).chars() {
            rope.insert_char(cursor, ch);
            cursor += 1;
            let (pre, _) = cut(&blind(&rope, cursor), budget, None, Some(&c), Start::Fitting);
            let sent = c.count(&pre).unwrap();
            assert!(sent <= budget, "{sent} tokens");
            let start = rope.char_to_line(cursor - pre.chars().count());
            assert_eq!(start % step, 0, "starts on a grid line");
            // The earliest such line: one step earlier would not fit.
            let earlier = rope.slice(rope.line_to_char(start - step)..cursor).to_string();
            assert!(c.count(&earlier).unwrap() > budget);
            // Where it moves is where the window prefetched ahead started.
            if let Some(&(last, next)) = starts.last() {
                assert!(start == last || start == next, "moved from {last} to {start}, not to {next}");
            }
            let (ahead, _) = cut(&blind(&rope, cursor), budget, None, Some(&c), Start::Next);
            let next = rope.char_to_line(cursor - ahead.chars().count());
            assert_eq!(next, start + step, "the next start is a step on");
            starts.push((start, next));
        }
        starts.dedup();
        // 620 keystrokes, 20 lines typed: the start moved once or twice per
        // grid step typed, not once per line.
        assert!(starts.len() <= 20 / step + 2, "{} starts: {starts:?}", starts.len());
    }

    #[test]
    fn without_a_count_the_grid_line_the_characters_reach() {
        let text: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let rope = Rope::from_str(&text);
        let cursor = rope.line_to_char(80);
        let (pre, suf) = cut(&blind(&rope, cursor), 100, None, None, Start::Fitting);
        assert!(pre.len() <= 100 * CHARS_PER_TOKEN && pre.starts_with("line "), "{pre:?}");
        assert!(suf.starts_with("line 80\n") && suf.ends_with('\n'));
        // A small file is sent whole.
        let (pre, _) = cut(&blind(&rope, cursor), 10_000, None, None, Start::Fitting);
        assert!(pre.starts_with("line 0\n"));
    }

    #[test]
    fn a_line_longer_than_the_budget_is_cut_inside() {
        let text = format!("{}\n", "x".repeat(50_000));
        let rope = Rope::from_str(&text);
        let c = counter(1);
        let (pre, _) = cut(&blind(&rope, 40_000), 1000, None, Some(&c), Start::Fitting);
        assert!(pre.len() <= 1000 && pre.len() >= 900, "{}", pre.len());
    }

    #[test]
    fn the_fim_suffix_takes_its_share_and_leaves_the_rest() {
        let text: String = (0..3000).map(|i| format!("let v{i} = f({i});\n")).collect();
        let rope = Rope::from_str(&text);
        let c = counter(4);
        let src = blind(&rope, rope.line_to_char(1500));
        let (pre, suf) = cut(&src, 1536, Some(0), Some(&c), Start::Fitting);
        let (p, s) = (c.count(&pre).unwrap(), c.count(&suf).unwrap());
        assert!(s <= 384 && s * 10 >= 384 * 9, "suffix {s}");
        assert!(p <= 1536 - 384 && p + s > 1300, "prefix {p}");
        // Three suffix lines are sent: the prefix gets the rest.
        let (pre, _) = cut(&src, 1536, Some(3), Some(&c), Start::Fitting);
        assert!(c.count(&pre).unwrap() > 1536 - 384);
    }
}
