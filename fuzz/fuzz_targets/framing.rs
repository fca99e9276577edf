//! Arbitrary bytes into the framing filter: what reaches tower-lsp-server
//! is well framed, one JSON-RPC message per frame, output bounded.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = wick::testing::framing(data) {
        panic!("{e}");
    }
});
