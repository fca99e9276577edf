//! Our Qwen2/Llama-family decoder on candle-core: RMSNorm, RoPE, grouped-query
//! attention, SwiGLU, optional QKV bias, tied or separate output, reading
//! quantized GGUF weights. Its KV cache can be truncated to any length, so a
//! prompt sharing a prefix with the previous one only processes new tokens.

use super::cpu::attention::{self, Shape};
use super::linear::{qtensor_from_raw, Linear};
use crate::models::gguf::{GgufError, GgufFile};
use candle_core::quantized::QTensor;
use candle_core::{CpuStorage, DType, Device, Result as CResult, Storage, StorageRef, Tensor};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{path}: {msg}")]
    Shape { path: PathBuf, msg: String },
    #[error("{path}: loading tensor '{tensor}': {msg}")]
    Tensor { path: PathBuf, tensor: String, msg: String },
    #[error("decoder: {}", .0.to_string().lines().next().unwrap_or(""))]
    Candle(#[from] candle_core::Error),
    #[error("decoder: {needed} positions exceed the model's context of {max}")]
    Context { needed: usize, max: usize },
    #[error("decoder: no memory for a KV cache of {positions} positions ({mib} MiB a layer)")]
    OutOfMemory { positions: usize, mib: usize },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Rotate the two halves of each head (Qwen2, NeoX).
    Halves,
    /// Rotate adjacent pairs (llama.cpp's llama layout).
    Interleaved,
}

#[derive(Debug, Clone)]
pub struct DecoderConfig {
    pub arch: String,
    pub n_layer: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub rope_base: f32,
    pub rms_eps: f64,
    pub context: usize,
    pub rope: RopeStyle,
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Repack Q5_0 to Q8_0 (exact) so the CPU uses SIMD kernels.
    pub repack: bool,
    /// Keep f32 copies of layer weights for prefill (fast, 4 bytes a weight).
    pub dense_prefill: bool,
    /// Activation dtype: f32 on CPU; f16/bf16 on GPUs.
    pub dtype: DType,
    /// Dequantize every linear weight to `dtype` at load and stack q/k/v and
    /// gate/up into one matrix each (GPUs: one cuBLAS GEMM per projection).
    pub dense_weights: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { repack: true, dense_prefill: false, dtype: DType::F32, dense_weights: false }
    }
}

/// Upper bound on positions we precompute RoPE tables for: a hostile header
/// can't make us allocate gigabytes, and wick's prompts are far shorter.
const MAX_POSITIONS: usize = 32768;

struct Layer {
    attn_norm: Tensor,
    qkv: Qkv,
    o: Linear,
    ffn_norm: Tensor,
    gate_up: GateUp,
    down: Linear,
    cache: KvCache,
}

/// The attention input projections: separate, or stacked into one matrix
/// whose output is [q | k | v].
enum Qkv {
    Split { q: Linear, k: Linear, v: Linear },
    Stacked(Linear),
}

/// The feed-forward input projections: separate, or stacked as [gate | up].
enum GateUp {
    Split { gate: Linear, up: Linear },
    Stacked(Linear),
}

/// Every layer's KV cache for one sequence, set aside while the decoder
/// works on another.
pub(crate) struct CacheSlot {
    layers: Vec<KvCache>,
    pos: usize,
}

/// A preallocated, growable, truncatable KV cache for one layer: plain
/// host memory (values `[n_kv_head, cap, head_dim]`, keys in the fused
/// attention's tiles, [`attention::store_key`]) that the CPU's fused
/// attention reads in place, or tensors on the device for candle's
/// attention. Which one follows the decoder's attention; `cap` positions
/// are allocated, the first `len` hold entries.
struct KvCache {
    store: KvStore,
    len: usize,
    cap: usize,
}

enum KvStore {
    Empty,
    Host { k: Vec<f32>, v: Vec<f32> },
    Device { k: Tensor, v: Tensor },
}

