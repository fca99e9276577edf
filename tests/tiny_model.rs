//! Decoder, tokenizer, prompts and engine on tiny generated models: fast and
//! deterministic, no model download needed.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use common::tiny_model;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use wick::engine::{Decoder, Engine, EngineError, LoadOptions, Request, Session, StopReason};
use wick::models::gguf::GgufFile;
use wick::models::tokenizer::Tokenizer;
use wick::prompt::{self, Family, FimOrder};

fn reference_logits(path: &std::path::Path, ids: &[u32]) -> Vec<f32> {
    let mut f = std::fs::File::open(path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut f).unwrap();
    let mut m = ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap();
    let input = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    m.forward(&input, 0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn ours(path: &std::path::Path) -> Decoder {
    let mut file = GgufFile::open(path).unwrap();
    Decoder::load(&mut file, &Device::Cpu, &LoadOptions::default()).unwrap()
}

/// Max abs difference, and the largest reference logit for scale.
fn diff(a: &[f32], b: &[f32]) -> (f32, f32) {
    assert_eq!(a.len(), b.len());
    let d = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    let s = b.iter().map(|x| x.abs()).fold(0.0, f32::max);
    (d, s)
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    let (d, s) = diff(a, b);
    assert!(s > 0.1, "{what}: degenerate logits");
    assert!(d <= 0.02 * s, "{what}: max abs diff {d} vs scale {s}");
    let am = |v: &[f32]| v.iter().enumerate().max_by(|x, y| x.1.total_cmp(y.1)).unwrap().0;
    assert_eq!(am(a), am(b), "{what}: argmax differs");
}

fn prompt_ids(n: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37 + 11) % 300).collect()
}

#[test]
fn logits_match_candle_transformers_for_a_whole_prompt() {
    let path = tiny_model(Family::QwenCoder);
    for n in [1usize, 7, 40] {
        let ids = prompt_ids(n);
        let mut d = ours(&path);
        let a = d.forward(&ids).unwrap();
        let b = reference_logits(&path, &ids);
        assert_close(&a, &b, &format!("{n} tokens"));
    }
}

#[test]
fn logits_match_after_truncate_then_extend() {
    let path = tiny_model(Family::QwenCoder);
    let ids = prompt_ids(30);
    let mut d = ours(&path);
    // Fill the cache with a different continuation, then rewind and extend.
    let mut other = ids[..12].to_vec();
    other.extend(prompt_ids(50)[30..48].iter().copied());
    d.forward(&other).unwrap();
    d.truncate(12);
    assert_eq!(d.cache_len(), 12);
    // Extend token by token for a while (decode path), then in one batch.
    for i in 12..18 {
        d.forward(&ids[i..i + 1]).unwrap();
    }
    let a = d.forward(&ids[18..]).unwrap();
    let b = reference_logits(&path, &ids);
    assert_close(&a, &b, "truncate-then-extend");
    // And a batched prompt equals the same prompt fed token by token.
    let mut e = ours(&path);
    let mut last = Vec::new();
    for &t in &ids {
        last = e.forward(&[t]).unwrap();
    }
    assert_close(&last, &b, "token by token");
}

#[test]
fn the_gpu_layout_matches_on_the_cpu_too() {
    // What GPUs run by default: weights dequantized at load, q/k/v and
    // gate/up stacked, the attention scale folded into the queries, the
    // causal mask built on the device, f16 activations.
    let path = tiny_model(Family::QwenCoder);
    let ids = prompt_ids(40);
    let b = reference_logits(&path, &ids);
    for dtype in [DType::F32, DType::F16] {
        let opts = LoadOptions { repack: false, dense_prefill: false, dtype, dense_weights: true };
        let mut d = Decoder::load(&mut GgufFile::open(&path).unwrap(), &Device::Cpu, &opts).unwrap();
        d.forward(&ids[..25]).unwrap();
        d.truncate(20);
        d.forward(&ids[20..30]).unwrap();
        let mut a = Vec::new();
        for i in 30..40 {
            a = d.forward(&ids[i..i + 1]).unwrap();
        }
        assert_close(&a, &b, &format!("{dtype:?} dense"));
    }
}

