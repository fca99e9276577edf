//! `wick bench`: prefill and decode speed and peak memory of our decoder,
//! side by side with candle-transformers' `quantized_qwen2` on the same file
//! and the same tokens, in the same run.

use crate::engine::{Decoder, LoadOptions};
use crate::models::gguf::GgufFile;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone)]
pub(crate) struct Figures {
    pub name: String,
    pub load_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Peak resident memory during this engine's run, MiB.
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub model: String,
    pub device: String,
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    pub threads: usize,
    pub rows: Vec<Figures>,
    pub latency: Option<Latency>,
    /// wick's prefill of the same prompt in chunks: (chunk tokens, tok/s),
    /// the server's chunk and the idle (prefetch) one.
    pub chunked: Vec<(usize, f64)>,
}

/// What a completion costs end to end on our decoder, the way the session
/// runs it: a cold prompt in prefill chunks, then keystrokes that each add
/// a couple of tokens to the cached prompt and decode a short answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct LatencyOptions {
    pub prompt_tokens: usize,
    pub answer_tokens: usize,
    pub keystrokes: usize,
    /// Prompt tokens each keystroke adds.
    pub typed_tokens: usize,
    pub keystroke_answer_tokens: usize,
}

impl LatencyOptions {
    pub(crate) fn standard() -> Self {
        LatencyOptions {
            prompt_tokens: 1500,
            answer_tokens: 24,
            keystrokes: 20,
            typed_tokens: 2,
            keystroke_answer_tokens: 16,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Latency {
    pub opts: LatencyOptions,
    /// Cold prompt plus answer, ms (median of 3).
    pub completion_ms: f64,
    pub completion_prefill_ms: f64,
    /// One keystroke: typed tokens plus a short answer, ms.
    pub keystroke_p50_ms: f64,
    pub keystroke_p90_ms: f64,
    /// Decode speed inside the keystrokes, tokens/s.
    pub decode_tok_s: f64,
}

/// Tokens to benchmark with: real source text from this binary's own
/// sources, repeated as needed, so the numbers reflect code.
fn bench_tokens(n: usize, vocab: usize, path: &Path) -> Result<Vec<u32>> {
    let file = GgufFile::open(path)?;
    let tok = crate::models::tokenizer::Tokenizer::from_gguf(&file.content)?;
    let text = include_str!("../engine/session.rs");
    let mut ids = Vec::new();
    while ids.len() < n {
        ids.extend(tok.encode(text)?);
    }
    ids.truncate(n);
    for t in &mut ids {
        *t = (*t).min(vocab as u32 - 1);
    }
    Ok(ids)
}

pub fn run(
    path: &Path,
    device: &Device,
    opts: &LoadOptions,
    prompt: usize,
    decode: usize,
    reference: bool,
    latency: Option<&LatencyOptions>,
) -> Result<Report> {
    let mut rows = Vec::new();
    let base = rss_mib();
    let sampler = PeakSampler::start();
    let t = Instant::now();
    let mut file = GgufFile::open(path)?;
    let mut dec = Decoder::load(&mut file, device, opts)?;
    drop(file);
    let load_s = t.elapsed().as_secs_f64();
    let ids = bench_tokens(prompt, dec.cfg.vocab, path)?;
    // Warm up (first-touch allocations), then measure.
    dec.forward(&ids[..8.min(ids.len())])?;
    dec.clear();
    let t = Instant::now();
    let mut logits = dec.forward(&ids)?;
    device.synchronize()?;
    let prefill = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut next = argmax(&logits);
    for _ in 0..decode {
        next = greedy_step(&mut dec, next, &mut logits)?;
    }
    device.synchronize()?;
    let dec_s = t.elapsed().as_secs_f64();
    // The server prefills in chunks (interruptible), prefetch in smaller ones.
    let chunk = crate::engine::session::prefill_chunk(device);
    let mut chunked = Vec::new();
    for c in [chunk, chunk / crate::engine::session::IDLE_CHUNK_DIVISOR] {
        if c >= ids.len() || c == 0 {
            continue;
        }
        dec.clear();
        let t = Instant::now();
        for part in ids.chunks(c) {
            dec.forward(part)?;
        }
        device.synchronize()?;
        chunked.push((c, ids.len() as f64 / t.elapsed().as_secs_f64()));
    }
    let latency = match latency {
        Some(l) => Some(measure_latency(&mut dec, l, path)?),
        None => None,
    };
    rows.push(Figures {
        name: "wick".into(),
        load_s,
        prefill_tok_s: prompt as f64 / prefill,
        decode_tok_s: decode as f64 / dec_s,
        peak_rss_mib: sampler.finish() - base,
    });
    drop(dec);

    if reference {
        use candle_transformers::models::quantized_qwen2::ModelWeights;
        let base = rss_mib();
        let sampler = PeakSampler::start();
        let t = Instant::now();
        let mut f = std::fs::File::open(path)?;
        let content = candle_core::quantized::gguf_file::Content::read(&mut f)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut m = ModelWeights::from_gguf(content, &mut f, device).context("candle-transformers quantized_qwen2")?;
        let load_s = t.elapsed().as_secs_f64();
        let input = Tensor::new(&ids[..8.min(ids.len())], device)?.unsqueeze(0)?;
        m.forward(&input, 0)?;
        m.clear_kv_cache();
        let t = Instant::now();
        let input = Tensor::new(ids.as_slice(), device)?.unsqueeze(0)?;
        let mut logits = m.forward(&input, 0)?.flatten_all()?.to_vec1::<f32>()?;
        let prefill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..decode {
            let next = argmax(&logits);
            let input = Tensor::new(&[next], device)?.unsqueeze(0)?;
            logits = m.forward(&input, prompt + i)?.flatten_all()?.to_vec1::<f32>()?;
        }
        let dec_s = t.elapsed().as_secs_f64();
        rows.push(Figures {
            name: "candle-transformers quantized_qwen2".into(),
            load_s,
            prefill_tok_s: prompt as f64 / prefill,
            decode_tok_s: decode as f64 / dec_s,
            peak_rss_mib: sampler.finish() - base,
        });
    }
    Ok(Report {
        model: path.display().to_string(),
        device: device_name(device, opts),
        prompt_tokens: prompt,
        decode_tokens: decode,
        threads: candle_core::utils::get_num_threads(),
        rows,
        latency,
        chunked,
    })
}

/// One greedy decode step as the session takes it: the argmax on the
/// device for GPUs, on the host's copy of the logits for the CPU.
fn greedy_step(dec: &mut Decoder, tok: u32, logits: &mut Vec<f32>) -> Result<u32> {
    if dec.device().is_cpu() {
        *logits = dec.forward(&[tok])?;
        Ok(argmax(logits))
    } else {
        let vocab = dec.cfg.vocab;
        Ok(dec.forward_argmax(&[tok], vocab)?)
    }
}

fn device_name(device: &Device, opts: &LoadOptions) -> String {
    let weights = if opts.dense_weights { "dense" } else { "quantized" };
    match device {
        Device::Cpu => format!("cpu, {:?} activations, {weights} weights", opts.dtype),
        d => format!("{:?}, {:?} activations, {weights} weights", d.location(), opts.dtype),
    }
}

fn measure_latency(dec: &mut Decoder, o: &LatencyOptions, path: &Path) -> Result<Latency> {
    let chunk = crate::engine::session::prefill_chunk(dec.device());
    let total = o.prompt_tokens + o.keystrokes * o.typed_tokens;
    let ids = bench_tokens(total, dec.cfg.vocab, path)?;
    let prompt = &ids[..o.prompt_tokens];
    // The answer's tokens: greedy, as the editor's requests are.
    let answer = |dec: &mut Decoder, mut logits: Vec<f32>, n: usize| -> Result<()> {
        let mut next = argmax(&logits);
        for _ in 1..n {
            next = greedy_step(dec, next, &mut logits)?;
        }
        Ok(())
    };
    let mut colds = Vec::new();
    let mut prefills = Vec::new();
    for _ in 0..3 {
        dec.clear();
        let t = Instant::now();
        let mut logits = Vec::new();
        for c in prompt.chunks(chunk) {
            logits = dec.forward(c)?;
        }
        prefills.push(t.elapsed().as_secs_f64() * 1e3);
        answer(dec, logits, o.answer_tokens)?;
        colds.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut keys = Vec::new();
    let mut decode_s = 0.0;
    let mut len = o.prompt_tokens;
    for _ in 0..o.keystrokes {
        let t = Instant::now();
        // The previous answer is not part of the new prompt: rewind to it.
        dec.truncate(len);
        let logits = dec.forward(&ids[len..len + o.typed_tokens])?;
        len += o.typed_tokens;
        let td = Instant::now();
        answer(dec, logits, o.keystroke_answer_tokens)?;
        decode_s += td.elapsed().as_secs_f64();
        keys.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let decoded = o.keystrokes * o.keystroke_answer_tokens.saturating_sub(1);
    Ok(Latency {
        opts: o.clone(),
        completion_ms: pct(&mut colds, 0.5),
        completion_prefill_ms: pct(&mut prefills, 0.5),
        keystroke_p50_ms: pct(&mut keys.clone(), 0.5),
        keystroke_p90_ms: pct(&mut keys, 0.9),
        decode_tok_s: decoded as f64 / decode_s.max(1e-9),
    })
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn print(r: &Report) {
    eprintln!("model: {}", r.model);
    eprintln!("device: {}", r.device);
    eprintln!("prompt {} tokens, decode {} tokens, {} threads", r.prompt_tokens, r.decode_tokens, r.threads);
    eprintln!("{:<38} {:>8} {:>14} {:>13} {:>14}", "engine", "load s", "prefill tok/s", "decode tok/s", "peak RSS MiB");
    for f in &r.rows {
        eprintln!(
            "{:<38} {:>8.2} {:>14.1} {:>13.1} {:>14.0}",
            f.name, f.load_s, f.prefill_tok_s, f.decode_tok_s, f.peak_rss_mib
        );
    }
    if r.rows.len() == 2 {
        let (a, b) = (&r.rows[0], &r.rows[1]);
        eprintln!(
            "ratio wick/reference: prefill {:.2}x, decode {:.2}x, peak RSS {:.2}x",
            a.prefill_tok_s / b.prefill_tok_s,
            a.decode_tok_s / b.decode_tok_s,
            a.peak_rss_mib / b.peak_rss_mib.max(1.0)
        );
    }
    for (c, tps) in &r.chunked {
        eprintln!("wick prefill in chunks of {c} tokens: {tps:.1} tok/s");
    }
    if let Some(l) = &r.latency {
        let o = &l.opts;
        eprintln!(
            "completion: {}-token prompt + {} tokens: {:.1} ms (prefill {:.1} ms, {:.0} tok/s)",
            o.prompt_tokens,
            o.answer_tokens,
            l.completion_ms,
            l.completion_prefill_ms,
            o.prompt_tokens as f64 / (l.completion_prefill_ms / 1e3)
        );
        eprintln!(
            "keystroke: +{} prompt tokens, {} answer tokens, KV reused: p50 {:.1} ms, p90 {:.1} ms (n={}, decode {:.0} tok/s)",
            o.typed_tokens, o.keystroke_answer_tokens, l.keystroke_p50_ms, l.keystroke_p90_ms, o.keystrokes, l.decode_tok_s
        );
    }
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

fn status_kib(key: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
}

pub(crate) fn rss_mib() -> f64 {
    status_kib("VmRSS:") / 1024.0
}

/// Samples resident memory every few milliseconds on a thread: the peak of
/// one phase, whether or not the kernel's counter can be reset.
pub(crate) struct PeakSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<f64>>,
}

impl PeakSampler {
    pub fn start() -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = rss_mib();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_mib());
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak.max(rss_mib())
        });
        PeakSampler { stop, handle: Some(handle) }
    }

    pub fn finish(mut self) -> f64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle.take().and_then(|h| h.join().ok()).unwrap_or(0.0)
    }
}

/// One device configuration compared with the CPU's f32 path.
#[derive(Debug, Clone)]
pub(crate) struct CheckRow {
    pub name: String,
    /// Largest |device - cpu| over every compared position's logits.
    pub max_abs: f32,
    /// Largest ||device - cpu|| / ||cpu|| over the positions.
    pub rel_l2: f32,
    /// Positions whose argmax agrees, of `positions`.
    pub argmax_agree: usize,
    pub positions: usize,
    /// The logits stayed on the device until the final copy.
    pub on_device: bool,
}

/// Runs the same tokens through the CPU reference (f32 activations, weights
/// dequantized to f32: no int8 activations as in the CPU's fast kernels) and
/// through `device` with each configuration: a prompt in two
/// chunks (the second one attends to cached positions), then `steps` single
/// tokens fed from the reference's greedy choice, comparing the logits of
/// every step.
pub(crate) fn check_device(
    path: &Path,
    device: &Device,
    configs: &[(String, LoadOptions)],
    prompt: usize,
    steps: usize,
) -> Result<Vec<CheckRow>> {
    let mut file = GgufFile::open(path)?;
    let exact =
        LoadOptions { repack: false, dense_prefill: false, dtype: candle_core::DType::F32, dense_weights: true };
    let mut cpu = Decoder::load(&mut file, &Device::Cpu, &exact)?;
    let ids = bench_tokens(prompt + steps, cpu.cfg.vocab, path)?;
    let split = prompt / 2;
    let mut reference = vec![cpu.forward(&ids[..split])?];
    reference.push(cpu.forward(&ids[split..prompt])?);
    for &t in &ids[prompt..prompt + steps] {
        reference.push(cpu.forward(&[t])?);
    }
    drop(cpu);
    let mut rows = Vec::new();
    for (name, opts) in configs {
        let mut file = GgufFile::open(path)?;
        let mut dec = Decoder::load(&mut file, device, opts)?;
        let mut got = Vec::new();
        let mut on_device = true;
        let mut run = |dec: &mut Decoder, t: &[u32]| -> Result<()> {
            let l = dec.forward_tensor(t)?;
            on_device &= l.device().same_device(device);
            got.push(l.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?);
            Ok(())
        };
        run(&mut dec, &ids[..split])?;
        run(&mut dec, &ids[split..prompt])?;
        for &t in &ids[prompt..prompt + steps] {
            run(&mut dec, &[t])?;
        }
        let mut row = CheckRow {
            name: name.clone(),
            max_abs: 0.0,
            rel_l2: 0.0,
            argmax_agree: 0,
            positions: got.len(),
            on_device,
        };
        for (a, b) in got.iter().zip(&reference) {
            let d =
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, |m, x| if x.is_nan() { f32::NAN } else { m.max(x) });
            let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
            let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
            row.max_abs = if d.is_nan() || row.max_abs.is_nan() { f32::NAN } else { row.max_abs.max(d) };
            row.rel_l2 = row.rel_l2.max((num / den.max(1e-30)).sqrt() as f32);
            row.argmax_agree += usize::from(argmax(a) == argmax(b));
        }
        rows.push(row);
    }
    Ok(rows)
}

