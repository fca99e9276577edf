//! One loaded model with its KV cache and the token sequence that cache
//! holds: generation with reuse of the longest shared prefix, stop rules,
//! a wall-clock budget, cancellation between tokens and token healing.

use super::decoder::{CacheSlot, Decoder, DecoderError, LoadOptions};
use super::sampling::{sample, Sampling};
use crate::models::gguf::GgufFile;
use crate::models::tokenizer::Tokenizer;
use crate::prompt::{Family, Piece, Prompt};
use candle_core::Device;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Prompt tokens processed per forward pass during prefill on the CPU:
/// bounds the attention scratch memory and how long a cancellation waits.
pub(crate) const PREFILL_CHUNK: usize = 256;

/// The same on GPUs, where a chunk takes milliseconds and each one pays
/// ~500 kernel launches: bigger chunks, fewer launches.
pub(crate) const GPU_PREFILL_CHUNK: usize = 1024;

/// Idle work (prefetch) prefills in chunks this many times smaller, so that
/// a real request, which interrupts it between chunks, waits less.
pub(crate) const IDLE_CHUNK_DIVISOR: usize = 4;

pub(crate) fn prefill_chunk(device: &Device) -> usize {
    if device.is_cpu() {
        PREFILL_CHUNK
    } else {
        GPU_PREFILL_CHUNK
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Decoder(#[from] DecoderError),
    #[error(transparent)]
    Tokenizer(#[from] crate::models::tokenizer::TokenizerError),
    #[error(
        "the prompt has {prompt} tokens; with {max_tokens} to generate that exceeds the {limit} positions available"
    )]
    PromptTooLong { prompt: usize, max_tokens: usize, limit: usize },
    #[error("request cancelled")]
    Cancelled,
    #[error("superseded by a newer request")]
    Superseded,
    #[error("the model is still loading")]
    NotReady,
    #[error("the model failed to load: {0}")]
    LoadFailed(String),
    #[error("the engine has stopped")]
    Stopped,
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Remote(#[from] super::remote::RemoteError),
}

#[derive(Debug, Clone)]
pub struct Request {
    pub prompt: Prompt,
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// Text at which the answer ends (not included).
    pub stop: Vec<String>,
    /// Wall-clock budget for the whole request; generation stops when spent.
    pub budget: Option<Duration>,
    /// Back off the last prompt token when the prompt ends in text, and make
    /// the first generated token extend it.
    pub heal: bool,
    /// Requests with the same key supersede older ones (one document).
    pub key: Option<String>,
    /// When the request arrived, from [`arrival`](super::arrival); 0: when
    /// it is submitted. Among requests of one key, only a later arrival
    /// supersedes: a caller that prepares before submitting (and can
    /// finish its preparation out of order) stamps the request first.
    pub arrived: u64,
    /// Ends the answer when this says the text so far is complete (the
    /// text is kept whole; the caller cuts it). For rules that stop strings
    /// cannot say, like a function body that has ended.
    pub until: Option<StopWhen>,
    /// Idle priority (prefetch): runs only when no other request waits,
    /// stops between (smaller) prefill chunks as soon as one arrives, and
    /// leaves what it prefilled in the cache.
    pub idle: bool,
    /// Other candidates wanted besides the main answer. Each branches from
    /// it where the model was unsure: it shares the main answer's tokens up
    /// to a step where another token was at least [`MIN_ALTERNATIVE_P`]
    /// likely, takes that token instead and goes on greedily under the same
    /// stop rules (the earliest such steps first, the likelier token first
    /// at a step). They share the KV cache of the prompt and of the shared
    /// tokens, so each costs about its own tokens, and all of them together
    /// at most 1.5 times the main answer's decoding time (one cut short ends with
    /// `StopReason::Budget`). Fewer come back when the model was sure
    /// throughout, or when the request is interrupted or out of budget.
    pub alternatives: usize,
}

/// An alternative's diverging token must be at least this likely (after
/// the token-healing constraint): less likely ones are noise.
pub const MIN_ALTERNATIVE_P: f32 = 0.01;

/// A predicate over the answer so far: true when generating more is wasted.
#[derive(Clone)]
pub struct StopWhen(pub std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for StopWhen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopWhen(..)")
    }
}

impl Request {
    pub fn new(prompt: Prompt) -> Self {
        Request {
            prompt,
            max_tokens: 64,
            sampling: Sampling::default(),
            stop: Vec::new(),
            budget: None,
            heal: true,
            key: None,
            arrived: 0,
            until: None,
            idle: false,
            alternatives: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndToken,
    StopText,
    MaxTokens,
    Budget,
    Cancelled,
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub stop: StopReason,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV entries were reused from the previous request.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub healed: bool,
    /// The generated token ids, stop token included.
    pub tokens: Vec<u32>,
    /// The other candidates asked for ([`Request::alternatives`]), most
    /// likely first token first.
    pub alternatives: Vec<Alternative>,
}

/// A candidate that branches from the main answer.
#[derive(Debug, Clone)]
pub struct Alternative {
    pub text: String,
    pub stop: StopReason,
    /// All its tokens: the main answer's first `at`, then its own.
    pub tokens: Vec<u32>,
    /// Where it leaves the main answer (a token index).
    pub at: usize,
    /// The probability of its token there.
    pub p: f32,
}

/// One greedy continuation from the prompt.
struct Branch {
    text: String,
    stop: StopReason,
    tokens: Vec<u32>,
    /// With `Request::alternatives`: at each step, the other tokens allowed
    /// there at least [`MIN_ALTERNATIVE_P`] likely, likeliest first.
    others: Vec<Vec<(u32, f32)>>,
}

#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub path: String,
    pub arch: String,
    pub family: Option<Family>,
    pub n_layer: usize,
    pub hidden: usize,
    pub vocab: usize,
    pub context: usize,
    pub has_chat_template: bool,
    /// The GGUF's `tokenizer.chat_template` (Jinja), if any.
    pub chat_template: Option<String>,
    /// A remote serving engine, not the in-process model.
    pub remote: bool,
    /// Counts text in the model's tokens, where wick has its vocabulary
    /// (always locally; remotely with a `tokenizer` or the local GGUF).
    pub tokens: Option<TokenCounter>,
}

type CountFn = dyn Fn(&str) -> Option<usize> + Send + Sync;

/// Texts at least this long say how many characters a token holds.
const RATIO_MIN_BYTES: usize = 1000;

/// Counts the tokens a text encodes to (as text: special-token look-alikes
/// are not special), so that windows are sized in the model's own tokens.
/// Remembers the characters per token of the last long text it counted, the
/// best first guess for the next window of the same file.
#[derive(Clone)]
pub struct TokenCounter {
    count: Arc<CountFn>,
    /// Bytes per token x 100 of the last text of [`RATIO_MIN_BYTES`] or more.
    last_ratio: Arc<std::sync::atomic::AtomicUsize>,
}

impl TokenCounter {
    pub fn new(count: impl Fn(&str) -> Option<usize> + Send + Sync + 'static) -> TokenCounter {
        TokenCounter { count: Arc::new(count), last_ratio: Arc::new(std::sync::atomic::AtomicUsize::new(0)) }
    }

    pub(crate) fn of_tokenizer(t: Arc<Tokenizer>) -> TokenCounter {
        TokenCounter::new(move |text| t.encode(text).ok().map(|ids| ids.len()))
    }

    /// None when the text cannot be encoded.
    pub fn count(&self, text: &str) -> Option<usize> {
        let n = (self.count)(text)?;
        if text.len() >= RATIO_MIN_BYTES && n > 0 {
            self.last_ratio.store(text.len() * 100 / n, Ordering::Relaxed);
        }
        Some(n)
    }

    /// Bytes per token of the last long text counted (None before one).
    pub(crate) fn bytes_per_token(&self) -> Option<f64> {
        let r = self.last_ratio.load(Ordering::Relaxed);
        (r > 0).then(|| r as f64 / 100.0)
    }
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCounter")
    }
}

pub struct Session {
    pub decoder: Decoder,
    pub tokenizer: Arc<Tokenizer>,
    pub family: Option<Family>,
    /// Tokens whose keys and values are in the decoder's cache, in order.
    cached: Vec<u32>,
    stop_ids: Vec<u32>,
    path: String,
    /// Greedy decoding takes the argmax where the logits are (GPUs: 4 bytes
    /// back per token instead of the whole row).
    argmax_on_device: bool,
    /// KV caches of other sequences, set aside: a code-action fix or another
    /// file's completion does not throw away the cache of the file being
    /// typed in, whose next keystroke would prefill cold.
    spares: Vec<Spare>,
    spare_slots: usize,
    /// Request counter, and when the active cache was last used.
    clock: u64,
    active_used: u64,
}

struct Spare {
    cached: Vec<u32>,
    slot: CacheSlot,
    used: u64,
}

/// KV caches kept besides the active one, by default.
pub(crate) const SPARE_SLOTS: usize = 2;
/// A cache is set aside rather than overwritten when a prompt would discard
/// at least this many of its tokens, and most of them.
const SLOT_KEEP_MIN_TOKENS: usize = 64;

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Session {
    pub fn load(path: &Path, device: &Device, opts: &LoadOptions) -> Result<Self, EngineError> {
        let mut file = GgufFile::open(path).map_err(DecoderError::from)?;
        // Architecture first: its error is the most useful one.
        file.architecture().map_err(DecoderError::from)?;
        let tokenizer = Tokenizer::from_gguf(&file.content).map_err(|e| {
            let e = e.to_string();
            let e = e.trim_start_matches("tokenizer: ").lines().next().unwrap_or("").to_string();
            crate::models::tokenizer::TokenizerError::Build(format!("{}: {e}", path.display()))
        })?;
        let decoder = Decoder::load(&mut file, device, opts)?;
        if tokenizer.vocab_size() > decoder.cfg.vocab {
            return Err(EngineError::Decoder(DecoderError::Shape {
                path: path.to_path_buf(),
                msg: format!(
                    "tokenizer has {} tokens but the embedding only {} rows",
                    tokenizer.vocab_size(),
                    decoder.cfg.vocab
                ),
            }));
        }
        Ok(Self::new(decoder, tokenizer, path.display().to_string()))
    }

    pub fn new(decoder: Decoder, tokenizer: Tokenizer, path: String) -> Self {
        let family = Family::detect(|t| tokenizer.token_id(t).is_some());
        let mut stop_ids: Vec<u32> = tokenizer.eos_id.into_iter().collect();
        if let Some(f) = family {
            for s in f.tokens().stops {
                if let Some(id) = tokenizer.token_id(s) {
                    stop_ids.push(id);
                }
            }
        }
        let argmax_on_device = !decoder.device().is_cpu();
        Session {
            decoder,
            tokenizer: Arc::new(tokenizer),
            family,
            cached: Vec::new(),
            stop_ids,
            path,
            argmax_on_device,
            spares: Vec::new(),
            spare_slots: SPARE_SLOTS,
            clock: 0,
            active_used: 0,
        }
    }

    pub fn info(&self) -> ModelInfo {
        let c = &self.decoder.cfg;
        ModelInfo {
            path: self.path.clone(),
            arch: c.arch.clone(),
            family: self.family,
            n_layer: c.n_layer,
            hidden: c.hidden,
            vocab: c.vocab,
            context: c.context.min(self.decoder.max_positions()),
            has_chat_template: self.tokenizer.chat_template.is_some(),
            chat_template: self.tokenizer.chat_template.clone(),
            remote: false,
            tokens: Some(TokenCounter::of_tokenizer(self.tokenizer.clone())),
        }
    }

    pub fn encode_prompt(&self, prompt: &Prompt) -> Result<Vec<u32>, EngineError> {
        Ok(self.encode_pieces(prompt, false)?.0)
    }

    /// Encodes the pieces; with `heal`, backs off the last token of the
    /// cursor piece and returns its bytes.
    fn encode_pieces(&self, prompt: &Prompt, heal: bool) -> Result<(Vec<u32>, Vec<u8>), EngineError> {
        let mut ids = Vec::new();
        let mut healed = Vec::new();
        for (i, p) in prompt.pieces.iter().enumerate() {
            match p {
                Piece::Text(t) => {
                    let mut piece = self.tokenizer.encode(t)?;
                    if heal && prompt.cursor_piece == Some(i) && piece.len() >= 2 {
                        let last = *piece.last().unwrap();
                        let bytes = self.tokenizer.bytes_of(last);
                        // Normalization may have changed the text: only heal
                        // when the token really spells the end of the text.
                        if !self.tokenizer.is_special(last) && !bytes.is_empty() && t.as_bytes().ends_with(bytes) {
                            healed = bytes.to_vec();
                            piece.pop();
                        }
                    }
                    ids.extend(piece);
                }
                Piece::Special(s) => ids.push(self.tokenizer.require(s)?),
                Piece::Control(s) => match self.tokenizer.token_id(s) {
                    Some(id) if self.tokenizer.is_special(id) => ids.push(id),
                    _ => ids.extend(self.tokenizer.encode(s)?),
                },
            }
        }
        Ok((ids, healed))
    }

    /// Chooses where greedy decoding takes its argmax (on by default on GPUs;
    /// tests turn it on for the CPU).
    pub fn set_argmax_on_device(&mut self, on: bool) {
        self.argmax_on_device = on;
    }

    /// Drops the KV cache (the next request prefills from scratch).
    pub fn reset(&mut self) {
        self.cached.clear();
        self.decoder.clear();
        self.spares.clear(); // their tensors go with them
    }

    /// How many KV caches are kept besides the active one (0: one cache,
    /// overwritten by every other prompt; benchmarks compare).
    pub(crate) fn set_spare_slots(&mut self, n: usize) {
        self.spare_slots = n;
        self.reset();
    }

    /// Makes the KV cache that holds most of `ids` the active one. When the
    /// prompt would discard most of the active cache (another file, a fix),
    /// that cache is set aside and the least recently used spare is taken.
    fn choose_slot(&mut self, ids: &[u32]) {
        self.clock += 1;
        let here = common_prefix(&self.cached, ids);
        let best = self.spares.iter().enumerate().map(|(i, s)| (common_prefix(&s.cached, ids), i)).max();
        let lost = self.cached.len() - here;
        let target = match best {
            Some((n, i)) if n > here => Some(i),
            _ if lost >= SLOT_KEEP_MIN_TOKENS && here < self.cached.len() / 2 => {
                if self.spares.len() < self.spare_slots {
                    self.spares.push(Spare { cached: Vec::new(), slot: self.decoder.empty_slot(), used: 0 });
                    Some(self.spares.len() - 1)
                } else {
                    self.spares.iter().enumerate().min_by_key(|(_, s)| s.used).map(|(i, _)| i)
                }
            }
            _ => None,
        };
        if let Some(i) = target {
            let sp = &mut self.spares[i];
            self.decoder.swap_slot(&mut sp.slot);
            std::mem::swap(&mut self.cached, &mut sp.cached);
            sp.used = self.active_used;
        }
        self.active_used = self.clock;
    }

    pub fn generate(&mut self, req: &Request, cancel: &AtomicBool) -> Result<Generation, EngineError> {
        self.generate_with(req, &|| cancel.load(Ordering::Relaxed))
    }

    /// Generates, checking `interrupted` between prefill chunks and between
    /// tokens. Prefill work already done stays in the KV cache, so an
    /// interrupted request still speeds up the next one.
    pub(crate) fn generate_with(
        &mut self,
        req: &Request,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<Generation, EngineError> {
        let start = Instant::now();
        // Token healing: the text at the cursor may end mid-token; back off
        // that token and require the first generated one to start with it.
        let (mut ids, heal) = self.encode_pieces(&req.prompt, req.heal)?;
        if ids.is_empty() {
            // Nothing to condition on: start from the BOS/EOS token.
            ids.push(self.tokenizer.bos_id.or(self.tokenizer.eos_id).unwrap_or(0));
        }

        let limit = self.decoder.max_positions();
        if ids.len() + req.max_tokens > limit {
            return Err(EngineError::PromptTooLong { prompt: ids.len(), max_tokens: req.max_tokens, limit });
        }

        // Reuse the longest prefix a cache already holds.
        self.choose_slot(&ids);
        let mut common = common_prefix(&self.cached, &ids);
        if common == ids.len() {
            common -= 1; // we need the logits of the last prompt token
        }
        self.decoder.truncate(common);
        self.cached.truncate(common);
        let reused = common;
        let mut logits = Vec::new();
        let mut pos = common;
        let mut chunk = prefill_chunk(self.decoder.device());
        if req.idle {
            chunk = (chunk / IDLE_CHUNK_DIVISOR).max(1);
        }
        while pos < ids.len() {
            if interrupted() {
                return Err(EngineError::Cancelled);
            }
            let end = (pos + chunk).min(ids.len());
            let r = self.decoder.forward(&ids[pos..end]);
            let l = match r {
                Ok(l) => l,
                Err(e) => {
                    // The cache may hold part of this chunk: forget it.
                    self.decoder.truncate(pos);
                    self.cached.truncate(pos);
                    return Err(e.into());
                }
            };
            self.cached.extend_from_slice(&ids[pos..end]);
            logits = l;
            pos = end;
        }
        let prefill_ms = start.elapsed().as_secs_f64() * 1e3;
        let decode_start = Instant::now();
        // The budget bounds generation: a long cold prefill is work the next
        // request reuses, and cutting it short would only lose the answer.
        let deadline = req.budget.map(|b| decode_start + b);
        let vocab_used = self.tokenizer.vocab_size();
        // Tokens past the tokenizer's vocabulary (padding rows) are never chosen.
        mask_padding(&mut logits, vocab_used);
        let mut rng = StdRng::seed_from_u64(req.sampling.seed);
        let record = req.alternatives > 0;
        let main = self.decode(req, logits, &[], None, &heal, record, interrupted, deadline, &mut rng)?;
        let mut alternatives = Vec::new();
        // The alternatives together take at most half as long again as the
        // main answer did (a quarter second at least): asking for more costs
        // about one more answer and a half, even when each would run to
        // many lines.
        let spent = decode_start.elapsed().mul_f32(1.5).max(Duration::from_millis(250));
        let alt_deadline = Some(deadline.map_or(Instant::now() + spent, |d| d.min(Instant::now() + spent)));
        if main.stop != StopReason::Cancelled {
            // The earliest unsure steps first, the likelier token first. A
            // token that spells what the main answer goes on with (" range"
            // or " range(2" where it took " range(") writes the same answer
            // in other tokens: not an alternative. What the answer goes on
            // with is decoded once per unsure step, and only for the steps
            // reached.
            // (A handle of its own: the loop below borrows `self` mutably.)
            let tokenizer = self.tokenizer.clone();
            let tk = &*tokenizer;
            let branches = main.others.iter().enumerate().filter(|(_, o)| !o.is_empty()).flat_map(|(at, o)| {
                let ahead = tk.decode_bytes(&main.tokens[at..]);
                o.iter().filter(move |&&(t, _)| !ahead.starts_with(tk.bytes_of(t))).map(move |&(t, p)| (at, t, p))
            });
            for (at, tok, p) in branches.take(req.alternatives) {
                if interrupted() || alt_deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                // The cache must hold the prompt and the shared tokens: keep
                // what it holds of them, feed the rest (a short batch).
                let mut want = ids.clone();
                want.extend_from_slice(&main.tokens[..at]);
                let keep = common_prefix(&self.cached, &want);
                self.decoder.truncate(keep);
                self.cached.truncate(keep);
                if keep < want.len() {
                    if let Err(e) = self.decoder.forward(&want[keep..]) {
                        self.decoder.truncate(keep);
                        return Err(e.into());
                    }
                    self.cached.extend_from_slice(&want[keep..]);
                }
                let prior = &main.tokens[..at];
                let b =
                    self.decode(req, Vec::new(), prior, Some(tok), &heal, false, interrupted, alt_deadline, &mut rng)?;
                if b.stop == StopReason::Cancelled {
                    break;
                }
                alternatives.push(Alternative { text: b.text, stop: b.stop, tokens: b.tokens, at, p });
            }
        }
        Ok(Generation {
            text: main.text,
            stop: main.stop,
            prompt_tokens: ids.len() + usize::from(!heal.is_empty()),
            reused_tokens: reused,
            generated_tokens: main.tokens.len(),
            prefill_ms,
            decode_ms: decode_start.elapsed().as_secs_f64() * 1e3,
            healed: !heal.is_empty(),
            tokens: main.tokens,
            alternatives,
        })
    }

    /// The tokens other than `chosen` allowed at a step (`allowed`: token
    /// healing's rule there) that do not end the answer, each at least
    /// [`MIN_ALTERNATIVE_P`] likely, likeliest first (at most a few).
    fn unsure(&self, logits: &[f32], chosen: u32, allowed: Option<&dyn Fn(u32) -> bool>) -> Vec<(u32, f32)> {
        const MOST: usize = crate::config::MAX_SUGGESTIONS;
        let ok = |t: u32| logits[t as usize].is_finite() && allowed.is_none_or(|f| f(t));
        let max =
            logits.iter().enumerate().filter(|&(t, _)| ok(t as u32)).map(|(_, &l)| l).fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() {
            return Vec::new();
        }
        let mut sum = 0.0f32;
        let mut top: Vec<(u32, f32)> = Vec::new();
        for (t, &l) in logits.iter().enumerate() {
            let t = t as u32;
            if !ok(t) {
                continue;
            }
            let e = super::cpu::attention::exp(l - max);
            sum += e;
            let ends = self.stop_ids.contains(&t) || self.tokenizer.is_special(t);
            if t != chosen && !ends && (top.len() < MOST || e > top[MOST - 1].1) {
                top.push((t, e));
                top.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                top.truncate(MOST);
            }
        }
        top.into_iter().map(|(t, e)| (t, e / sum)).filter(|&(_, p)| p >= MIN_ALTERNATIVE_P).collect()
    }

    /// Decodes one answer greedily (or by `req.sampling`) from the logits of
    /// the last token in the cache, until a stop rule, the token count, the
    /// budget or an interruption ends it. `prior`: tokens of the answer
    /// already in the cache (a branch's shared start); `first`: the token
    /// to take next instead of choosing one (then `logits` is not read).
    /// `record`: note the unsure steps ([`Branch::others`]).
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &mut self,
        req: &Request,
        mut logits: Vec<f32>,
        prior: &[u32],
        first: Option<u32>,
        heal: &[u8],
        record: bool,
        interrupted: &dyn Fn() -> bool,
        deadline: Option<Instant>,
        rng: &mut StdRng,
    ) -> Result<Branch, EngineError> {
        let limit = self.decoder.max_positions();
        let over = || deadline.is_some_and(|d| Instant::now() >= d);
        let mut out: Vec<u8> = Vec::new();
        let mut text = String::new();
        let mut stop = StopReason::MaxTokens;
        let mut tokens = prior.to_vec();
        let mut generated = tokens.len();
        let mut others = Vec::new();
        let vocab_used = self.tokenizer.vocab_size();
        let mut pending = heal.to_vec();
        for &t in prior {
            out.extend_from_slice(self.tokenizer.bytes_of(t));
            let n = self.tokenizer.bytes_of(t).len().min(pending.len());
            pending.drain(..n);
        }
        // Noting the unsure steps needs the logits on the host.
        let greedy_on_device = self.argmax_on_device && req.sampling.temperature <= 0.0 && !record;
        let mut chosen: Option<u32> = None;
        let mut forced = first;
        while generated < req.max_tokens {
            // Token healing: until the backed-off bytes are spelled again,
            // each token either covers the rest of them (and does not just
            // end the line there, an empty answer) or is a piece of them.
            let tok = if let Some(t) = chosen.take() {
                t
            } else if !pending.is_empty() {
                let tk = &self.tokenizer;
                let h = pending.as_slice();
                let allowed = |t: u32| heal_allows(tk, h, t);
                let t = match forced.take() {
                    Some(t) => t,
                    None => sample(&logits, &req.sampling, rng, Some(&allowed)),
                };
                if record {
                    others.push(self.unsure(&logits, t, Some(&allowed)));
                }
                let n = tk.bytes_of(t).len().min(pending.len());
                pending.drain(..n);
                t
            } else if let Some(t) = forced.take() {
                t
            } else {
                let t = sample(&logits, &req.sampling, rng, None);
                if record {
                    others.push(self.unsure(&logits, t, None));
                }
                t
            };
            generated += 1;
            tokens.push(tok);
            if self.stop_ids.contains(&tok) || self.tokenizer.is_special(tok) {
                stop = StopReason::EndToken;
                break;
            }
            out.extend_from_slice(self.tokenizer.bytes_of(tok));
            let body = if out.len() >= heal.len() { &out[heal.len()..] } else { &[][..] };
            text = String::from_utf8_lossy(body).into_owned();
            if let Some(cut) = first_stop(&text, &req.stop) {
                text.truncate(cut);
                stop = StopReason::StopText;
                break;
            }
            if req.until.as_ref().is_some_and(|u| (u.0)(&text)) {
                stop = StopReason::StopText;
                break;
            }
            if generated >= req.max_tokens {
                break;
            }
            if interrupted() {
                stop = StopReason::Cancelled;
                break;
            }
            if over() {
                stop = StopReason::Budget;
                break;
            }
            if self.cached.len() + 1 > limit {
                stop = StopReason::ContextFull;
                break;
            }
            let pos = self.cached.len();
            let step = if greedy_on_device && pending.is_empty() {
                self.decoder.forward_argmax(&[tok], vocab_used).map(|t| chosen = Some(t))
            } else {
                self.decoder.forward(&[tok]).map(|l| logits = l)
            };
            if let Err(e) = step {
                self.decoder.truncate(pos);
                return Err(e.into());
            }
            mask_padding(&mut logits, vocab_used);
            self.cached.push(tok);
        }
        // Drop a trailing partial UTF-8 sequence rather than emit U+FFFD.
        if stop != StopReason::StopText {
            let body = if out.len() >= heal.len() { &out[heal.len()..] } else { &[][..] };
            text = valid_utf8_prefix(body);
        }
        Ok(Branch { text, stop, tokens, others })
    }
}

/// Token healing's rule: with `h` the backed-off bytes not spelled yet, a
/// token either covers them (and does not just end the line right there,
/// an empty answer) or is a piece of them.
fn heal_allows(tk: &Tokenizer, h: &[u8], t: u32) -> bool {
    let b = tk.bytes_of(t);
    if tk.is_special(t) || b.is_empty() {
        return false;
    }
    (b.starts_with(h) && !matches!(b.get(h.len()), Some(b'\n' | b'\r'))) || (b.len() < h.len() && h.starts_with(b))
}

/// Rows past the tokenizer's vocabulary (padding) are never chosen.
fn mask_padding(logits: &mut [f32], vocab_used: usize) {
    if logits.len() > vocab_used {
        for l in &mut logits[vocab_used..] {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Where the first of `stops` begins in `text` (the earliest of them).
pub(super) fn first_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

fn valid_utf8_prefix(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.to_string(),
        Err(e) if e.error_len().is_none() => String::from_utf8_lossy(&b[..e.valid_up_to()]).into_owned(),
        Err(_) => String::from_utf8_lossy(b).into_owned(),
    }
}
