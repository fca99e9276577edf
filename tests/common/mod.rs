#![allow(dead_code)]
//! Shared helpers: generated tiny models (made once per test binary) and the
//! real default model.

use std::path::PathBuf;
use std::sync::OnceLock;
use wick::models::testgen::{write_model, ModelSpec};
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

#[allow(unused_imports)]
pub use wick::testing::lsp_offset;
