//! Versioned edit batches (any order, gaps, every line-break kind, astral
//! characters, out-of-range positions, both encodings) against LSP's line
//! rules; the incremental tree equals a full parse.
#![no_main]
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use wick::workspace::documents::{Change, Encoding, Pos};

fn text(u: &mut Unstructured, most: usize) -> Result<String> {
    let n = u.int_in_range(0..=most)?;
    let mut s = String::new();
    for _ in 0..n {
        s.push_str(u.choose(wick::testing::PIECES)?);
    }
    Ok(s)
}

fn pos(u: &mut Unstructured) -> Result<Pos> {
    Ok(Pos { line: u.int_in_range(0..=12)?, col: u.int_in_range(0..=14)? })
}

fn input(u: &mut Unstructured) -> Result<(String, Vec<wick::testing::Batch>, Encoding)> {
    let enc = if u.arbitrary()? { Encoding::Utf8 } else { Encoding::Utf16 };
    let initial = text(u, 60)?;
    let mut batches = Vec::new();
    for _ in 0..u.int_in_range(0..=10)? {
        let version = u.int_in_range(0..=14)?;
        let mut changes = Vec::new();
        for _ in 0..u.int_in_range(1..=3)? {
            let range = if u.ratio(1, 20)? { None } else { Some((pos(u)?, pos(u)?)) };
            changes.push(Change { range, text: text(u, 6)? });
        }
        batches.push((version, changes));
    }
    Ok((initial, batches, enc))
}

fuzz_target!(|data: &[u8]| {
    let Ok((initial, batches, enc)) = input(&mut Unstructured::new(data)) else { return };
    if let Err(e) = wick::testing::documents(&initial, &batches, enc) {
        panic!("{e}");
    }
});