impl KvCache {
    fn empty() -> Self {
        KvCache { store: KvStore::Empty, len: 0, cap: 0 }
    }

    /// The capacity after growing to hold `need` positions: doubling, at
    /// least 256, at most `max` unless `need` is more.
    fn grown(&self, need: usize, max: usize) -> usize {
        need.max(self.cap * 2).max(256).min(max.max(need))
    }

    /// Appends `t` positions of `k` and `v` (`[heads, t, d]`, contiguous) to
    /// the host cache, growing it, and returns the whole host cache (k, v,
    /// and the positions allocated per head). A cache the machine has no
    /// memory for is an error, not an abort; the cache is unchanged then.
    fn append_host(
        &mut self,
        k: &[f32],
        v: &[f32],
        heads: usize,
        d: usize,
        max: usize,
    ) -> Result<(&[f32], &[f32], usize), DecoderError> {
        if !matches!(self.store, KvStore::Host { .. }) {
            // Entries held in the other attention's store are not carried
            // over: switching attention empties the cache.
            *self = KvCache::empty();
        }
        let t = k.len() / (heads * d);
        let need = self.len + t;
        if need > self.cap {
            // Whole key tiles: then keys (tiled) and values (rows) take
            // `cap * d` floats a head each.
            let cap = self.grown(need, max).next_multiple_of(attention::BK);
            let oom = || DecoderError::OutOfMemory { positions: cap, mib: (2 * heads * cap * d * 4) >> 20 };
            // Each head's first `kept` floats move to the new capacity.
            let grow = |old: &[f32], kept: usize| -> Result<Vec<f32>, DecoderError> {
                let size = heads.checked_mul(cap).and_then(|x| x.checked_mul(d)).ok_or_else(oom)?;
                let mut new = Vec::new();
                new.try_reserve_exact(size).map_err(|_| oom())?;
                new.resize(size, 0f32);
                for h in 0..heads {
                    new[h * cap * d..][..kept].copy_from_slice(&old[h * self.cap * d..][..kept]);
                }
                Ok(new)
            };
            let (kept_k, kept_v) = (self.len.next_multiple_of(attention::BK) * d, self.len * d);
            let (nk, nv) = match &self.store {
                KvStore::Host { k, v } => (grow(k, kept_k)?, grow(v, kept_v)?),
                _ => (grow(&[], 0)?, grow(&[], 0)?),
            };
            self.store = KvStore::Host { k: nk, v: nv };
            self.cap = cap;
        }
        let KvStore::Host { k: hk, v: hv } = &mut self.store else { unreachable!("the host store was just set") };
        for h in 0..heads {
            for (tt, row) in k[h * t * d..][..t * d].chunks_exact(d).enumerate() {
                attention::store_key(hk, self.cap, h, self.len + tt, row);
            }
            let at = (h * self.cap + self.len) * d;
            hv[at..][..t * d].copy_from_slice(&v[h * t * d..][..t * d]);
        }
        self.len += t;
        Ok((hk, hv, self.cap))
    }

