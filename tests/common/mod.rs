#![allow(dead_code)]
//! Shared helpers: generated tiny models (made once per test binary) and the
//! real default model.

use std::path::PathBuf;
use std::sync::OnceLock;
use wick::models::testgen::{write_model, ModelSpec};
use wick::documents::Encoding;
use wick::prompt::Family;

pub fn scratch_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("wick-tests-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    })
    .clone()
}

/// A tiny generated model of the family (deterministic; written once).
pub fn tiny_model(family: Family) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let p = scratch_dir().join(format!("tiny-{}.gguf", family.name()));
    if !p.exists() {
        write_model(&ModelSpec::tiny(family), &p).unwrap();
    }
    p
}

/// The real default model; CI fetches it with `models/fetch` first.
pub fn real_model() -> PathBuf {
    match wick::models::resolve(None) {
        Ok(p) => p,
        Err(e) => panic!("{e}. The real-model tests need it: run models/fetch"),
    }
}

pub fn wick_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wick"))
}
pub mod lsp;

/// LSP's lines: LF, CRLF and CR end a line, nothing else.
pub fn lsp_offset(text: &str, line: u32, col: u32, enc: Encoding) -> usize {
    let mut starts = vec![0];
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\n' => starts.push(i + 1),
            b'\r' if b.get(i + 1) == Some(&b'\n') => {
                starts.push(i + 2);
                i += 1;
            }
            b'\r' => starts.push(i + 1),
            _ => {}
        }
        i += 1;
    }
    let Some(&start) = starts.get(line as usize) else { return text.len() };
    let content = &text[start..];
    let content = &content[..content.find(['\n', '\r']).unwrap_or(content.len())];
    let mut units = 0;
    for (at, c) in content.char_indices() {
        if units >= col {
            return start + at;
        }
        units += match enc {
            Encoding::Utf16 => c.len_utf16() as u32,
            Encoding::Utf8 => c.len_utf8() as u32,
        };
    }
    start + content.len()
}
