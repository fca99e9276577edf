//! Prompt building and post-processing on arbitrary documents, cursors and
//! model outputs.
#![no_main]
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

fn pieces(u: &mut Unstructured, most: usize) -> Result<String> {
    let mut s = String::new();
    for _ in 0..u.int_in_range(0..=most)? {
        s.push_str(u.choose(wick::testing::PIECES)?);
    }
    Ok(s)
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok((lang, cursor, fim, truncated)) = (|| {
        Ok::<_, libfuzzer_sys::arbitrary::Error>((
            *u.choose(&wick::testing::LANGS)?,
            u.int_in_range(0..=2048)?,
            u.arbitrary()?,
            u.arbitrary()?,
        ))
    })() else {
        return;
    };
    let (Ok(text), Ok(out)) = (pieces(&mut u, 200), pieces(&mut u, 40)) else { return };
    if let Err(e) = wick::testing::prompts(&text, lang, cursor, &out, fim, truncated) {
        panic!("{e}");
    }
});