    /// Appends `k` and `v` (`[b, heads, t, d]`) to the device cache, growing
    /// it, and returns the cached positions so far.
    fn append(&mut self, k: &Tensor, v: &Tensor, max: usize) -> CResult<(Tensor, Tensor)> {
        let (b, h, t, d) = k.dims4()?;
        if !matches!(self.store, KvStore::Device { .. }) {
            // As in `append_host`: nothing carried over from the other store.
            *self = KvCache::empty();
        }
        let need = self.len + t;
        if need > self.cap {
            let cap = self.grown(need, max);
            let nk = Tensor::zeros((b, h, cap, d), k.dtype(), k.device())?;
            let nv = Tensor::zeros((b, h, cap, d), v.dtype(), v.device())?;
            if let KvStore::Device { k: ok, v: ov } = &self.store {
                if self.len > 0 {
                    nk.slice_set(&ok.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                    nv.slice_set(&ov.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
                }
            }
            self.store = KvStore::Device { k: nk, v: nv };
            self.cap = cap;
        }
        let KvStore::Device { k: ck, v: cv } = &self.store else { unreachable!("the device store was just set") };
        ck.slice_set(&k.contiguous()?, 2, self.len)?;
        cv.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = need;
        Ok((ck.narrow(2, 0, need)?, cv.narrow(2, 0, need)?))
    }
}

pub struct Decoder {
    pub cfg: DecoderConfig,
    embed: QTensor,
    layers: Vec<Layer>,
    norm: Tensor,
    output: Linear,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    dtype: DType,
    /// The query projection already includes attention's 1/sqrt(head_dim).
    q_prescaled: bool,
    /// Attention through the fused CPU kernel (`cpu::attention`) rather
    /// than candle's matmuls and softmax over a masked score matrix.
    fused: bool,
    pos: usize,
}

impl Decoder {
    pub fn load(file: &mut GgufFile, device: &Device, opts: &LoadOptions) -> Result<Self, DecoderError> {
        let path = file.path.clone();
        let arch = file.architecture()?;
        let rope = match arch.as_str() {
            "qwen2" => RopeStyle::Halves,
            "llama" => RopeStyle::Interleaved,
            _ => return Err(GgufError::Architecture { path, arch }.into()),
        };
        let key = |k: &str| format!("{arch}.{k}");
        let n_layer = file.meta_u32(&key("block_count"))? as usize;
        let hidden = file.meta_u32(&key("embedding_length"))? as usize;
        let ffn = file.meta_u32(&key("feed_forward_length"))? as usize;
        let n_head = file.meta_u32(&key("attention.head_count"))? as usize;
        let n_kv_head = file.meta_u32(&key("attention.head_count_kv")).unwrap_or(n_head as u32) as usize;
        let context = file.meta_u32(&key("context_length")).unwrap_or(4096) as usize;
        let rope_base = file.meta_f32(&key("rope.freq_base")).unwrap_or(10000.0);
        let rms_eps = file.meta_f32(&key("attention.layer_norm_rms_epsilon")).unwrap_or(1e-6) as f64;
        let shape_err = |msg: String| DecoderError::Shape { path: path.clone(), msg };
        if n_layer == 0 || n_layer > 1024 || hidden == 0 || hidden > 65536 || ffn == 0 || ffn > 262144 {
            return Err(shape_err(format!("implausible dimensions: {n_layer} layers, hidden {hidden}, ffn {ffn}")));
        }
        if n_head == 0 || n_kv_head == 0 || !hidden.is_multiple_of(n_head) || !n_head.is_multiple_of(n_kv_head) {
            return Err(shape_err(format!(
                "inconsistent heads: hidden {hidden}, {n_head} heads, {n_kv_head} kv heads"
            )));
        }
        let head_dim = hidden / n_head;
        if !head_dim.is_multiple_of(2) {
            return Err(shape_err(format!("odd head dimension {head_dim}")));
        }
        let embed_dims = file
            .tensor_dims("token_embd.weight")
            .ok_or_else(|| shape_err("missing tensor 'token_embd.weight'".into()))?;
        let vocab = match embed_dims.as_slice() {
            [v, h] if *h == hidden => *v,
            d => return Err(shape_err(format!("token_embd.weight has shape {d:?}, expected [vocab, {hidden}]"))),
        };
        let cfg = DecoderConfig {
            arch: arch.clone(),
            n_layer,
            hidden,
            ffn,
            n_head,
            n_kv_head,
            head_dim,
            vocab,
            rope_base,
            rms_eps,
            context,
            rope,
        };
        let kv = n_kv_head * head_dim;
        let dt = opts.dtype;
        let dense = opts.dense_weights.then_some(dt);
        let mut w = Weights { file, device, repack: opts.repack && device.is_cpu(), dense };
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut q_prescaled = dense.is_some();

        // The embedding is only ever gathered row by row: keep it compact.
        let embed = w.load("token_embd.weight", &[vocab, hidden], false)?;
        let mut layers = Vec::with_capacity(n_layer);
        for i in 0..n_layer {
            let p = |s: &str| format!("blk.{i}.{s}");
            let linear = |w: &mut Weights, name: &str, out: usize, inp: usize| -> Result<Linear, DecoderError> {
                let bias_name = p(&format!("{name}.bias"));
                let bias = if w.has(&bias_name) { Some(w.dense(&bias_name, &[out], dt)?) } else { None };
                let mut l = w.linear(&p(&format!("{name}.weight")), &[out, inp], bias)?;
                if opts.dense_prefill {
                    l.keep_dense()?;
                }
                Ok(l)
            };
            let mut q = linear(&mut w, "attn_q", hidden, hidden)?;
            let k = linear(&mut w, "attn_k", kv, hidden)?;
            let v = linear(&mut w, "attn_v", kv, hidden)?;
            let o = linear(&mut w, "attn_output", hidden, hidden)?;
            let gate = linear(&mut w, "ffn_gate", ffn, hidden)?;
            let up = linear(&mut w, "ffn_up", ffn, hidden)?;
            let down = linear(&mut w, "ffn_down", hidden, ffn)?;
            // Dense weights: fold the attention scale into the queries (one
            // op less per layer, and q.k stays small in half precision), and
            // stack projections that read the same input.
            q_prescaled &= q.scale(scale)?;
            let parts = [q, k, v];
            let qkv = match Linear::stack(&parts)? {
                Some(l) => Qkv::Stacked(l),
                None => {
                    let [q, k, v] = parts;
                    Qkv::Split { q, k, v }
                }
            };
            let parts = [gate, up];
            let gate_up = match Linear::stack(&parts)? {
                Some(l) => GateUp::Stacked(l),
                None => {
                    let [gate, up] = parts;
                    GateUp::Split { gate, up }
                }
            };
            let attn_norm = w.dense(&p("attn_norm.weight"), &[hidden], dt)?;
            let ffn_norm = w.dense(&p("ffn_norm.weight"), &[hidden], dt)?;
            layers.push(Layer { attn_norm, qkv, o, ffn_norm, gate_up, down, cache: KvCache::empty() });
        }
        let norm = w.dense("output_norm.weight", &[hidden], dt)?;
        let output = if w.has("output.weight") {
            w.linear("output.weight", &[vocab, hidden], None)?
        } else {
            // Tied embeddings: a second, repacked copy for the matmul.
            w.linear("token_embd.weight", &[vocab, hidden], None)?
        };
        let positions = context.clamp(1, MAX_POSITIONS);
        let (cos, sin) = rope_tables(head_dim, rope_base, positions, device, dt)?;
        Ok(Decoder {
            cfg,
            embed,
            layers,
            norm,
            output,
            cos,
            sin,
            device: device.clone(),
            dtype: dt,
            q_prescaled,
            fused: device.is_cpu() && dt == DType::F32 && std::env::var("WICK_ATTENTION").as_deref() != Ok("candle"),
            pos: 0,
        })
    }

    /// Chooses the fused CPU attention (the default on the CPU) or candle's
    /// ops; the KV cache starts empty. For comparing the two.
    pub fn set_fused_attention(&mut self, on: bool) {
        self.fused = on && self.device.is_cpu() && self.dtype == DType::F32;
        self.clear();
        for l in &mut self.layers {
            l.cache = KvCache::empty();
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Number of positions held in the KV cache.
    pub fn cache_len(&self) -> usize {
        self.pos
    }

    /// Positions the RoPE tables cover: the longest sequence we run.
    pub(crate) fn max_positions(&self) -> usize {
        self.cos.dim(0).unwrap_or(0)
    }

    /// Forgets cached positions from `len` on; the next forward continues there.
    pub fn truncate(&mut self, len: usize) {
        self.pos = self.pos.min(len);
        for l in &mut self.layers {
            l.cache.len = l.cache.len.min(len);
        }
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }

    /// An empty KV cache to hold another sequence (see [`Decoder::swap_slot`]).
    pub(crate) fn empty_slot(&self) -> CacheSlot {
        CacheSlot { layers: self.layers.iter().map(|_| KvCache::empty()).collect(), pos: 0 }
    }

    /// Exchanges the decoder's KV cache with `slot`: the decoder continues
    /// the slot's sequence, and the slot keeps the one it had. No copies.
    pub(crate) fn swap_slot(&mut self, slot: &mut CacheSlot) {
        for (l, c) in self.layers.iter_mut().zip(&mut slot.layers) {
            std::mem::swap(&mut l.cache, c);
        }
        std::mem::swap(&mut self.pos, &mut slot.pos);
    }

    /// Runs `tokens` at the end of the cached sequence and returns the logits
    /// of the last position, as f32 on the CPU.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, DecoderError> {
        let logits = self.forward_tensor(tokens)?;
        Ok(logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
    }

    /// As `forward`, for greedy decoding: the argmax over the first `vocab`
    /// logits, computed where the logits are, so a GPU sends back 4 bytes
    /// instead of the whole row.
    pub(crate) fn forward_argmax(&mut self, tokens: &[u32], vocab: usize) -> Result<u32, DecoderError> {
        let logits = self.forward_tensor(tokens)?;
        let n = vocab.min(logits.dim(0)?);
        Ok(logits.narrow(0, 0, n)?.argmax(0)?.to_scalar::<u32>()?)
    }

    /// As `forward`, returning the logits tensor [vocab] on the device.
    pub(crate) fn forward_tensor(&mut self, tokens: &[u32]) -> Result<Tensor, DecoderError> {
        let t = tokens.len();
        if t == 0 {
            return Err(DecoderError::Candle(candle_core::Error::Msg("empty input".into())));
        }
        let pos = self.pos;
        let max = self.max_positions();
        if pos + t > max {
            return Err(DecoderError::Context { needed: pos + t, max });
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embed.embedding(&ids)?.to_dtype(self.dtype)?.unsqueeze(0)?;
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let group = self.cfg.n_head / self.cfg.n_kv_head;
        let fused = self.fused;
        let mask = if t > 1 && !fused { Some(causal_mask(t, pos, &self.device, self.dtype)?) } else { None };
        let eps = self.cfg.rms_eps as f32;
        let cfg = &self.cfg;
        let kv = cfg.n_kv_head * cfg.head_dim;
        let scale = if self.q_prescaled { None } else { Some(1.0 / (cfg.head_dim as f64).sqrt()) };
        for layer in &mut self.layers {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps)?;
            let (q, k, v) = match &layer.qkv {
                Qkv::Split { q, k, v } => (q.forward(&h)?, k.forward(&h)?, v.forward(&h)?),
                Qkv::Stacked(l) => {
                    let y = l.forward(&h)?;
                    (y.narrow(2, 0, cfg.hidden)?, y.narrow(2, cfg.hidden, kv)?, y.narrow(2, cfg.hidden + kv, kv)?)
                }
            };
            let q = q.reshape((1, t, cfg.n_head, cfg.head_dim))?.transpose(1, 2)?.contiguous()?;
            let k = k.reshape((1, t, cfg.n_kv_head, cfg.head_dim))?.transpose(1, 2)?.contiguous()?;
            let v = v.reshape((1, t, cfg.n_kv_head, cfg.head_dim))?.transpose(1, 2)?.contiguous()?;
            let (q, k) = match cfg.rope {
                RopeStyle::Halves => {
                    (candle_nn::rotary_emb::rope(&q, &cos, &sin)?, candle_nn::rotary_emb::rope(&k, &cos, &sin)?)
                }
                RopeStyle::Interleaved => {
                    (candle_nn::rotary_emb::rope_i(&q, &cos, &sin)?, candle_nn::rotary_emb::rope_i(&k, &cos, &sin)?)
                }
            };
            let y = if fused {
                // q, k and v read in place (they are contiguous f32 on the
                // CPU): k and v are copied once, into the cache.
                let (qh, kh, vh) = (HostF32::of(&q)?, HostF32::of(&k)?, HostF32::of(&v)?);
                let (ck, cv, stride) =
                    layer.cache.append_host(kh.slice(), vh.slice(), cfg.n_kv_head, cfg.head_dim, max)?;
                let shape =
                    Shape { n_head: cfg.n_head, n_kv_head: cfg.n_kv_head, head_dim: cfg.head_dim, t, pos, stride };
                let mut y = vec![0f32; t * cfg.hidden];
                attention::causal(qh.slice(), ck, cv, shape, scale.unwrap_or(1.0) as f32, &mut y);
                Tensor::from_vec(y, (1, t, cfg.hidden), &self.device)?
            } else {
                let (k_all, v_all) = layer.cache.append(&k, &v, max)?;
                // Grouped-query attention without copying K/V per head: the
                // query heads sharing one KV head become extra query rows.
                let mut q = q.reshape((1, cfg.n_kv_head, group * t, cfg.head_dim))?;
                if let Some(s) = scale {
                    // Scaling the queries rather than the scores: fewer elements.
                    q = (q * s)?;
                }
                let mut att = q.matmul(&k_all.t()?)?;
                if let Some(m) = &mask {
                    // Rows are (query head in the group, position): one causal
                    // mask broadcast over both head dimensions.
                    let total = att.dim(3)?;
                    att = att.reshape((cfg.n_kv_head, group, t, total))?.broadcast_add(m)?.reshape((
                        1,
                        cfg.n_kv_head,
                        group * t,
                        total,
                    ))?;
                }
                let att = candle_nn::ops::softmax_last_dim(&att)?;
                let y = att.matmul(&v_all)?;
                y.reshape((1, cfg.n_head, t, cfg.head_dim))?.transpose(1, 2)?.reshape((1, t, cfg.hidden))?
            };
            let y = layer.o.forward(&y)?;
            x = (x + y)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps)?;
            let (g, u) = match &layer.gate_up {
                GateUp::Split { gate, up } => (gate.forward(&h)?, up.forward(&h)?),
                GateUp::Stacked(l) => {
                    let y = l.forward(&h)?;
                    (y.narrow(2, 0, cfg.ffn)?, y.narrow(2, cfg.ffn, cfg.ffn)?)
                }
            };
            let y = layer.down.forward(&(candle_nn::ops::silu(&g)? * u)?)?;
            x = (x + y)?;
        }
        self.pos = pos + t;
        let last = x.narrow(1, t - 1, 1)?.contiguous()?;
        let last = candle_nn::ops::rms_norm(&last, &self.norm, eps)?;
        let logits = self.output.forward(&last)?;
        Ok(logits.flatten_all()?)
    }
}

/// The elements of a contiguous f32 tensor in host memory, borrowed in
/// place (candle's `to_vec1` would copy them).
struct HostF32<'a> {
    storage: StorageRef<'a>,
    range: std::ops::Range<usize>,
}

impl<'a> HostF32<'a> {
    fn of(x: &'a Tensor) -> CResult<Self> {
        let (storage, layout) = x.storage_and_layout();
        let range = match (&*storage, layout.contiguous_offsets()) {
            (Storage::Cpu(CpuStorage::F32(_)), Some((start, end))) => start..end,
            _ => return Err(candle_core::Error::Msg(format!("expected a contiguous f32 CPU tensor, got {x:?}"))),
        };
        Ok(HostF32 { storage, range })
    }

    fn slice(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(all)) => &all[self.range.clone()],
            _ => unreachable!("checked by HostF32::of"),
        }
    }
}