pub(crate) fn print_check(device: &Device, rows: &[CheckRow]) {
    eprintln!("logits on {:?} vs the CPU in f32 with f32 weights", device.location());
    eprintln!("{:<28} {:>12} {:>10} {:>14} {:>10}", "config", "max abs diff", "rel L2", "argmax agree", "on device");
    for r in rows {
        eprintln!(
            "{:<28} {:>12.5} {:>10.2e} {:>10}/{:<3} {:>10}",
            r.name, r.max_abs, r.rel_l2, r.argmax_agree, r.positions, r.on_device
        );
    }
}

/// `wick bench switch`: the keystroke that follows a request for another
/// prompt (a code-action fix, another file), with the KV caches kept per
/// sequence (the default) and with one cache that every prompt overwrites
/// (the baseline), in the same run.
pub fn switch(path: &Path, device: &Device, opts: &LoadOptions, prompt_tokens: usize) -> Result<String> {
    use crate::engine::{Request, Session};
    use crate::prompt;
    use std::sync::atomic::AtomicBool;
    let mut s = Session::load(path, device, opts).with_context(|| format!("loading {}", path.display()))?;
    // Real code as the two prompts, cut to about `prompt_tokens` each.
    let cut = |text: &str| {
        let mut end = (prompt_tokens * 3).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    };
    let file = cut(include_str!("../engine/session.rs"));
    let other = cut(include_str!("../actions/mod.rs"));
    let no = AtomicBool::new(false);
    let ask = |s: &mut Session, text: &str, n: usize| {
        let mut r = Request::new(prompt::prefix_only(text));
        r.max_tokens = n;
        r.heal = false;
        s.generate(&r, &no).map_err(|e| anyhow::anyhow!("{e}"))
    };
    let mut out = String::new();
    for spares in [0, crate::engine::session::SPARE_SLOTS] {
        s.set_spare_slots(spares);
        let mut times = Vec::new();
        let mut reused = 0;
        let mut prompt = 0;
        ask(&mut s, &file, 1)?;
        for round in 0..3 {
            ask(&mut s, &other, 1)?;
            let typed = format!("{file}{}", " x".repeat(round + 1));
            let t = Instant::now();
            let g = ask(&mut s, &typed, 8)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            reused = g.reused_tokens;
            prompt = g.prompt_tokens;
        }
        let label = if spares == 0 { "one KV cache (baseline)" } else { "KV caches per sequence" };
        out.push_str(&format!(
            "{label:<26} keystroke after another prompt: {:.0} ms (median of 3), {reused} of {prompt} prompt tokens reused\n",
            pct(&mut times, 0.5)
        ));
    }
    Ok(out)
}
