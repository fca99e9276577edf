//! Truncated, foreign and hostile model files: a one-line error naming the
//! file and the problem; never a panic or a huge allocation.

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::{scratch_dir, tiny_model, wick_bin};
use std::path::{Path, PathBuf};
use wick::engine::{LoadOptions, Session};
use wick::prompt::Family;

fn load_err(path: &Path) -> String {
    match Session::load(path, &Device::Cpu, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    }
}

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch_dir().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn one_line_naming(err: &str, path: &Path, what: &str) {
    assert!(!err.contains('\n'), "multi-line error: {err}");
    assert!(err.contains(&path.display().to_string()), "error does not name the file: {err}");
    assert!(err.to_lowercase().contains(what), "error does not say '{what}': {err}");
}

#[test]
fn truncated_file() {
    let good = std::fs::read(tiny_model(Family::QwenCoder)).unwrap();
    for (name, cut) in [("trunc-data.gguf", good.len() - 100), ("trunc-header.gguf", 200), ("trunc-tiny.gguf", 30)] {
        let p = write(name, &good[..cut]);
        let e = load_err(&p);
        one_line_naming(&e, &p, if cut > 1000 { "truncated" } else { "" });
    }
}

#[test]
fn not_a_gguf_file() {
    let p = write("text.gguf", b"this is a python file, not a model\n".repeat(10).as_slice());
    one_line_naming(&load_err(&p), &p, "not a gguf file");
    let empty = write("empty.gguf", b"");
    one_line_naming(&load_err(&empty), &empty, "too short");
    let missing = scratch_dir().join("does-not-exist.gguf");
    one_line_naming(&load_err(&missing), &missing, "cannot open");
}

fn small_gguf(name: &str, arch: &str, dtype: GgmlDType) -> PathBuf {
    let p = scratch_dir().join(name);
    let t = QTensor::quantize(&Tensor::ones((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(), dtype).unwrap();
    let arch_v = Value::String(arch.into());
    let mut f = std::fs::File::create(&p).unwrap();
    gguf_file::write(&mut f, &[("general.architecture", &arch_v)], &[("token_embd.weight", &t)]).unwrap();
    p
}

#[test]
fn unsupported_architecture() {
    let p = small_gguf("mamba.gguf", "mamba", GgmlDType::F32);
    let err = match wick::engine::Decoder::load(
        &mut wick::models::gguf::GgufFile::open(&p).unwrap(),
        &Device::Cpu,
        &LoadOptions::default(),
    ) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    };
    one_line_naming(&err, &p, "unsupported architecture 'mamba'");
}

/// A GGUF v3 header built by hand, for fields no writer would produce.
fn header(tensors: u64, kvs: u64, body: &[u8]) -> Vec<u8> {
    let mut v = b"GGUF".to_vec();
    v.extend(3u32.to_le_bytes());
    v.extend(tensors.to_le_bytes());
    v.extend(kvs.to_le_bytes());
    v.extend(body);
    v.resize(v.len() + 256, 0);
    v
}

fn tensor_info(name: &str, dims: &[u64], dtype: u32) -> Vec<u8> {
    let mut v = (name.len() as u64).to_le_bytes().to_vec();
    v.extend(name.as_bytes());
    v.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        v.extend(d.to_le_bytes());
    }
    v.extend(dtype.to_le_bytes());
    v.extend(0u64.to_le_bytes());
    v
}

#[test]
fn unsupported_quantization_type() {
    // ggml type 16 is IQ2_XXS.
    let p = write("iq2.gguf", &header(1, 0, &tensor_info("token_embd.weight", &[256, 4], 16)));
    one_line_naming(&load_err(&p), &p, "unsupported quantization");
}

#[test]
fn hostile_headers() {
    let huge_string = {
        let mut b = u64::MAX.to_le_bytes().to_vec();
        b.extend(b"key");
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("many-tensors.gguf", header(1 << 40, 0, &[])),
        ("many-kvs.gguf", header(0, u64::MAX, &[])),
        ("huge-string.gguf", header(0, 1, &huge_string)),
        ("huge-dims.gguf", header(1, 0, &tensor_info("token_embd.weight", &[1 << 40, 1 << 40], 0))),
        ("many-dims.gguf", header(1, 0, &tensor_info("x", &[1; 1000], 0))),
        ("past-end.gguf", header(1, 0, &tensor_info("token_embd.weight", &[1 << 20, 1 << 10], 0))),
    ];
    for (name, bytes) in cases {
        let p = write(name, &bytes);
        let e = load_err(&p);
        one_line_naming(&e, &p, "");
    }
}

#[test]
fn the_cli_prints_one_line_and_exits_nonzero() {
    let bad = write("cli-bad.gguf", b"GGUF\x03\x00\x00\x00garbage");
    let src = write("cli.py", b"def f():\n    pass\n");
    let out = std::process::Command::new(wick_bin())
        .args(["complete", &format!("{}:2:5", src.display()), "--model", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "stderr: {err}");
    assert!(err.contains("cli-bad.gguf"), "{err}");
    // A CUDA device on a CPU build is a one-line error too.
    if !cfg!(feature = "cuda") {
        let out = std::process::Command::new(wick_bin())
            .args(["complete", &format!("{}:2:5", src.display()), "--device", "cuda"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("without the `cuda` feature"), "{err}");
        assert_eq!(err.trim().lines().count(), 1);
    }
}
