//! Mutated GGUF files (start from fuzz/corpus/gguf, a tiny generated
//! model): an error, never a panic. Run with `-malloc_limit_mb=64` (see
//! README) so that an allocation far beyond the file's size is a finding.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir();
    if let Err(e) = wick::testing::gguf(data, &dir) {
        panic!("{e}");
    }
});
