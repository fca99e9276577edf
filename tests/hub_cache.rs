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

/// A remote backend's `tokenizer: "owner/repo"` takes that repository's
/// `tokenizer.json` from the local hub cache (offline), and its vocabulary
/// names the FIM format.
#[test]
fn a_remote_backends_tokenizer_json_resolves_from_the_offline_cache() {
    // The same cache root as the other test: they set the same variables.
    let root = scratch_dir().join("hf-cache");
    let repo = root.join("models--wick-test--house-coder");
    let sha = "89abcdef0123456789abcdef0123456789abcdef";
    let snap = repo.join("snapshots").join(sha);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), sha).unwrap();
    let special = |id: u32, t: &str| {
        serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                           "normalized": false, "special": true})
    };
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": [special(0, "<|fim_prefix|>"), special(1, "<|fim_suffix|>"), special(2, "<|fim_middle|>"),
                         special(3, "<|endoftext|>")],
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "unk_token": "[UNK]",
                  "vocab": {"<|fim_prefix|>": 0, "<|fim_suffix|>": 1, "<|fim_middle|>": 2, "<|endoftext|>": 3,
                            "x": 4, "=": 5, "[UNK]": 6}}
    });
    std::fs::write(snap.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::env::set_var("HF_HUB_CACHE", &root);
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let v = wick::engine::remote::Vocab::resolve("wick-test/house-coder").unwrap();
    assert_eq!(v.family(), Some(Family::QwenCoder));
    let e = wick::engine::remote::Vocab::resolve("wick-test/not-cached").err().expect("offline, not cached");
    assert!(e.contains("HF_HUB_OFFLINE"), "{e}");
}
