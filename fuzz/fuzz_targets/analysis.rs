//! Syntax analysis and code-action planning on arbitrary text (raw bytes as
//! UTF-8, or code-like pieces) and byte ranges.
#![no_main]
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn input(u: &mut Unstructured) -> Result<(wick::syntax::Lang, usize, usize, String)> {
    let lang = *u.choose(&wick::testing::LANGS)?;
    let (a, b) = (u.int_in_range(0..=4096)?, u.int_in_range(0..=4096)?);
    let text = if u.arbitrary()? {
        let n = u.len();
        String::from_utf8_lossy(u.bytes(n)?).into_owned()
    } else {
        let mut s = String::new();
        while !u.is_empty() {
            s.push_str(u.choose(wick::testing::PIECES)?);
        }
        s
    };
    Ok((lang, a, b, text))
}

fuzz_target!(|data: &[u8]| {
    let Ok((lang, a, b, text)) = input(&mut Unstructured::new(data)) else { return };
    if let Err(e) = wick::testing::analysis(&text, lang, a, b) {
        panic!("{e}");
    }
});
