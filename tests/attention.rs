//! The fused CPU attention (`engine::cpu::attention`, the default on the
//! CPU) against candle's matmuls and softmax over a masked score matrix, on
//! a tiny generated model and on the real default model file: whole
//! prompts, prefill in chunks, truncate-then-extend, and decode steps.

mod common;

use candle_core::Device;
use common::tiny_model;
use wick::engine::{Decoder, LoadOptions};
use wick::models::gguf::GgufFile;
use wick::prompt::Family;

fn decoder(path: &std::path::Path, fused: bool) -> Decoder {
    let mut d = Decoder::load(&mut GgufFile::open(path).unwrap(), &Device::Cpu, &LoadOptions::default()).unwrap();
    d.set_fused_attention(fused);
    d
}

/// Logits after each step of a schedule: prefill chunks, a truncation and
/// re-extension, then single-token decode steps.
fn run(d: &mut Decoder, ids: &[u32], chunk: usize) -> Vec<Vec<f32>> {
    let n = ids.len();
    let mut out = Vec::new();
    let head = n * 3 / 4;
    for c in ids[..head].chunks(chunk) {
        out.push(d.forward(c).unwrap());
    }
    // Back up a few positions (an edit), then extend past them again.
    d.truncate(head - 5);
    out.push(d.forward(&ids[head - 5..head + 3]).unwrap());
    for &t in &ids[head + 3..] {
        out.push(d.forward(&[t]).unwrap());
    }
    out
}

/// The two paths at every step of the schedule: logits within `tol` of the
/// largest (activations are quantized to int8 before each matmul, so a
/// last-bit difference can flip a rounding: on the real model the two paths
/// are each ~2% from candle-transformers' own implementation), and the same
/// greedy token wherever candle's best logit leads the fused path's choice
/// by more than `tie` of the largest logit (a near-tie can go either way:
/// on the real model such flips had margins under 0.25%).
fn compare(path: &std::path::Path, ids: &[u32], chunks: &[usize], tol: f32, tie: f32, what: &str) {
    for &chunk in chunks {
        let a = run(&mut decoder(path, true), ids, chunk);
        let b = run(&mut decoder(path, false), ids, chunk);
        assert_eq!(a.len(), b.len());
        let mut differ = Vec::new();
        for (step, (x, y)) in a.iter().zip(&b).enumerate() {
            let d = x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
            let scale = y.iter().map(|v| v.abs()).fold(0f32, f32::max);
            assert!(scale > 0.1, "{what}: degenerate logits");
            assert!(d <= tol * scale, "{what}, chunks of {chunk}, step {step}: max abs diff {d} vs scale {scale}");
            let am = |v: &[f32]| v.iter().enumerate().max_by(|p, q| p.1.total_cmp(q.1)).unwrap().0;
            if am(x) != am(y) {
                differ.push((step, (y[am(y)] - y[am(x)]) / scale));
            }
        }
        assert!(
            differ.iter().all(|&(_, margin)| margin <= tie),
            "{what}, chunks of {chunk}: greedy tokens differ beyond near-ties (step, margin / scale): {differ:?}"
        );
    }
}

#[test]
fn fused_attention_matches_candle_on_a_tiny_model() {
    let path = tiny_model(Family::QwenCoder);
    let ids: Vec<u32> = (0..150u32).map(|i| (i * 37 + 11) % 300).collect();
    // A whole prompt at once, chunks not a multiple of the kernel's tiles.
    compare(&path, &ids, &[150, 64, 17], 0.02, 0.0, "tiny model");
}

#[test]
fn fused_attention_matches_candle_on_the_real_model() {
    let path = common::real_model();
    let file = GgufFile::open(&path).unwrap();
    let tok = wick::models::tokenizer::Tokenizer::from_gguf(&file.content).unwrap();
    // Real code, frozen (the head of an earlier decoder.rs): a prompt that
    // changed with every edit of a source file would move its near-ties.
    let text = include_str!("data/decoder-head.rs.txt");
    let ids = tok.encode(text).unwrap();
    let ids = &ids[..ids.len().min(400)];
    compare(&path, ids, &[256], 0.06, 0.01, "real model");
}
