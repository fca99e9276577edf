//! Byte arithmetic on UTF-8 text that never slices inside a character:
//! every offset is clamped to the text and floored to a char boundary
//! before it is used, so a position from anywhere (another server's
//! diagnostic, a model's output, a fuzzer) cannot panic.

/// Largest char boundary `<= i`, clamped to the text.
pub(crate) fn floor_char(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Start of the line holding byte `b`.
pub(crate) fn line_start(text: &str, b: usize) -> usize {
    let b = floor_char(text, b);
    text[..b].rfind('\n').map_or(0, |i| i + 1)
}

/// End of the line holding byte `b`, after its '\n' (or the text's end).
pub(crate) fn line_end(text: &str, b: usize) -> usize {
    let b = floor_char(text, b);
    text[b..].find('\n').map_or(text.len(), |i| b + i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_inside_a_character_are_floored() {
        let t = "aé\n€x\n𝄞";
        for b in 0..=t.len() + 3 {
            let (s, e) = (line_start(t, b), line_end(t, b));
            assert!(t.is_char_boundary(s) && t.is_char_boundary(e) && s <= e, "{b}: {s}..{e}");
            assert!(t.is_char_boundary(floor_char(t, b)));
        }
        assert_eq!((line_start(t, 2), line_end(t, 2)), (0, 4));
        assert_eq!((line_start(t, 5), line_end(t, 5)), (4, 9));
        assert_eq!((line_start(t, 11), line_end(t, 11)), (9, t.len()));
    }
}
