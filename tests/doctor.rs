//! `wick doctor` through the real binary: what it says about the model, the
//! device and an editor's configuration, with HOME and the model cache
//! pointed at scratch folders.

mod common;

use common::{scratch_dir, tiny_model, wick_bin};
use std::path::Path;
use std::process::Command;
use wick::prompt::Family;

fn doctor(home: &Path, args: &[&str]) -> String {
    let out = Command::new(wick_bin())
        .arg("doctor")
        .args(args)
        .env("HOME", home)
        .env("WICK_MODEL_DIR", home.join("models"))
        .env("PATH", home.join("bin"))
        .env_remove("WICK_THREADS")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn line<'a>(report: &'a str, label: &str) -> Vec<&'a str> {
    report.lines().filter(|l| l[3..].starts_with(&format!("{label} "))).collect()
}

#[test]
fn it_names_a_missing_model_and_describes_a_present_one() {
    let home = scratch_dir().join("doctor-model");
    std::fs::create_dir_all(home.join("bin")).unwrap();
    let r = doctor(&home, &[]);
    let model = line(&r, "model");
    assert!(model.len() == 1 && model[0].starts_with("!!") && model[0].contains("models/fetch"), "{r}");
    assert!(r.ends_with("problem found (lines marked !!)\n") || r.contains("problems found"), "{r}");
    let tiny = tiny_model(Family::QwenCoder);
    let r = doctor(&home, &["--model", tiny.to_str().unwrap()]);
    assert!(line(&r, "model")[0].starts_with("ok") && line(&r, "model")[0].contains("tiny-qwen2.5-coder.gguf"), "{r}");
    assert!(line(&r, "model file")[0].contains("architecture qwen2"), "{r}");
    assert!(line(&r, "fim")[0].starts_with("ok") && line(&r, "fim")[0].contains("<|fim_prefix|>"), "{r}");
    assert!(line(&r, "kernels")[0].contains("int8 matmul kernels"), "{r}");
    // A device this build cannot open: one line that says why.
    let r = doctor(&home, &["--model", tiny.to_str().unwrap(), "--device", "cuda:7"]);
    assert!(line(&r, "device")[0].starts_with("!!") && line(&r, "device")[0].contains("cuda"), "{r}");
}

#[test]
fn it_says_whether_vscode_runs_this_binary() {
    let home = scratch_dir().join("doctor-vscode");
    let settings = home.join(".config/Code/User");
    std::fs::create_dir_all(&settings).unwrap();
    std::fs::create_dir_all(home.join("bin")).unwrap();
    let tiny = tiny_model(Family::QwenCoder);
    let m = ["--model", tiny.to_str().unwrap(), "--editor", "vscode"];
    // No serverPath and no wick on PATH.
    let r = doctor(&home, &m);
    assert!(line(&r, "vscode")[0].starts_with("!!") && line(&r, "vscode")[0].contains("none on PATH"), "{r}");
    // wick on PATH (a link to this binary): fine.
    std::os::unix::fs::symlink(wick_bin(), home.join("bin/wick")).unwrap();
    let r = doctor(&home, &m);
    assert!(line(&r, "vscode")[0].starts_with("ok") && line(&r, "vscode")[0].contains("this binary"), "{r}");
    // serverPath (JSON with comments, as VS Code writes it) elsewhere.
    let other = home.join("old-wick");
    std::fs::write(&other, "#!/bin/sh\n").unwrap();
    let json =
        format!("{{\n  // wick\n  \"wick.serverPath\": \"{}\",\n  \"wick.enable\": false,\n}}\n", other.display());
    std::fs::write(settings.join("settings.json"), json).unwrap();
    let r = doctor(&home, &m);
    let v = line(&r, "vscode");
    assert!(v.iter().any(|l| l.starts_with("!!") && l.contains("not this binary")), "{r}");
    assert!(v.iter().any(|l| l.starts_with("!!") && l.contains("wick.enable is false")), "{r}");
}