struct Weights<'a> {
    file: &'a mut GgufFile,
    device: &'a Device,
    repack: bool,
    /// Dequantize linear weights to this dtype.
    dense: Option<DType>,
}

impl Weights<'_> {
    fn has(&self, name: &str) -> bool {
        self.file.has_tensor(name)
    }

    fn load(&mut self, name: &str, want: &[usize], repack: bool) -> Result<QTensor, DecoderError> {
        let (dtype, dims, raw) = self.file.tensor_bytes(name)?;
        if dims != want {
            return Err(DecoderError::Shape {
                path: self.file.path.clone(),
                msg: format!("tensor '{name}' has shape {dims:?}, expected {want:?}"),
            });
        }
        qtensor_from_raw(dtype, &dims, &raw, self.device, repack && self.repack).map_err(|e| DecoderError::Tensor {
            path: self.file.path.clone(),
            tensor: name.into(),
            msg: e.to_string().lines().next().unwrap_or("").to_string(),
        })
    }

    /// A linear layer; on the CPU with repacking on, Q8_0/Q5_0 weights use
    /// our decode kernels.
    fn linear(&mut self, name: &str, want: &[usize], bias: Option<Tensor>) -> Result<Linear, DecoderError> {
        let (dtype, dims, raw) = self.file.tensor_bytes(name)?;
        if dims != want {
            return Err(DecoderError::Shape {
                path: self.file.path.clone(),
                msg: format!("tensor '{name}' has shape {dims:?}, expected {want:?}"),
            });
        }
        let l = match self.dense {
            Some(act) => Linear::dense_from_raw(dtype, &dims, &raw, self.device, act, bias),
            None => Linear::from_raw(dtype, &dims, &raw, self.device, self.repack, bias),
        };
        l.map_err(|e| DecoderError::Tensor {
            path: self.file.path.clone(),
            tensor: name.into(),
            msg: e.to_string().lines().next().unwrap_or("").to_string(),
        })
    }

    fn dense(&mut self, name: &str, want: &[usize], dt: DType) -> Result<Tensor, DecoderError> {
        let q = self.load(name, want, false)?;
        Ok(q.dequantize(self.device)?.to_dtype(dt)?)
    }
}

