//! The protocol edge: LSP positions and ranges become document offsets here
//! and nowhere else (`from_*`), and document offsets become LSP positions
//! here (`to_*`), in the negotiated position encoding. Reversed ranges and
//! positions past the end are rejected or clamped in this one place, so no
//! handler does position arithmetic of its own.

use crate::workspace::documents::{self, Change, DocError, Encoding, Pos};
use ropey::Rope;
use tower_lsp_server::ls_types::{Position, Range, TextDocumentContentChangeEvent, TextEdit};

/// An LSP position as the documents module's position.
pub(super) fn pos(p: Position) -> Pos {
    Pos { line: p.line, col: p.character }
}

/// The char index of an LSP position: a line past the end is an error; a
/// column past the line's end is clamped to it (LSP's rule).
pub(super) fn from_position(rope: &Rope, p: Position, enc: Encoding) -> Result<usize, DocError> {
    documents::char_at(rope, pos(p), enc)
}

/// Byte offsets of an LSP range; None when it lies outside the document (a
/// line past the end) or is reversed.
pub(super) fn from_range(rope: &Rope, r: &Range, enc: Encoding) -> Option<(usize, usize)> {
    let a = from_position(rope, r.start, enc).ok()?;
    let b = from_position(rope, r.end, enc).ok()?;
    (a <= b).then(|| (rope.char_to_byte(a), rope.char_to_byte(b)))
}

/// A `didChange` content change as a document change (positions are
/// resolved against the document when it is applied, in order).
pub(super) fn from_change(c: TextDocumentContentChangeEvent) -> Change {
    Change { range: c.range.map(|r| (pos(r.start), pos(r.end))), text: c.text }
}

/// The line an editor's cursor is on after a `didChange` content change:
/// the end of the inserted text, in LSP's line counting (LF, CRLF, CR).
/// None for a change that replaces the whole document.
pub(super) fn line_after_change(c: &TextDocumentContentChangeEvent) -> Option<u32> {
    let r = c.range?;
    let b = c.text.as_bytes();
    let breaks = (0..b.len()).filter(|&i| b[i] == b'\n' || (b[i] == b'\r' && b.get(i + 1) != Some(&b'\n'))).count();
    Some(r.start.line.saturating_add(u32::try_from(breaks).unwrap_or(u32::MAX)))
}

/// The LSP position of a char index (clamped to the document's end).
pub(super) fn to_position(rope: &Rope, char_idx: usize, enc: Encoding) -> Position {
    let p = documents::pos_of(rope, char_idx.min(rope.len_chars()), enc);
    Position::new(p.line, p.col)
}

/// The LSP range between two char indexes.
pub(super) fn to_range(rope: &Rope, a: usize, b: usize, enc: Encoding) -> Range {
    Range::new(to_position(rope, a, enc), to_position(rope, b, enc))
}

/// The LSP range of the bytes `start..end` (clamped to the document, and
/// to character boundaries by ropey's byte-to-char rounding).
pub(super) fn to_range_of_bytes(rope: &Rope, start: usize, end: usize, enc: Encoding) -> Range {
    let a = rope.byte_to_char(start.min(rope.len_bytes()));
    let b = rope.byte_to_char(end.min(rope.len_bytes()));
    to_range(rope, a, b, enc)
}

/// A text edit replacing the bytes `start..end` (clamped to the document,
/// and to character boundaries by ropey's byte-to-char rounding).
pub(super) fn to_text_edit(rope: &Rope, start: usize, end: usize, text: &str, enc: Encoding) -> TextEdit {
    TextEdit { range: to_range_of_bytes(rope, start, end, enc), new_text: text.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip_and_bad_ones_are_rejected_or_clamped() {
        // "é" is 2 bytes, 1 UTF-16 unit; "𝄞" is 4 bytes, 2 units.
        let rope = Rope::from_str("aé𝄞b\nxy\n");
        let enc = Encoding::Utf16;
        let r = Range::new(Position::new(0, 1), Position::new(0, 4));
        assert_eq!(from_range(&rope, &r, enc), Some((1, 7)));
        assert_eq!(to_text_edit(&rope, 1, 7, "", enc).range, r);
        // Reversed, and a line past the end: rejected.
        assert_eq!(from_range(&rope, &Range::new(Position::new(0, 4), Position::new(0, 1)), enc), None);
        assert_eq!(from_range(&rope, &Range::new(Position::new(0, 0), Position::new(9, 0)), enc), None);
        // A column past the line's end: clamped to the line's end.
        assert_eq!(from_position(&rope, Position::new(1, 99), enc).ok(), Some(rope.line_to_char(1) + 2));
        // Offsets past the end: clamped to the end.
        assert_eq!(to_position(&rope, 999, enc), Position::new(2, 0));
        assert_eq!(
            to_text_edit(&rope, 999, 1000, "z", enc).range,
            Range::new(Position::new(2, 0), Position::new(2, 0))
        );
    }

    #[test]
    fn the_cursor_line_after_a_change_counts_lsp_line_breaks() {
        let change = |line, text: &str| TextDocumentContentChangeEvent {
            range: Some(Range::new(Position::new(line, 3), Position::new(line + 2, 0))),
            range_length: None,
            text: text.into(),
        };
        assert_eq!(line_after_change(&change(4, "x")), Some(4));
        assert_eq!(line_after_change(&change(4, "a\r\nb\rc\nd\u{2028}\u{c}")), Some(7));
        let whole = TextDocumentContentChangeEvent { range: None, range_length: None, text: "a\nb".into() };
        assert_eq!(line_after_change(&whole), None);
    }
}
