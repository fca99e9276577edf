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
pub struct Figures {
    pub name: String,
    pub load_s: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
    /// Peak resident memory during this engine's run, MiB.
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub model: String,
    pub prompt_tokens: usize,
    pub decode_tokens: usize,
    pub threads: usize,
    pub rows: Vec<Figures>,
}

/// Tokens to benchmark with: real source text from this binary's own
/// sources, repeated as needed, so the numbers reflect code.
fn bench_tokens(n: usize, vocab: usize, path: &Path) -> Result<Vec<u32>> {
    let file = GgufFile::open(path)?;
    let tok = crate::models::tokenizer::Tokenizer::from_gguf(&file.content)?;
    let text = include_str!("engine/session.rs");
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

pub fn run(path: &Path, device: &Device, opts: &LoadOptions, prompt: usize, decode: usize, reference: bool) -> Result<Report> {
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
    for _ in 0..decode {
        let next = argmax(&logits);
        logits = dec.forward(&[next])?;
    }
    device.synchronize()?;
    let dec_s = t.elapsed().as_secs_f64();
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
        prompt_tokens: prompt,
        decode_tokens: decode,
        threads: candle_core::utils::get_num_threads(),
        rows,
    })
}

pub fn print(r: &Report) {
    eprintln!("model: {}", r.model);
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

pub fn rss_mib() -> f64 {
    status_kib("VmRSS:") / 1024.0
}

/// Samples resident memory every few milliseconds on a thread: the peak of
/// one phase, whether or not the kernel's counter can be reset.
pub struct PeakSampler {
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