fn rope_tables(head_dim: usize, base: f32, positions: usize, dev: &Device, dt: DType) -> CResult<(Tensor, Tensor)> {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(positions * half);
    let mut sin = Vec::with_capacity(positions * half);
    for p in 0..positions {
        for i in 0..half {
            // f32 like the reference implementations, so logits match closely.
            let theta = 1f32 / base.powf((2 * i) as f32 / head_dim as f32);
            let a = (p as f32) * theta;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    let cos = Tensor::from_vec(cos, (positions, half), dev)?.to_dtype(dt)?;
    let sin = Tensor::from_vec(sin, (positions, half), dev)?.to_dtype(dt)?;
    Ok((cos, sin))
}

/// candle's quantized matmuls (the K-quant weights) run on its own worker
/// pool, whose idle workers spin 25,000 pauses (~0.5 ms) before they sleep,
/// holding a core that our kernels' pool needs for the next projection: on
/// 2 cores that cost decode a fifth of its speed (41-47 against 53-66 tok/s
/// with 200, `wick bench`, default model). A value the user set is kept.
/// Call it first thing in `main`, before any thread starts (changing the
/// environment is safe only then) and before that pool starts.
pub(crate) fn quiet_candle_workers() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        std::env::set_var(VAR, "200");
    }
}

/// Additive causal mask [t, pos + t] for `t` new queries after `pos` cached
/// positions, built on the device: query i sees keys 0..=pos+i.
fn causal_mask(t: usize, pos: usize, dev: &Device, dt: DType) -> CResult<Tensor> {
    let total = pos + t;
    let rows = Tensor::arange(pos as u32, total as u32, dev)?.reshape((t, 1))?;
    let cols = Tensor::arange(0u32, total as u32, dev)?.reshape((1, total))?;
    let future = cols.broadcast_gt(&rows)?;
    let blocked = Tensor::new(f32::NEG_INFINITY, dev)?.to_dtype(dt)?.broadcast_as((t, total))?;
    let open = Tensor::zeros((), dt, dev)?.broadcast_as((t, total))?;
    future.where_cond(&blocked, &open)
}