#[test]
fn tokenizer_round_trips_awkward_text() {
    let path = tiny_model(Family::QwenCoder);
    let file = GgufFile::open(&path).unwrap();
    let tok = Tokenizer::from_gguf(&file.content).unwrap();
    for text in [
        "fn main() {\n\tprintln!(\"héllo\");\r\n}\r\n",
        "emoji 🦀🎉 and CJK 漢字かな한국어",
        "\u{200b}zero width, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math, \u{feff}bom",
        "tabs\t\t\tand    spaces   \n\n\n",
        "<|fim_prefix|> typed by a user is text",
        "\u{fffd}\u{0}\u{7f} control bytes",
    ] {
        let ids = tok.encode(text).unwrap();
        assert_eq!(tok.decode(&ids), text, "round trip of {text:?}");
    }
    // A special token typed as text is not the special token.
    let ids = tok.encode("<|fim_prefix|>").unwrap();
    assert!(ids.len() > 1);
    assert!(!ids.contains(&tok.require("<|fim_prefix|>").unwrap()));
}

#[test]
fn every_family_finds_its_special_tokens() {
    for family in Family::ALL {
        let path = tiny_model(family);
        let file = GgufFile::open(&path).unwrap();
        let tok = Tokenizer::from_gguf(&file.content).unwrap();
        assert_eq!(Family::detect(|t| tok.token_id(t).is_some()), Some(family), "{}", family.name());
        for s in family.all_special_tokens() {
            let id = tok.require(s).unwrap_or_else(|e| panic!("{}: {e}", family.name()));
            assert!(tok.is_special(id), "{s} is not marked special");
        }
        // Each FIM special becomes exactly one id in a built prompt.
        let session = Session::load(&path, &Device::Cpu, &LoadOptions::default()).unwrap();
        for order in [FimOrder::Psm, FimOrder::Spm] {
            let ids = session.encode_prompt(&family.fim("a", "b", order)).unwrap();
            let t = family.tokens();
            for s in [t.prefix, t.suffix, t.middle] {
                let id = tok.require(s).unwrap();
                assert_eq!(ids.iter().filter(|&&x| x == id).count(), 1, "{} {order:?} {s}", family.name());
            }
        }
    }
}

#[test]
fn llama_architecture_loads_and_runs() {
    let path = tiny_model(Family::CodeLlama);
    let mut d = ours(&path);
    assert_eq!(d.cfg.arch, "llama");
    let a = d.forward(&prompt_ids(5)).unwrap();
    assert!(a.iter().all(|x| x.is_finite()));
}

fn session() -> Session {
    Session::load(&tiny_model(Family::QwenCoder), &Device::Cpu, &LoadOptions::default()).unwrap()
}

#[test]
fn generation_stops_where_told() {
    let mut s = session();
    let no = AtomicBool::new(false);
    let mut req = Request::new(prompt::prefix_only("def add(a, b):\n    return"));
    req.max_tokens = 5;
    let g = s.generate(&req, &no).unwrap();
    assert!(g.generated_tokens <= 5);
    assert!(matches!(g.stop, StopReason::MaxTokens | StopReason::EndToken));
    // Greedy is deterministic, and a repeat reuses the whole prompt's cache.
    let g2 = s.generate(&req, &no).unwrap();
    assert_eq!(g.text, g2.text);
    assert_eq!(g2.reused_tokens, g2.prompt_tokens - 2, "all but the healed and the last token reused");
    // A stop string cuts the text before it.
    let mut req3 = req.clone();
    req3.max_tokens = 40;
    let full = s.generate(&req3, &no).unwrap();
    if let Some(ch) = full.text.chars().nth(3) {
        req3.stop = vec![ch.to_string()];
        let cut = s.generate(&req3, &no).unwrap();
        assert!(!cut.text.contains(ch));
        assert_eq!(cut.stop, StopReason::StopText);
        assert!(full.text.starts_with(&cut.text));
    }
    // Cancellation before start, and a spent budget.
    let yes = AtomicBool::new(true);
    assert!(matches!(s.generate(&req3, &yes), Err(EngineError::Cancelled)));
    let mut req4 = req.clone();
    req4.max_tokens = 50;
    req4.budget = Some(Duration::ZERO);
    let g4 = s.generate(&req4, &no).unwrap();
    assert!(g4.generated_tokens <= 1);
}

