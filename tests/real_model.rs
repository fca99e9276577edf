//! Tests on the real default model (Qwen2.5-Coder-0.5B-Instruct Q4_K_M).
//! CI fetches it with `models/fetch`; one model is loaded per test binary.

mod common;

use candle_core::{Device, Tensor};
use common::{real_model, wick_bin};
use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};
use wick::engine::{LoadOptions, Request, Session};
use wick::prompt::{Family, FimOrder};

fn session() -> std::sync::MutexGuard<'static, Session> {
    static S: OnceLock<Mutex<Session>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(Session::load(&real_model(), &Device::Cpu, &LoadOptions::default()).unwrap()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

const CODE: &str =
    "import os\n\ndef read_lines(path):\n    with open(path) as f:\n        return [l.rstrip() for l in f]\n";

#[test]
fn logits_match_candle_transformers_on_the_real_file() {
    use candle_transformers::models::quantized_qwen2::ModelWeights;
    let path = real_model();
    let mut s = session();
    let ids = s.tokenizer.encode(CODE).unwrap();
    assert!(ids.len() > 20);
    let mut f = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let mut reference = ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let want = reference.forward(&input, 0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();

    s.reset();
    let whole = s.decoder.forward(&ids).unwrap();
    // Truncate-then-extend: other tokens after a shared prefix, rewind, extend.
    s.reset();
    let mut other = ids[..10].to_vec();
    other.extend(s.tokenizer.encode("class Foo:\n    pass").unwrap());
    s.decoder.forward(&other).unwrap();
    s.decoder.truncate(10);
    s.decoder.forward(&ids[10..ids.len() - 3]).unwrap();
    let mut ext = Vec::new();
    for &t in &ids[ids.len() - 3..] {
        ext = s.decoder.forward(&[t]).unwrap();
    }
    s.reset();
    let scale = want.iter().map(|x| x.abs()).fold(0.0, f32::max);
    let argmax = |v: &[f32]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    for (name, got) in [("whole prompt", &whole), ("truncate-then-extend", &ext)] {
        let d = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        eprintln!("{name}: max abs diff {d:.4}, logit scale {scale:.2}");
        assert!(d < 0.05 * scale, "{name}: max abs diff {d} (scale {scale})");
        assert_eq!(argmax(got), argmax(&want), "{name}: argmax differs");
    }
}

#[test]
fn tokenizer_round_trips_and_fim_tokens_are_single_ids() {
    let s = session();
    for text in [
        CODE,
        "fn main() {\r\n\tlet s = \"🦀 漢字 한국어 \u{200d}\";\r\n}",
        "    \t  \n\n\u{feff}x = 1  # ≠ ≤ 𝔘",
        "<|fim_prefix|><|endoftext|> as text",
    ] {
        let ids = s.tokenizer.encode(text).unwrap();
        assert_eq!(s.tokenizer.decode(&ids), text);
    }
    assert_eq!(s.family, Some(Family::QwenCoder));
    for t in Family::QwenCoder.all_special_tokens() {
        let id = s.tokenizer.require(t).unwrap();
        assert!(s.tokenizer.is_special(id), "{t}");
    }
    assert_eq!(s.tokenizer.require("<|fim_prefix|>").unwrap(), 151659);
}

#[test]
fn fim_completes_a_missing_python_body_that_parses() {
    let mut s = session();
    let prefix = "def is_palindrome(text: str) -> bool:\n    \"\"\"Return True if text reads the same forwards and backwards.\"\"\"\n";
    let suffix = "\n\nif __name__ == \"__main__\":\n    print(is_palindrome(\"level\"))\n";
    let mut req = Request::new(Family::QwenCoder.fim(prefix, suffix, FimOrder::Psm));
    req.max_tokens = 64;
    let g = s.generate(&req, &AtomicBool::new(false)).unwrap();
    eprintln!("completion: {:?} ({:?}, {} tokens)", g.text, g.stop, g.generated_tokens);
    assert!(g.text.contains("return"), "no return statement: {:?}", g.text);
    let program = format!("{prefix}{}{suffix}", g.text);
    let out = std::process::Command::new("python3")
        .args(["-c", "import ast,sys; ast.parse(sys.stdin.read())"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(program.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "does not parse:\n{program}\n{}", String::from_utf8_lossy(&out.stderr));
    // And it runs: the palindrome check is right for "level".
    let run = std::process::Command::new("python3").args(["-c", &program]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "True", "{program}");
}

#[test]
fn typing_reuses_the_kv_cache() {
    let mut s = session();
    let no = AtomicBool::new(false);
    let prefix = "def add(a, b):\n    ";
    let suffix = "\n\nprint(add(1, 2))\n";
    let mut req = Request::new(Family::QwenCoder.fim(prefix, suffix, FimOrder::Spm));
    req.max_tokens = 4;
    s.generate(&req, &no).unwrap();
    // One more character typed: SPM keeps suffix and most of the prefix.
    let mut req2 = Request::new(Family::QwenCoder.fim(&format!("{prefix}r"), suffix, FimOrder::Spm));
    req2.max_tokens = 4;
    let g = s.generate(&req2, &no).unwrap();
    assert!(g.reused_tokens + 4 >= g.prompt_tokens, "reused {} of {}", g.reused_tokens, g.prompt_tokens);
}

#[test]
fn cli_complete_prints_only_the_completion_on_stdout() {
    let out = std::process::Command::new(wick_bin())
        .args(["complete", "examples/stats.py:14:5", "--max-tokens", "24"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.trim().is_empty());
    assert!(!stdout.contains("wick:"), "diagnostics leaked to stdout: {stdout}");
    assert!(stderr.contains("prefill") && stderr.contains("tok/s"), "{stderr}");
}

/// README's first command: the editor's answer (the one pipeline), which
/// is the rest of `variance` and nothing after it, and the file parses
/// with it.
#[test]
fn cli_complete_stops_at_the_end_of_the_function_and_parses() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stats.py");
    let out = std::process::Command::new(wick_bin())
        .args(["complete", &format!("{}:14:5", file.display())])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let got = String::from_utf8_lossy(&out.stdout).trim_end().to_string();
    assert!(!got.is_empty(), "no completion: {stderr}");
    assert!(!got.contains("def "), "went past the end of the function: {got:?}");
    let text = std::fs::read_to_string(&file).unwrap();
    let at = wick::offset_of(&text, 14, 5).unwrap();
    let with = format!("{}{}{}", &text[..at], got, &text[at..]);
    assert_eq!(wick::syntax::error_count(wick::syntax::Lang::Python, &with), 0, "does not parse:\n{with}");
    // The variance needs the mean `m` it just computed.
    assert!(got.contains('m'), "{got:?}");
}

/// A fixed subset of the real-code benchmark runs through the pipeline and
/// scores (what it scores is measured in docs/benchmarks.md, not here).
#[test]
fn real_code_subset_runs_and_scores() {
    use wick::cli::real_code::{default_cases, load, run_case, select, Variant};
    let set = load(&default_cases()).unwrap();
    assert!(set.cases.len() >= 6 * 50, "the frozen set has {} cases", set.cases.len());
    let langs: std::collections::BTreeSet<&str> = set.cases.iter().map(|c| c.lang.as_str()).collect();
    assert!(langs.len() >= 6, "{langs:?}");
    let engine = wick::engine::Engine::load(real_model(), Device::Cpu, LoadOptions::default());
    engine.wait_ready().unwrap();
    // Three languages, a small prompt budget: this checks the plumbing, fast.
    let three: Vec<String> = ["python", "rust", "go"].iter().map(|s| s.to_string()).collect();
    let cases = select(&set, Some(1), 0, &three, &[]);
    assert_eq!(cases.len(), 3);
    for v in ["naive", "contextTokens=384"] {
        let v = Variant::parse(v).unwrap();
        let scored: Vec<_> = cases.iter().map(|c| run_case(&engine, &set, c, &v)).collect();
        for s in &scored {
            assert!((0.0..=1.0).contains(&s.similarity), "{s:?}");
            assert_eq!(s.exact, !s.got.trim().is_empty() && s.similarity == 1.0, "{s:?}");
            assert!(s.empty.is_some() == s.got.trim().is_empty() || v.naive, "{s:?}");
        }
        let report = wick::cli::real_code::report(&v.name, &scored);
        assert!(report.contains("exact=") && report.contains("empty reasons"), "{report}");
    }
}

/// Typing four lines into large real files (one per language of the
/// real-code set, windows cut blind, as for a language without a grammar):
/// each keystroke's prompt, in the model's own tokens, shares all but what
/// was typed with the one before, except where the window's start moved a
/// grid step. A start cut at a character budget moved every line or two,
/// and each move is a cold prefill of the whole prompt.
#[test]
fn typing_keeps_the_prompt_start_on_real_files() {
    use wick::cli::real_code::{default_cases, load};
    let set = load(&default_cases()).unwrap();
    let s = session();
    let info = s.info();
    let cfg = wick::config::Config { prompt: wick::config::PromptMode::Prefix, ..Default::default() };
    let typed = "    let value = compute(&input, options.limit);\n    if value > 3 {\n        return Err(Error::TooLarge(value));\n    }\n";
    let mut langs = std::collections::BTreeSet::new();
    for c in &set.cases {
        let text = &set.files[c.file].text;
        if c.kind != "line_start" || c.cursor < 20_000 || !langs.insert(c.lang.clone()) {
            continue;
        }
        let mut rope = ropey::Rope::from_str(&set.document(c));
        let mut prev: Vec<u32> = Vec::new();
        let mut cold = 0;
        for (at, ch) in (rope.byte_to_char(c.cursor)..).zip(typed.chars()) {
            rope.insert_char(at, ch);
            let cursor = at + 1;
            let input = wick::complete::Input {
                rope: &rope,
                cursor,
                lang: None,
                parsed: None,
                path: "",
                repo_name: "",
                others: &[],
            };
            let stages = wick::complete::Stages::default();
            let plan = wick::complete::plan(&input, &cfg, info.family, info.tokens.as_ref(), stages).unwrap();
            let ids = s.encode_prompt(&plan.request.prompt).unwrap();
            assert!(ids.len() <= cfg.context_tokens, "{}: {} tokens", c.id, ids.len());
            let shared = ids.iter().zip(&prev).take_while(|(a, b)| a == b).count();
            if !prev.is_empty() && ids.len() - shared > 32 {
                cold += 1;
            }
            prev = ids;
        }
        assert!(cold <= 1, "{} ({} bytes): {cold} cold prompts in {} keystrokes", c.id, text.len(), typed.len());
    }
    assert!(langs.len() >= 5, "{langs:?}");
}
