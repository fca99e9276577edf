//! Property tests (proptest, fixed seed, bounded cases): framing,
//! documents, syntax analysis and code-action planning, prompt building and
//! post-processing, GGUF headers, on arbitrary input. The checks
//! themselves are `wick::testing`'s, which the cargo-fuzz targets in
//! `fuzz/` run for longer (docs/reliability.md).

mod common;

use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, RngSeed};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use wick::workspace::documents::{Change, Encoding, Pos};

/// Counts the bytes allocated at once, for the GGUF check's bound.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn config(cases: u32) -> PtConfig {
    PtConfig { cases, rng_seed: RngSeed::Fixed(0x005e_ed0f_17c6), failure_persistence: None, ..PtConfig::default() }
}

/// Text from `wick::testing::PIECES`: line breaks of every kind, astral
/// and combining characters, code-like tokens.
fn text_piece() -> impl Strategy<Value = &'static str> {
    prop::sample::select(wick::testing::PIECES)
}

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(text_piece(), 0..60).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
struct Edit {
    range: Option<(Pos, Pos)>,
    text: String,
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = (0u32..12, 0u32..14).prop_map(|(line, col)| Pos { line, col });
    (prop::option::weighted(0.95, (pos.clone(), pos)), prop::collection::vec(text_piece(), 0..6))
        .prop_map(|(range, t)| Edit { range, text: t.concat() })
}

proptest! {
    #![proptest_config(config(256))]

    /// Versioned edit sequences (gaps and reordering included) against a
    /// reference that follows LSP's line rules; the incremental tree equals
    /// a full parse of the final text.
    #[test]
    fn documents_follow_lsp_line_rules(
        initial in text(),
        edits in prop::collection::vec(prop::collection::vec(edit(), 1..3), 1..10),
        utf8 in any::<bool>(),
        order in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        gap in any::<bool>(),
    ) {
        let enc = if utf8 { Encoding::Utf8 } else { Encoding::Utf16 };
        let mut batches: Vec<(i32, Vec<Change>)> = edits
            .into_iter()
            .enumerate()
            .map(|(i, b)| (i as i32 + 2 + i32::from(gap && i > 0), b.into_iter().map(|e| Change { range: e.range, text: e.text }).collect()))
            .collect();
        // Later versions first: they wait for the ones before them.
        for ix in order {
            let (a, b) = (ix.index(batches.len()), ix.index(batches.len()).saturating_sub(1));
            batches.swap(a, b);
        }
        wick::testing::documents(&initial, &batches, enc).map_err(TestCaseError::fail)?;
    }

    /// Syntax analysis, known repairs, fix regions, empty bodies and action
    /// context on arbitrary text and byte ranges never panic, and regions
    /// are whole characters of the text.
    #[test]
    fn analysis_and_fix_planning_never_panic(
        t in text(), lang in prop::sample::select(wick::testing::LANGS.to_vec()),
        a in 0usize..400, b in 0usize..400,
    ) {
        wick::testing::analysis(&t, lang, a, b).map_err(TestCaseError::fail)?;
    }

    /// Prompt building and post-processing on arbitrary documents, cursors
    /// and model outputs never panic.
    #[test]
    fn prompts_and_cleaning_never_panic(
        t in text(), lang in prop::sample::select(wick::testing::LANGS.to_vec()),
        cursor in 0usize..400, out in text(), fim in any::<bool>(), truncated in any::<bool>(),
    ) {
        wick::testing::prompts(&t, lang, cursor, &out, fim, truncated).map_err(TestCaseError::fail)?;
    }
}

/// Frames and garbage: valid messages, bodies that are not JSON or not one
/// JSON-RPC message, bad or missing lengths, truncated frames.
fn stream_piece() -> impl Strategy<Value = Vec<u8>> {
    let frame = |body: String| format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes();
    prop_oneof![
        Just(frame(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#.into())),
        Just(frame(r#"{"jsonrpc":"2.0","method":"initialized","params":{}}"#.into())),
        Just(frame(r#"[{"jsonrpc":"2.0","method":"initialized"}]"#.into())),
        Just(frame(r#"{"jsonrpc":"2.0","id":{"a":1},"method":"x"}"#.into())),
        Just(frame(r#"{"jsonrpc":"2.0","params":{}}"#.into())),
        Just(frame("{not json".into())),
        Just(b"Content-Length: 99999999999\r\n\r\n".to_vec()),
        Just(b"Content-Length: -1\r\n\r\n{}".to_vec()),
        Just(b"Content-Type: x\r\n\r\n".to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
        "[ -~\r\n]{0,40}".prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// Whatever the bytes, what reaches tower-lsp-server is well framed and
    /// decodes as one JSON-RPC message, one frame per header block at most.
    #[test]
    fn framing_passes_only_single_messages(pieces in prop::collection::vec(stream_piece(), 0..12)) {
        wick::testing::framing(&pieces.concat()).map_err(TestCaseError::fail)?;
    }
}

/// A tiny generated model (145 KB, valid: what the mutations start from).
fn gguf_seed() -> Vec<u8> {
    static SEED: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SEED.get_or_init(|| std::fs::read(common::tiny_model(wick::prompt::Family::QwenCoder)).unwrap()).clone()
}

#[derive(Debug, Clone)]
enum Mutation {
    Byte(prop::sample::Index, u8),
    /// A little-endian u64 written over 8 bytes (lengths, counts, offsets).
    Word(prop::sample::Index, u64),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let word = prop_oneof![Just(0u64), Just(1), Just(u32::MAX as u64), Just(u64::MAX), Just(1 << 40), any::<u64>()];
    prop_oneof![
        6 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        3 => (any::<prop::sample::Index>(), word).prop_map(|(i, w)| Mutation::Word(i, w)),
        1 => any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #![proptest_config(config(128))]

    /// Mutated GGUF headers (bytes, length and offset words, truncation)
    /// are errors, never panics, and reading one never holds more than a
    /// small multiple of the file's size (plus the reader's 1 MiB buffer).
    #[test]
    fn mutated_gguf_headers_are_errors_within_bounded_memory(muts in prop::collection::vec(mutation(), 1..6)) {
        let mut bytes = gguf_seed();
        // Most mutations land in the header (the first 4 KiB): that is
        // where the lengths and counts are.
        for m in muts {
            let header = bytes.len().min(4096);
            match m {
                Mutation::Byte(i, b) if header > 0 => bytes[i.index(header)] = b,
                Mutation::Word(i, w) if header >= 8 => {
                    let at = i.index(header - 7);
                    bytes[at..at + 8].copy_from_slice(&w.to_le_bytes());
                }
                Mutation::Truncate(i) if !bytes.is_empty() => bytes.truncate(i.index(bytes.len())),
                _ => {}
            }
        }
        let dir = common::scratch_dir();
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        wick::testing::gguf(&bytes, &dir).map_err(TestCaseError::fail)?;
        // What stays allocated after (a one-time cache: symbolizing the
        // first error's backtrace keeps ~100 MB) is not the file's doing;
        // an allocation a forged header drives is transient: the peak.
        let after = LIVE.load(Ordering::Relaxed);
        let held = PEAK.load(Ordering::Relaxed).saturating_sub(before.max(after));
        // Other tests run on other threads of this binary: their
        // allocations count too, so the bound is generous but finite.
        prop_assert!(held <= 8 * bytes.len() + (4 << 20) + (64 << 20), "{held} bytes held for a {}-byte file", bytes.len());
    }
}