#[test]
fn token_healing_extends_the_last_prompt_token() {
    let mut s = session();
    let no = AtomicBool::new(false);
    // "retu" ends mid-word: the generated tokens must spell it again first.
    let req = Request::new(prompt::prefix_only("def f(x):\n    retu"));
    let g = s.generate(&req, &no).unwrap();
    assert!(g.healed);
    let first = s.tokenizer.decode_bytes(&g.tokens);
    let prompt_ids = s.tokenizer.encode("def f(x):\n    retu").unwrap();
    let backed_off = s.tokenizer.bytes_of(*prompt_ids.last().unwrap()).to_vec();
    assert!(first.starts_with(&backed_off), "{first:?} does not extend {backed_off:?}");
    let mut off = req.clone();
    off.heal = false;
    assert!(!s.generate(&off, &no).unwrap().healed);
}

#[test]
fn greedy_argmax_on_the_device_gives_the_same_tokens() {
    // GPUs take the greedy argmax on the device; the CPU can do the same.
    let no = AtomicBool::new(false);
    for text in ["def add(a, b):\n    retu", "fn main() {\n    let x"] {
        let mut req = Request::new(prompt::prefix_only(text));
        req.max_tokens = 24;
        let mut s = session();
        let host = s.generate(&req, &no).unwrap();
        let mut s = session();
        s.set_argmax_on_device(true);
        let device = s.generate(&req, &no).unwrap();
        assert_eq!(host.tokens, device.tokens, "{text:?}");
        assert_eq!(host.text, device.text);
    }
}

#[test]
fn alternatives_branch_where_the_model_was_unsure_and_share_the_cache() {
    let path = tiny_model(Family::QwenCoder);
    let no = AtomicBool::new(false);
    let mut refilled = false;
    for text in [
        "def add(a, b):\n    return",
        "fn main() {\n    let x",
        "def f(x):\n    retu",
        "x = [p for p in ",
        "import os\n",
        "let y = ",
        "class A:\n    def ",
        "int main(void) {\n",
    ] {
        let mut s = session();
        let mut req = Request::new(prompt::prefix_only(text));
        req.max_tokens = 8;
        let alone = s.generate(&req, &no).unwrap();
        req.alternatives = 3;
        let mut s = session();
        let g = s.generate(&req, &no).unwrap();
        // The main answer is what it is without alternatives.
        assert_eq!(g.tokens, alone.tokens, "{text:?}");
        assert_eq!(g.text, alone.text);
        assert!(!g.alternatives.is_empty() && g.alternatives.len() <= 3, "{text:?}: {:?}", g.alternatives);
        // Each shares the main answer's tokens up to where it leaves it,
        // the earliest unsure step first, the likelier token first there.
        // A later branch after an earlier one refills the shared tokens.
        refilled |= g.alternatives.windows(2).any(|w| w[0].at < w[1].at);
        let mut seen = Vec::new();
        for a in &g.alternatives {
            assert!(a.at < g.tokens.len() && a.p >= wick::engine::MIN_ALTERNATIVE_P, "{text:?}: {a:?}");
            assert_eq!(a.tokens[..a.at], g.tokens[..a.at], "{text:?}: the shared start");
            assert_ne!(a.tokens[a.at], g.tokens[a.at], "{text:?}: it leaves the main answer there");
            assert!(!seen.contains(&a.tokens[..=a.at].to_vec()), "{text:?}: two alike");
            seen.push(a.tokens[..=a.at].to_vec());
        }
        assert!(g.alternatives.windows(2).all(|w| (w[0].at, -w[0].p) <= (w[1].at, -w[1].p)), "{text:?}: order");
        // After its own token each goes on greedily, as computed from
        // scratch: the branch rewound (and refilled) the cache correctly.
        let (ids, healed) = if g.healed {
            let mut ids = s.tokenizer.encode(text).unwrap();
            let last = ids.pop().unwrap();
            (ids, s.tokenizer.bytes_of(last).to_vec())
        } else {
            (s.tokenizer.encode(text).unwrap(), Vec::new())
        };
        for a in &g.alternatives {
            let spelled = s.tokenizer.decode_bytes(&a.tokens);
            assert!(
                spelled.starts_with(&healed) || healed.starts_with(&spelled),
                "{text:?}: {spelled:?} does not extend the healed {healed:?}"
            );
            // Token by token, as decoding feeds them (a batch rounds the
            // activations differently, and the tiny model has near-ties).
            let mut d = ours(&path);
            let mut logits = d.forward(&ids).unwrap();
            for &t in &a.tokens[..=a.at] {
                logits = d.forward(&[t]).unwrap();
            }
            for (j, w) in a.tokens.windows(2).enumerate().skip(a.at) {
                // Still spelling the healed bytes: a constrained choice.
                if s.tokenizer.decode_bytes(&a.tokens[..=j]).len() < healed.len() {
                    logits = d.forward(&[w[1]]).unwrap();
                    continue;
                }
                let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let scale = logits.iter().map(|x| x.abs()).fold(0.0, f32::max);
                assert!(
                    logits[w[1] as usize] >= max - 0.01 * scale,
                    "{text:?}: the alternative is not greedy after it leaves the main answer: {a:?} main {:?} gap {} scale {scale}", g.tokens, max - logits[w[1] as usize]
                );
                logits = d.forward(&[w[1]]).unwrap();
            }
        }
        // The cache holds the prompt and the last branch, nothing of the
        // others (its last token was never fed back).
        let last = g.alternatives.last().unwrap();
        assert_eq!(s.decoder.cache_len(), ids.len() + last.tokens.len() - 1, "{text:?}");
        // The cache still holds the prompt: the next keystroke reuses it.
        req.alternatives = 0;
        let again = s.generate(&req, &no).unwrap();
        assert_eq!(again.tokens, alone.tokens);
        assert!(
            again.reused_tokens + 2 >= again.prompt_tokens,
            "{text:?}: {} of {}",
            again.reused_tokens,
            again.prompt_tokens
        );
    }
    assert!(refilled, "no branch after an earlier one: the refill went untested");
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let mut s = session();
    let no = AtomicBool::new(false);
    let mut req = Request::new(prompt::prefix_only("fn main() {"));
    req.max_tokens = 12;
    req.sampling = wick::engine::Sampling { temperature: 0.9, top_p: 0.9, seed: 42 };
    let a = s.generate(&req, &no).unwrap();
    s.reset();
    let b = s.generate(&req, &no).unwrap();
    assert_eq!(a.tokens, b.tokens);
}

