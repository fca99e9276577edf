//! Hugging Face hub references resolve from the local hub cache, offline,
//! through the `hf-hub` crate (the hub itself is unreachable in CI).

mod common;

use common::{scratch_dir, tiny_model};
use wick::prompt::Family;

#[test]
fn hub_reference_resolves_from_the_offline_cache() {
    let root = scratch_dir().join("hf-cache");
    let repo = root.join("models--wick-test--tiny-coder-GGUF");
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(sha);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), sha).unwrap();
    std::fs::copy(tiny_model(Family::QwenCoder), snap.join("tiny-q8.gguf")).unwrap();
    std::env::set_var("HF_HUB_CACHE", &root);
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let p = wick::models::resolve(Some("wick-test/tiny-coder-GGUF:tiny-q8.gguf")).unwrap();
    assert_eq!(p, snap.join("tiny-q8.gguf"));
    // With a single GGUF in the cached snapshot the file name may be omitted.
    let p = wick::models::resolve(Some("wick-test/tiny-coder-GGUF")).unwrap();
    assert_eq!(p, snap.join("tiny-q8.gguf"));
    // Missing file while offline: a clear error, no network attempt.
    let e = wick::models::resolve(Some("wick-test/tiny-coder-GGUF:other.gguf")).unwrap_err().to_string();
    assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
    // The resolved file really loads.
    let s = wick::engine::Session::load(&p, &candle_core::Device::Cpu, &Default::default()).unwrap();
    assert_eq!(s.family, Some(Family::QwenCoder));
}

#[test]
fn missing_default_model_names_the_fetch_command() {
    std::env::set_var("WICK_MODEL_DIR", scratch_dir().join("empty-model-dir"));
    let e = wick::models::resolve(None).unwrap_err().to_string();
    assert!(e.contains("models/fetch"), "{e}");
}
