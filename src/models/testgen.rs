//! Deterministic model files for tests and benchmarks: a small byte-level BPE
//! tokenizer trained on a built-in corpus, random weights from a seeded
//! generator, written as GGUF. Tiny ones load in milliseconds; one preset has
//! exactly the default model's shapes and quantization types, for benchmarks
//! (and GPU checks) without the real file.

use super::tokenizer::byte_encoder;
use crate::prompt::Family;
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub arch: &'static str,
    pub family: Family,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    /// Rows of the embedding; at least the tokenizer's size.
    pub vocab_rows: usize,
    pub context: usize,
    pub merges: usize,
    pub seed: u64,
    pub qkv_bias: bool,
    pub tied_output: bool,
    /// Quantization of (attention + gate/up, ffn_down in even layers,
    /// ffn_down in odd layers, embedding, output).
    pub types: [GgmlDType; 5],
}

impl ModelSpec {
    /// A two-layer Qwen2-style model, a few hundred KB, mixing the default
    /// model's quantization types.
    pub fn tiny(family: Family) -> Self {
        ModelSpec {
            arch: if family == Family::CodeLlama { "llama" } else { "qwen2" },
            family,
            n_layer: 2,
            hidden: 64,
            ffn: 256,
            n_head: 4,
            n_kv_head: 2,
            vocab_rows: 0,
            context: 2048,
            merges: 200,
            seed: 7,
            qkv_bias: family != Family::CodeLlama,
            tied_output: false,
            types: [GgmlDType::Q5_0, GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q5_0, GgmlDType::Q8_0],
        }
    }

    /// Qwen2.5-Coder-0.5B's shapes and quantization types, random weights.
    pub(crate) fn qwen05b_shapes() -> Self {
        ModelSpec {
            arch: "qwen2",
            family: Family::QwenCoder,
            n_layer: 24,
            hidden: 896,
            ffn: 4864,
            n_head: 14,
            n_kv_head: 2,
            vocab_rows: 151936,
            context: 32768,
            merges: 200,
            seed: 11,
            qkv_bias: true,
            tied_output: false,
            types: [GgmlDType::Q5_0, GgmlDType::Q4K, GgmlDType::Q6K, GgmlDType::Q5_0, GgmlDType::Q8_0],
        }
    }
}

/// A built-in corpus for the tiny tokenizer: enough code to learn merges for
/// indentation, keywords and common identifiers.
const CORPUS: &str = r#"def add(a, b):
    return a + b

def main():
    for i in range(10):
        if i % 2 == 0:
            print(i)
    return None

fn main() {
    let mut total = 0;
    for x in values.iter() {
        total += x;
    }
    println!("{}", total);
}

function greet(name) {
    const message = "hello " + name;
    return message;
}

func main() {
	fmt.Println("hello")
	return
}

public static void main(String[] args) {
    System.out.println("hello");
}
"#;

pub(crate) struct Splitmix(u64);