#[test]
fn engine_thread_serves_supersedes_and_reports_not_ready() {
    let path = tiny_model(Family::QwenCoder);
    let engine = Engine::load(path, Device::Cpu, LoadOptions::default());
    engine.wait_ready().unwrap();
    let mut req = Request::new(prompt::prefix_only("def add(a, b):"));
    req.max_tokens = 30;
    req.key = Some("file:///a.py".into());
    // Three queued requests for one document: at most the last is computed;
    // every one gets an answer.
    let rxs: Vec<_> = (0..3).map(|_| engine.submit(req.clone()).1).collect();
    let answers: Vec<_> = rxs.into_iter().map(|rx| rx.blocking_recv().unwrap()).collect();
    assert!(answers.last().unwrap().is_ok());
    assert!(answers.iter().any(|a| matches!(a, Err(EngineError::Superseded))) || answers.iter().all(|a| a.is_ok()));
    // Only a later arrival supersedes: a request stamped earlier but
    // submitted later (its caller's preparation took longer) gives way to
    // the one stamped after it, not the other way round. Both wait behind
    // a long request, so they are queued together when it is cancelled.
    let mut blocker = req.clone();
    blocker.max_tokens = 1500;
    blocker.key = None;
    let (stop_blocker, blocked) = engine.submit(blocker);
    let (earlier, later) = (wick::engine::arrival(), wick::engine::arrival());
    let newest = engine.submit(Request { arrived: later, ..req.clone() }).1;
    let older = engine.submit(Request { arrived: earlier, ..req.clone() }).1;
    stop_blocker.cancel();
    let _ = blocked.blocking_recv();
    assert!(newest.blocking_recv().unwrap().is_ok(), "the later arrival is answered");
    assert!(matches!(older.blocking_recv().unwrap(), Err(EngineError::Superseded)));
    // Cancelling through the token stops a running request.
    let mut long = req.clone();
    long.max_tokens = 1500;
    long.key = None;
    let (cancel, rx) = engine.submit(long);
    cancel.cancel();
    let r = rx.blocking_recv().unwrap();
    assert!(matches!(r, Err(EngineError::Cancelled)) || matches!(r, Ok((ref g, _)) if g.stop == StopReason::Cancelled));

    // A caller's token, cancelled from another thread while a blocking
    // generation runs, stops it; so does one cancelled before.
    let token = wick::engine::CancelToken::default();
    let t2 = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        t2.cancel();
    });
    let mut long2 = req.clone();
    long2.max_tokens = 1500;
    long2.key = None;
    let r = engine.generate_blocking_until(long2.clone(), &token);
    canceller.join().unwrap();
    assert!(
        matches!(r, Err(EngineError::Cancelled)) || matches!(r, Ok((ref g, _)) if g.stop != StopReason::MaxTokens),
        "{r:?}"
    );
    assert!(matches!(engine.generate_blocking_until(long2, &token), Err(EngineError::Cancelled)));
    // A code-action fix under a cancelled token stops at its first sample.
    let text = "def f(a, b)\n    return a + b\n";
    let parsed = wick::syntax::Parsed::parse(wick::syntax::Lang::Python, text);
    let fix = wick::actions::FixRequest {
        text,
        lang: Some(wick::syntax::Lang::Python),
        language_id: "python",
        start: 0,
        end: 11,
        message: "expected ':'",
    };
    let opts = wick::actions::run::ActionOptions { cancel: token, ..Default::default() };
    let analysis = parsed.as_ref().map(|p| wick::syntax::Analysis::new(p, text));
    let r = wick::actions::run::fix(&engine, &fix, parsed.as_ref().zip(analysis.as_ref()), &opts);
    assert!(matches!(&r, Err(wick::actions::FixError::Engine(m)) if m.contains("cancel")), "{r:?}");

    // An engine whose model is still loading answers at once.
    let slow = Engine::spawn(|| {
        std::thread::sleep(Duration::from_millis(500));
        Err::<wick::engine::Session, _>(EngineError::LoadFailed("test".into()))
    });
    let r = slow.generate_blocking(Request::new(prompt::prefix_only("x")));
    assert!(matches!(r, Err(EngineError::NotReady)));
    assert!(slow.wait_ready().is_err());
}

#[test]
fn another_prompt_does_not_evict_the_cache_of_the_first() {
    // A file being typed in, a fix (a chat prompt) in between, another file:
    // each returns to its own cache, and the answers are those of a cold run.
    let mut s = session();
    let no = AtomicBool::new(false);
    let file = |name: &str, n: usize| {
        let body: String = (0..n).map(|i| format!("    total_{name} += values[{i}] * {i}\n")).collect();
        format!("def {name}(values):\n    total_{name} = 0\n{body}    return")
    };
    let (a, b, c) = (file("alpha", 40), file("beta", 40), file("gamma", 40));
    let req = |text: &str| {
        let mut r = Request::new(prompt::prefix_only(text));
        r.max_tokens = 3;
        r
    };
    let first = s.generate(&req(&a), &no).unwrap();
    assert!(first.prompt_tokens > 200, "{}", first.prompt_tokens);
    let _ = s.generate(&req(&b), &no).unwrap();
    let _ = s.generate(&req(&c), &no).unwrap();
    // Back to the first file, typed on: all of it is still cached.
    let again = s.generate(&req(&format!("{a} t")), &no).unwrap();
    assert!(
        again.reused_tokens + 3 >= first.prompt_tokens,
        "reused {} of {}",
        again.reused_tokens,
        first.prompt_tokens
    );
    let b2 = s.generate(&req(&b), &no).unwrap();
    assert!(b2.reused_tokens + 2 >= b2.prompt_tokens, "reused {} of {}", b2.reused_tokens, b2.prompt_tokens);
    // The third and fourth sequences: the least recently used (c) gave way.
    let d = s.generate(&req(&file("delta", 40)), &no).unwrap();
    assert!(d.reused_tokens < 10);
    let c2 = s.generate(&req(&c), &no).unwrap();
    assert!(c2.reused_tokens < 10, "c was evicted, reused {}", c2.reused_tokens);
    // Reused caches give the cold answer.
    let mut cold = session();
    let want = cold.generate(&req(&b), &no).unwrap();
    assert_eq!(b2.text, want.text);
    assert_eq!(b2.tokens, want.tokens);
    s.reset();
    let after = s.generate(&req(&a), &no).unwrap();
    assert_eq!(after.reused_tokens, 0);
    assert_eq!(after.text, first.text);
}