impl Splitmix {
    pub fn new(seed: u64) -> Self {
        Splitmix(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub(crate) fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// The tokenizer part: byte tokens, learned merges, then the family's specials.
pub fn vocabulary(family: Family, n_merges: usize) -> (Vec<String>, Vec<i32>, Vec<String>) {
    let enc = byte_encoder();
    let mut tokens: Vec<String> = (0..=255u8).map(|b| enc[&b].to_string()).collect();
    // Words as GPT-2 pre-tokenizes them, roughly: a leading space sticks to the word.
    let mut words: BTreeMap<Vec<String>, usize> = BTreeMap::new();
    let mut cur = String::new();
    let flush = |w: &mut String, words: &mut BTreeMap<Vec<String>, usize>| {
        if !w.is_empty() {
            let sym: Vec<String> = w.bytes().map(|b| enc[&b].to_string()).collect();
            *words.entry(sym).or_default() += 1;
            w.clear();
        }
    };
    for c in CORPUS.chars() {
        let alnum = c.is_alphanumeric() || c == '_';
        let prev_alnum = cur.chars().last().is_some_and(|p| p.is_alphanumeric() || p == '_');
        if !cur.is_empty() && (alnum != prev_alnum) && !(cur == " " && alnum) {
            flush(&mut cur, &mut words);
        }
        cur.push(c);
    }
    flush(&mut cur, &mut words);
    let mut merges = Vec::new();
    for _ in 0..n_merges {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (w, n) in &words {
            for p in w.windows(2) {
                *counts.entry((p[0].clone(), p[1].clone())).or_default() += n;
            }
        }
        let Some(((a, b), _)) = counts.iter().max_by(|x, y| x.1.cmp(y.1).then(y.0.cmp(x.0))) else {
            break;
        };
        let (a, b) = (a.clone(), b.clone());
        let merged = format!("{a}{b}");
        merges.push(format!("{a} {b}"));
        tokens.push(merged.clone());
        let mut next = BTreeMap::new();
        for (w, n) in words {
            let mut out = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                    out.push(merged.clone());
                    i += 2;
                } else {
                    out.push(w[i].clone());
                    i += 1;
                }
            }
            *next.entry(out).or_default() += n;
        }
        words = next;
    }
    let mut types = vec![1i32; tokens.len()];
    let mut specials: Vec<&str> = family.all_special_tokens();
    if family == Family::QwenCoder {
        specials.extend(["<|im_start|>", "<|im_end|>"]);
    }
    for s in specials {
        if !tokens.iter().any(|t| t == s) {
            tokens.push(s.to_string());
            types.push(3);
        }
    }
    (tokens, types, merges)
}

/// Writes a model with random weights. Returns the tokenizer size.
pub fn write_model(spec: &ModelSpec, path: &Path) -> anyhow::Result<usize> {
    let (mut tokens, mut types, merges) = vocabulary(spec.family, spec.merges);
    let vocab = spec.vocab_rows.max(tokens.len());
    // Rows past the learned vocabulary get unused tokens (type 5): llama.cpp
    // loads a model only when its vocabulary fills the embedding, and the
    // shapes preset is measured against llama.cpp on the same file.
    for i in tokens.len()..vocab {
        tokens.push(format!("<|wick_unused_{i}|>"));
        types.push(5);
    }
    let n_tokens = tokens.len();
    let eos = family_eos(spec.family, &tokens);
    let a = spec.arch;
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(a.into())),
        ("general.name".into(), Value::String(format!("wick-test-{}", spec.family.name()))),
        (format!("{a}.block_count"), Value::U32(spec.n_layer as u32)),
        (format!("{a}.embedding_length"), Value::U32(spec.hidden as u32)),
        (format!("{a}.feed_forward_length"), Value::U32(spec.ffn as u32)),
        (format!("{a}.attention.head_count"), Value::U32(spec.n_head as u32)),
        (format!("{a}.attention.head_count_kv"), Value::U32(spec.n_kv_head as u32)),
        (format!("{a}.context_length"), Value::U32(spec.context as u32)),
        (format!("{a}.rope.freq_base"), Value::F32(1_000_000.0)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("qwen2".into())),
        ("tokenizer.ggml.tokens".into(), Value::Array(tokens.into_iter().map(Value::String).collect())),
        ("tokenizer.ggml.token_type".into(), Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.merges".into(), Value::Array(merges.into_iter().map(Value::String).collect())),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
    ];
    if let Some(e) = eos {
        md.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(e)));
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(e)));
    }
    let dev = Device::Cpu;
    let mut rng = Splitmix::new(spec.seed);
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut rand = |rows: usize, cols: usize, scale: f32, dtype: GgmlDType| -> anyhow::Result<QTensor> {
        let data: Vec<f32> = (0..rows * cols).map(|_| rng.unit() * scale).collect();
        let t =
            if rows == 1 { Tensor::from_vec(data, cols, &dev)? } else { Tensor::from_vec(data, (rows, cols), &dev)? };
        Ok(QTensor::quantize(&t, dtype)?)
    };
    let (h, f, kvd) = (spec.hidden, spec.ffn, spec.hidden / spec.n_head * spec.n_kv_head);
    let [t_attn, t_down_even, t_down_odd, t_embd, t_out] = spec.types;
    let ws = 1.0 / (h as f32).sqrt();
    tensors.push(("token_embd.weight".into(), rand(vocab, h, 0.5, t_embd)?));
    for i in 0..spec.n_layer {
        let p = |s: &str| format!("blk.{i}.{s}");
        tensors.push((p("attn_norm.weight"), ones(h)?));
        tensors.push((p("attn_q.weight"), rand(h, h, ws, t_attn)?));
        tensors.push((p("attn_k.weight"), rand(kvd, h, ws, t_attn)?));
        // Like the default model: half the layers keep attn_v in Q8_0.
        let v_t = if i % 2 == 0 && t_attn == GgmlDType::Q5_0 { GgmlDType::Q8_0 } else { t_attn };
        tensors.push((p("attn_v.weight"), rand(kvd, h, ws, v_t)?));
        if spec.qkv_bias {
            tensors.push((p("attn_q.bias"), rand(1, h, 0.1, GgmlDType::F32)?));
            tensors.push((p("attn_k.bias"), rand(1, kvd, 0.1, GgmlDType::F32)?));
            tensors.push((p("attn_v.bias"), rand(1, kvd, 0.1, GgmlDType::F32)?));
        }
        tensors.push((p("attn_output.weight"), rand(h, h, ws, t_attn)?));
        tensors.push((p("ffn_norm.weight"), ones(h)?));
        tensors.push((p("ffn_gate.weight"), rand(f, h, ws, t_attn)?));
        tensors.push((p("ffn_up.weight"), rand(f, h, ws, t_attn)?));
        let down_t = if i % 2 == 0 { t_down_even } else { t_down_odd };
        tensors.push((p("ffn_down.weight"), rand(h, f, 1.0 / (f as f32).sqrt(), down_t)?));
    }
    tensors.push(("output_norm.weight".into(), ones(h)?));
    if !spec.tied_output {
        tensors.push(("output.weight".into(), rand(vocab, h, ws * 4.0, t_out)?));
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut out, &md_refs, &t_refs)?;
    use std::io::Write;
    out.flush()?;
    Ok(n_tokens)
}

fn ones(n: usize) -> anyhow::Result<QTensor> {
    Ok(QTensor::quantize(&Tensor::ones(n, candle_core::DType::F32, &Device::Cpu)?, GgmlDType::F32)?)
}

fn family_eos(family: Family, tokens: &[String]) -> Option<u32> {
    let want = match family {
        Family::QwenCoder | Family::StarCoder2 => "<|endoftext|>",
        Family::DeepSeekCoder => "<｜end▁of▁sentence｜>",
        Family::CodeLlama => "</s>",
        Family::CodeGemma => "<eos>",
    };
    let idx: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    idx.get(want).map(|&i| i as u32)
}