/// At `cursor` of `text`, as the server asks: a prefetch (prefill only,
/// idle priority) when `prefetch`, else a completion.
fn at(engine: &Engine, text: &str, cursor: usize, prefetch: bool) -> (Option<wick::engine::Generation>, String) {
    let rope = ropey::Rope::from_str(text);
    let cfg = wick::config::Config { max_tokens: 12, ..Default::default() };
    let cursor = rope.byte_to_char(cursor);
    run_at(engine, &rope, cursor, Some(wick::syntax::Lang::Python), "a.py", &cfg, prefetch)
}

/// Through the pipeline at char `cursor` of `rope`: a prefetch when
/// `prefetch`, else a completion (its generation and raw text).
fn run_at(
    engine: &Engine,
    rope: &ropey::Rope,
    cursor: usize,
    lang: Option<wick::syntax::Lang>,
    path: &str,
    cfg: &wick::config::Config,
    prefetch: bool,
) -> (Option<wick::engine::Generation>, String) {
    let text = rope.to_string();
    let parsed = lang.and_then(|l| wick::syntax::Parsed::parse(l, &text));
    let req = wick::complete::SuggestRequest {
        input: wick::complete::Input { rope, cursor, lang, parsed: parsed.as_ref(), path, repo_name: "", others: &[] },
        config: cfg,
        stages: wick::complete::Stages::default(),
        last: None,
        arrived: 0,
        candidates: 1,
        key: Some(format!("file:///{path}")),
    };
    if prefetch {
        (futures::executor::block_on(wick::complete::prefetch(engine, &req)), String::new())
    } else {
        let out = wick::complete::suggest_blocking(engine, &req);
        (out.generation, out.raw)
    }
}

#[test]
fn a_prefetch_fills_the_cache_and_changes_no_answer() {
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!("def f{i}(a, b):\n    return a * {i} + b\n\n"));
    }
    text.push_str("def g(x):\n    return x");
    let typed = format!("{text} ");
    let load = || {
        let e = Engine::load(tiny_model(Family::QwenCoder), Device::Cpu, LoadOptions::default());
        e.wait_ready().unwrap();
        e
    };
    for (name, doc, cursor) in [("the same place", &text, text.len()), ("a keystroke later", &typed, typed.len())] {
        let (warm, cold) = (load(), load());
        let (pre, _) = at(&warm, &text, text.len(), true);
        let pre = pre.expect("the prefetch ran");
        assert_eq!(pre.generated_tokens, 0, "a prefetch only prefills");
        assert!(pre.prompt_tokens > 200, "a prompt of several idle chunks: {}", pre.prompt_tokens);
        let (g, raw) = at(&warm, doc, cursor, false);
        let g = g.expect("the model ran");
        assert!(g.reused_tokens + 4 >= g.prompt_tokens, "{name}: reused {} of {}", g.reused_tokens, g.prompt_tokens);
        let (g0, reference) = at(&cold, doc, cursor, false);
        assert_eq!(g0.unwrap().reused_tokens, 0);
        assert_eq!(raw, reference, "{name}: the prefetch changed the answer");
    }
}

#[test]
fn idle_work_gives_way_to_a_request() {
    let engine = Engine::load(tiny_model(Family::QwenCoder), Device::Cpu, LoadOptions::default());
    engine.wait_ready().unwrap();
    let long: String = (0..150).map(|i| format!("x{i} = {i}\n")).collect();
    let mut idle = Request::new(prompt::prefix_only(&long));
    idle.max_tokens = 0;
    idle.idle = true;
    let (_, idle_rx) = engine.submit(idle);
    let mut real = Request::new(prompt::prefix_only("def add(a, b):"));
    real.max_tokens = 4;
    let (_, real_rx) = engine.submit(real);
    // The real request is answered; the idle one either finished first or
    // stopped for it.
    assert!(real_rx.blocking_recv().unwrap().is_ok());
    let r = idle_rx.blocking_recv().unwrap();
    assert!(matches!(r, Ok(_) | Err(EngineError::Cancelled)), "{r:?}");
}

/// Types `typed` at the end of line `line` of a large file, a keystroke at a
/// time, each through the pipeline; returns the prompt tokens each keystroke
/// had to prefill (those not reused from the cache). With `prefetch`, the
/// server's prefetch runs at the line's end first.
fn prefilled_while_typing(
    engine: &Engine,
    path: &str,
    text: &str,
    line: usize,
    typed: &str,
    prefetch: bool,
) -> Vec<usize> {
    let lang = path.ends_with(".py").then_some(wick::syntax::Lang::Python);
    let mut rope = ropey::Rope::from_str(text);
    let cfg = wick::config::Config { max_tokens: 1, context_tokens: 512, ..Default::default() };
    let run =
        |rope: &ropey::Rope, cursor: usize, prefetch: bool| run_at(engine, rope, cursor, lang, path, &cfg, prefetch).0;
    let first = rope.line_to_char(line) - 1;
    if prefetch {
        run(&rope, first, true).expect("the prefetch ran");
    }
    let mut fresh = Vec::new();
    for (at, ch) in (first..).zip(typed.chars()) {
        rope.insert_char(at, ch);
        if let Some(g) = run(&rope, at + 1, false) {
            fresh.push(g.prompt_tokens - g.reused_tokens);
        }
    }
    fresh
}

#[test]
fn typing_in_a_large_file_keeps_the_prompt_start_and_its_cache() {
    let engine = Engine::load(tiny_model(Family::QwenCoder), Device::Cpu, LoadOptions::default());
    engine.wait_ready().unwrap();
    let body: String = (0..400).map(|i| format!("    total_{i} = compute(values[{i}], limit={i})\n")).collect();
    let text = format!("def run(values):\n{body}    return total_0\n");
    let lines = "\n    extra = compute(values[1], limit=2)\n    again = extra + total_3\n    print(again)\n    more = again * 2\n    print(more, extra)\n    x = 1";
    let typed = lines.repeat(2);
    // A language with a grammar and one without (the window is cut blind).
    for path in ["a.py", "a.rb"] {
        let fresh = prefilled_while_typing(&engine, path, &text, 300, &typed, false);
        assert!(fresh.len() > 200, "{path}: the model ran on every keystroke: {}", fresh.len());
        // 12 lines typed: a cold prompt only where the start moved a grid
        // step (4 lines at 512 tokens) as they grew the window, else the
        // keystroke prefills what was typed and little more. (A start cut
        // at a character budget moved with every line or two typed.)
        let cold = fresh.iter().skip(1).filter(|&&n| n > 24).count();
        assert!(cold <= 12 / 4 + 1, "{path}: {cold} cold prompts: {fresh:?}");
    }
}

#[test]
fn a_prefetch_prepares_the_prompt_typing_moves_to() {
    let load = || {
        let e = Engine::load(tiny_model(Family::QwenCoder), Device::Cpu, LoadOptions::default());
        e.wait_ready().unwrap();
        e
    };
    let body: String = (0..400).map(|i| format!("    total_{i} = compute(values[{i}], limit={i})\n")).collect();
    let text = format!("def run(values):\n{body}    return total_0\n");
    // Six lines typed: the start moves one grid step (4 lines at 512 tokens).
    let typed = "\n    extra = compute(values[1], limit=2)\n    again = extra + total_3\n    print(again)\n    more = again * 2\n    print(more, extra)\n    x = 1";
    for path in ["a.py", "a.rb"] {
        let without = prefilled_while_typing(&load(), path, &text, 300, typed, false);
        let moved = without[1..].iter().max().copied().unwrap_or(0);
        assert!(moved > 300, "{path}: the start moved while typing, a cold prompt: {without:?}");
        // With the prefetch first (the cursor settled at the line's end):
        // the first keystroke finds its prompt cached, and the one that
        // moves the start prefills only what was typed since the prefetch.
        let with = prefilled_while_typing(&load(), path, &text, 300, typed, true);
        assert!(with[0] <= 4, "{path}: {with:?}");
        let most = with.iter().max().copied().unwrap_or(0);
        assert!(most > 24 && most < typed.len(), "{path}: the move reused the prompt prefetched ahead: {with:?}");
    }
}
