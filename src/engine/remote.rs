//! A remote serving engine as the engine's generator: wick builds the prompt
//! (its own FIM format, special-token strings in the user's text broken up)
//! and streams the answer from an OpenAI-style `/v1/completions`, llama.cpp's
//! `/completion` or Ollama's `/api/generate`. It runs on the engine thread
//! like the local model, so queueing, superseding and cancellation are the
//! same: an interrupted request drops its response stream, which closes the
//! connection and stops the remote generation.
//!
//! Failures are classified ([`FailKind`]), and after one the next requests
//! are answered at once (no connection) until a back-off has passed.

use super::session::{first_stop, EngineError, Generation, ModelInfo, Request, StopReason, TokenCounter};
use super::Generator;
use crate::prompt::{Family, Piece, Prompt};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a waiting request looks at its interruption flag.
const TICK: Duration = Duration::from_millis(10);
/// The longest line of a stream (one event) that is accepted.
const MAX_LINE: usize = 1 << 20;
/// The most of an error body kept for the message.
const ERROR_BODY: usize = 300;
/// Back-off after the first failure; doubles per failure up to the cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

pub use crate::config::{BackendKind, RemoteOptions};

/// What went wrong with a remote request, for one message per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailKind {
    Config,
    Dns,
    Unreachable,
    Tls,
    Auth,
    NotFound,
    RateLimited,
    Server,
    BadRequest,
    Timeout,
    StreamCut,
    Malformed,
}

impl FailKind {
    pub fn name(self) -> &'static str {
        match self {
            FailKind::Config => "configuration",
            FailKind::Dns => "dns",
            FailKind::Unreachable => "unreachable",
            FailKind::Tls => "tls",
            FailKind::Auth => "auth",
            FailKind::NotFound => "not-found",
            FailKind::RateLimited => "rate-limited",
            FailKind::Server => "server-error",
            FailKind::BadRequest => "bad-request",
            FailKind::Timeout => "timeout",
            FailKind::StreamCut => "stream-cut",
            FailKind::Malformed => "malformed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    pub kind: FailKind,
    pub message: String,
    /// The server asked to wait this long (429's Retry-After).
    pub retry_after: Option<Duration>,
}

impl RemoteError {
    fn new(kind: FailKind, message: impl Into<String>) -> Self {
        RemoteError { kind, message: message.into(), retry_after: None }
    }
}

/// A remote backend on the engine thread.
pub struct Remote {
    opts: RemoteOptions,
    api_key: Option<String>,
    client: reqwest::Client,
    rt: std::sync::Arc<tokio::runtime::Runtime>,
    family: Option<Family>,
    /// llama.cpp's slot count (from `/props`): documents are spread over them.
    slots: usize,
    /// The served model's hidden size, where the server reports it
    /// (llama.cpp's `/v1/models` meta): `prompt: auto` then chooses as for
    /// the same model run locally.
    hidden: usize,
    failures: u32,
    retry_at: Option<(Instant, RemoteError)>,
    /// The served model's vocabulary, when wick has it: counts prompt
    /// tokens (a prompt that cannot fit `contextWindow` is not sent) and
    /// names the FIM format.
    vocab: Option<Arc<Vocab>>,
}

/// At least as many as the tokens `prompt` encodes to, without encoding it:
/// a token spells at least one byte, a special piece is one token, and a
/// tokenizer may add one (a leading space marker) per piece of text.
fn tokens_at_most(prompt: &Prompt) -> usize {
    prompt
        .pieces
        .iter()
        .map(|p| match p {
            Piece::Text(t) | Piece::Control(t) => t.len() + 1,
            Piece::Special(_) => 1,
        })
        .sum()
}

/// A tokenizer for counting: the GGUF's (our own) or a `tokenizer.json`.
pub enum Vocab {
    Gguf(Box<crate::models::tokenizer::Tokenizer>),
    Json(Box<tokenizers::Tokenizer>),
}

impl Vocab {
    /// From a GGUF file or a `tokenizer.json`, by the file's contents.
    pub fn load(path: &std::path::Path) -> Result<Vocab, String> {
        let is_gguf = std::fs::File::open(path)
            .and_then(|mut f| {
                let mut magic = [0u8; 4];
                std::io::Read::read_exact(&mut f, &mut magic).map(|_| &magic == b"GGUF")
            })
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if is_gguf {
            let file = crate::models::gguf::GgufFile::open(path).map_err(|e| e.to_string())?;
            let t = crate::models::tokenizer::Tokenizer::from_gguf(&file.content).map_err(|e| e.to_string())?;
            return Ok(Vocab::Gguf(Box::new(t)));
        }
        let mut t = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| format!("{}: not a GGUF file or a tokenizer.json: {e}", path.display()))?;
        t.set_encode_special_tokens(true);
        Ok(Vocab::Json(Box::new(t)))
    }

    /// Resolves `spec`: a GGUF or `tokenizer.json` path, or a hub repository
    /// (`owner/repo`: its `tokenizer.json`, local hub cache first,
    /// `HF_HUB_OFFLINE` honoured).
    pub fn resolve(spec: &str) -> Result<Vocab, String> {
        let path = std::path::Path::new(spec);
        if path.is_file() {
            return Vocab::load(path);
        }
        let hub = if spec.contains(':') { spec.to_string() } else { format!("{spec}:tokenizer.json") };
        let p = crate::models::hub::resolve(&hub).map_err(|e| e.to_string())?;
        Vocab::load(&p)
    }

    fn has(&self, token: &str) -> bool {
        match self {
            Vocab::Gguf(t) => t.token_id(token).is_some(),
            Vocab::Json(t) => t.token_to_id(token).is_some(),
        }
    }

    fn count(&self, text: &str) -> Option<usize> {
        match self {
            Vocab::Gguf(t) => t.encode(text).ok().map(|v| v.len()),
            Vocab::Json(t) => t.encode(text, false).ok().map(|e| e.len()),
        }
    }

    pub fn family(&self) -> Option<Family> {
        Family::detect(|t| self.has(t))
    }

    /// The prompt's tokens: text as text, each special piece one token.
    fn prompt_tokens(&self, prompt: &Prompt) -> Option<usize> {
        let mut n = 0;
        for p in &prompt.pieces {
            n += match p {
                Piece::Text(t) => self.count(t)?,
                Piece::Special(_) => 1,
                Piece::Control(c) if self.has(c) => 1,
                Piece::Control(c) => self.count(c)?,
            };
        }
        Some(n)
    }
}

impl Remote {
    /// Builds the client (reads the CA file and the API key's variable);
    /// nothing is sent yet ([`Generator::check`] does the health check).
    /// `local_model`: the `model` setting, whose GGUF vocabulary names the
    /// FIM format when neither `fimTemplate`, `tokenizer` nor the served
    /// model's name does.
    pub fn connect(opts: RemoteOptions, local_model: Option<String>) -> Result<Remote, EngineError> {
        let cfg = |m: String| EngineError::Remote(RemoteError::new(FailKind::Config, m));
        // Idle connections go before common servers close them (llama-server
        // after 5 s), so a request rarely meets one closed under it.
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(opts.timeout)
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(3));
        if let Some(path) = &opts.ca_file {
            let pem = std::fs::read(path).map_err(|e| cfg(format!("backend.caFile {path}: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| cfg(format!("backend.caFile {path}: not PEM certificates: {e}")))?;
            if certs.is_empty() {
                return Err(cfg(format!("backend.caFile {path}: no certificate in it")));
            }
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let client = b.build().map_err(|e| cfg(format!("the HTTP client: {e}")))?;
        let api_key = match &opts.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(k) if !k.is_empty() => Some(k),
                _ => return Err(cfg(format!("backend.apiKeyEnv names {var}, which is not set in wick's environment"))),
            },
            None => None,
        };
        // One worker: hyper's connection tasks run there, so a dropped
        // answer's connection is closed at once, not at the next request.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("wick-remote")
            .enable_all()
            .build()
            .map_err(|e| cfg(format!("the HTTP runtime: {e}")))?;
        let rt = Arc::new(rt);
        let vocab = match &opts.tokenizer {
            Some(spec) => Some(Vocab::resolve(spec).map_err(|e| cfg(format!("backend.tokenizer {spec}: {e}")))?),
            None if opts.family.is_none() && family_from_name(&opts.model).is_none() => {
                // Best effort: the local model file, if the setting names one.
                local_model.and_then(|m| {
                    let path = crate::models::resolve(Some(&m)).ok()?;
                    Vocab::load(&path).map_err(|e| tracing::debug!("local model's vocabulary: {e}")).ok()
                })
            }
            None => None,
        };
        let family = opts.family.or_else(|| family_from_name(&opts.model)).or(vocab.as_ref().and_then(Vocab::family));
        let vocab = vocab.map(Arc::new);
        Ok(Remote { opts, api_key, client, rt, family, slots: 1, hidden: 0, failures: 0, retry_at: None, vocab })
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.auth(self.client.get(format!("{}{path}", self.opts.url)))
    }

    fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// The body of a generation request, for `prompt` as text.
    fn body(&self, req: &Request, prompt: &str, stream: bool) -> (String, Value) {
        let stop: Vec<&str> = req.stop.iter().map(String::as_str).filter(|s| !s.is_empty()).collect();
        let temperature = req.sampling.temperature.max(0.0);
        match self.opts.kind {
            BackendKind::OpenAi => (
                "/v1/completions".into(),
                json!({
                    "model": self.opts.model,
                    "prompt": prompt,
                    "max_tokens": req.max_tokens.max(1),
                    "temperature": temperature,
                    "top_p": if temperature > 0.0 { req.sampling.top_p } else { 1.0 },
                    "seed": req.sampling.seed,
                    "stop": stop,
                    "stream": stream,
                }),
            ),
            BackendKind::LlamaCpp => {
                let mut b = json!({
                    "prompt": prompt,
                    "n_predict": req.max_tokens,
                    "temperature": temperature,
                    "top_p": req.sampling.top_p,
                    "seed": req.sampling.seed,
                    "stop": stop,
                    "stream": stream,
                    "cache_prompt": true,
                });
                if let Some(key) = &req.key {
                    b["id_slot"] = json!(slot_of(key, self.slots));
                }
                ("/completion".into(), b)
            }
            BackendKind::Ollama => (
                "/api/generate".into(),
                json!({
                    "model": self.opts.model,
                    "prompt": prompt,
                    "raw": true,
                    "stream": stream,
                    "keep_alive": "30m",
                    "options": {
                        "num_predict": req.max_tokens.max(1),
                        "temperature": temperature,
                        "top_p": req.sampling.top_p,
                        "seed": req.sampling.seed,
                        "stop": stop,
                    },
                }),
            ),
        }
    }

    /// Sends a generation request; a 2xx answer (not yet read) with its URL.
    async fn post(
        &self,
        req: &Request,
        prompt: &str,
        stream: bool,
        interrupted: &dyn Fn() -> bool,
    ) -> Result<(String, reqwest::Response), Stop> {
        let (path, body) = self.body(req, prompt, stream);
        let url = format!("{}{path}", self.opts.url);
        let send = self.auth(self.client.post(&url)).json(&body).send();
        let mut resp = wait(send, interrupted, (Instant::now(), self.opts.timeout, &url)).await?;
        if resp.as_ref().is_err_and(closed_unanswered) {
            // The server closed the connection without an answer: most often
            // a kept-alive one it had just timed out (llama-server's is 5 s).
            // Nothing was generated, so once more, on a new connection.
            tracing::debug!("{url}: the connection closed before an answer; sending once more");
            let send = self.auth(self.client.post(&url)).json(&body).send();
            resp = wait(send, interrupted, (Instant::now(), self.opts.timeout, &url)).await?;
        }
        let resp = resp.map_err(|e| Stop::Failed(classify(&e, &url)))?;
        let resp = check_status(resp, &url, &self.opts.model, interrupted, self.opts.timeout).await?;
        Ok((url, resp))
    }

    /// One request, streamed; `interrupted` is looked at every few ms.
    async fn exchange(&self, req: &Request, prompt: &str, interrupted: &dyn Fn() -> bool) -> Result<Generation, Stop> {
        let start = Instant::now();
        let (url, resp) = self.post(req, prompt, true, interrupted).await?;
        let mut stream = resp.bytes_stream();
        let mut lines = Lines::default();
        let mut text = String::new();
        let mut parts = 0usize;
        let mut counts = Counts::default();
        let mut ended = false;
        let mut stop = StopReason::MaxTokens;
        let mut first_at: Option<Instant> = None;
        let mut stall = Instant::now() + self.opts.timeout;
        let budget_over = |first: Option<Instant>| match (req.budget, first) {
            (Some(b), Some(f)) => f.elapsed() >= b,
            _ => false,
        };
        'read: loop {
            let next = tokio::select! {
                n = stream.next() => n,
                _ = tokio::time::sleep(TICK) => {
                    if interrupted() {
                        stop = StopReason::Cancelled;
                        break 'read;
                    }
                    if budget_over(first_at) {
                        stop = StopReason::Budget;
                        break 'read;
                    }
                    if Instant::now() >= stall {
                        return Err(Stop::Failed(timeout_error(&url, self.opts.timeout, !text.is_empty())));
                    }
                    continue;
                }
            };
            let bytes = match next {
                None => break,
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    let mut err = classify(&e, &url);
                    if err.kind != FailKind::Timeout {
                        err = RemoteError::new(FailKind::StreamCut, format!("the answer from {url} broke off: {err}"));
                    }
                    return Err(Stop::Failed(err));
                }
            };
            stall = Instant::now() + self.opts.timeout;
            for line in lines.push(&bytes).map_err(|m| Stop::Failed(malformed(&url, &m)))? {
                match parse_event(self.opts.kind, &line).map_err(|m| Stop::Failed(malformed(&url, &m)))? {
                    Event::Skip => {}
                    Event::Part { text: t, end, counts: c } => {
                        if !t.is_empty() {
                            first_at.get_or_insert_with(Instant::now);
                            parts += 1;
                            text.push_str(&t);
                        }
                        counts.merge(c);
                        if end {
                            ended = true;
                            stop = StopReason::EndToken;
                        }
                    }
                    Event::Done => {
                        ended = true;
                        if stop == StopReason::MaxTokens && parts < req.max_tokens {
                            stop = StopReason::EndToken;
                        }
                    }
                    Event::Error(m) => {
                        return Err(Stop::Failed(RemoteError::new(FailKind::Server, format!("{url} reported: {m}"))))
                    }
                }
                if let Some(cut) = first_stop(&text, &req.stop) {
                    text.truncate(cut);
                    stop = StopReason::StopText;
                    break 'read;
                }
                if req.until.as_ref().is_some_and(|u| (u.0)(&text)) {
                    stop = StopReason::StopText;
                    break 'read;
                }
                if ended && matches!(self.opts.kind, BackendKind::LlamaCpp | BackendKind::Ollama) {
                    break 'read;
                }
                // A server that ignores the token limit is cut off here.
                if parts > 2 * req.max_tokens + 8 || text.len() > 64 * req.max_tokens + 256 {
                    ended = true;
                    stop = StopReason::MaxTokens;
                    break 'read;
                }
            }
            if interrupted() {
                stop = StopReason::Cancelled;
                break;
            }
            if budget_over(first_at) {
                stop = StopReason::Budget;
                break;
            }
        }
        if !ended && matches!(stop, StopReason::MaxTokens) {
            // The connection closed before the protocol's end marker.
            let m = format!("the answer from {url} stopped mid-way (no end marker after {} characters)", text.len());
            return Err(Stop::Failed(RemoteError::new(FailKind::StreamCut, m)));
        }
        if stop == StopReason::EndToken && counts.generated.is_some_and(|g| g >= req.max_tokens) {
            stop = StopReason::MaxTokens;
        }
        let total = start.elapsed().as_secs_f64() * 1e3;
        let to_first = first_at.map(|f| (f - start).as_secs_f64() * 1e3).unwrap_or(total);
        Ok(Generation {
            text,
            stop,
            prompt_tokens: counts.prompt.unwrap_or(0),
            reused_tokens: counts.cached.unwrap_or(0),
            generated_tokens: counts.generated.unwrap_or(parts),
            prefill_ms: to_first,
            decode_ms: total - to_first,
            healed: false,
            tokens: Vec::new(),
            alternatives: Vec::new(),
        })
    }

    /// Prefetch: llama.cpp prefills the prompt into the document's slot
    /// (`n_predict: 0`); the other protocols have no way to, so nothing.
    async fn warm(&self, req: &Request, prompt: &str, interrupted: &dyn Fn() -> bool) -> Result<Generation, Stop> {
        let empty = Generation {
            text: String::new(),
            stop: StopReason::MaxTokens,
            prompt_tokens: 0,
            reused_tokens: 0,
            generated_tokens: 0,
            prefill_ms: 0.0,
            decode_ms: 0.0,
            healed: false,
            tokens: Vec::new(),
            alternatives: Vec::new(),
        };
        if self.opts.kind != BackendKind::LlamaCpp {
            return Ok(empty);
        }
        let start = Instant::now();
        let (url, resp) = self.post(req, prompt, false, interrupted).await?;
        let v: Value = wait(resp.json::<Value>(), interrupted, (Instant::now(), self.opts.timeout, &url))
            .await?
            .map_err(|e| Stop::Failed(malformed(&url, &e.to_string())))?;
        let c = counts_of(&v);
        Ok(Generation {
            prompt_tokens: c.prompt.unwrap_or(0),
            reused_tokens: c.cached.unwrap_or(0),
            prefill_ms: start.elapsed().as_secs_f64() * 1e3,
            ..empty
        })
    }

    /// The health check: is the server there, does it serve the model.
    async fn health(&mut self) -> Result<(), RemoteError> {
        let limits = (Instant::now(), self.opts.timeout);
        let never = || false;
        let (path, what) = match self.opts.kind {
            BackendKind::OpenAi => ("/v1/models", "models"),
            BackendKind::LlamaCpp => ("/health", "health"),
            BackendKind::Ollama => ("/api/tags", "models"),
        };
        let url = format!("{}{path}", self.opts.url);
        let resp = match wait(self.get(path).send(), &never, (limits.0, limits.1, &url)).await {
            Ok(r) => r.map_err(|e| classify(&e, &url))?,
            Err(_) => return Err(timeout_error(&url, self.opts.timeout, false)),
        };
        let status = resp.status().as_u16();
        if status == 503 && self.opts.kind == BackendKind::LlamaCpp {
            return Err(RemoteError::new(
                FailKind::Server,
                format!("{url}: the server is still loading its model (503)"),
            ));
        }
        let resp = match check_status(resp, &url, &self.opts.model, &never, self.opts.timeout).await {
            Ok(r) => r,
            Err(Stop::Failed(e)) => return Err(e),
            Err(Stop::Cancelled) => return Ok(()),
        };
        let v: Value = match wait(resp.json::<Value>(), &never, (limits.0, limits.1, &url)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Err(malformed(&url, &format!("its {what} answer is not JSON: {e}"))),
            Err(_) => return Err(timeout_error(&url, self.opts.timeout, false)),
        };
        let list = match self.opts.kind {
            BackendKind::OpenAi => v["data"].as_array(),
            BackendKind::Ollama => v["models"].as_array(),
            BackendKind::LlamaCpp => None,
        };
        let served: Vec<String> = list
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().or(m["name"].as_str()).map(str::to_string))
            .collect();
        let hidden_of = |list: Option<&Vec<Value>>, model: &str| {
            list.into_iter()
                .flatten()
                .find(|m| model.is_empty() || m["id"].as_str().is_some_and(|id| same_model(id, model)))
                .and_then(|m| m["meta"]["n_embd"].as_u64())
                .map(|n| n as usize)
        };
        if let Some(h) = hidden_of(list, &self.opts.model) {
            self.hidden = h;
        }
        if self.opts.kind == BackendKind::LlamaCpp {
            // The model's size, where the OpenAI-style listing has it.
            let models = format!("{}/v1/models", self.opts.url);
            if let Ok(Ok(r)) = wait(self.get("/v1/models").send(), &never, (limits.0, limits.1, &models)).await {
                if let Ok(Ok(v)) = wait(r.json::<Value>(), &never, (limits.0, limits.1, &models)).await {
                    if let Some(h) = hidden_of(v["data"].as_array(), "") {
                        self.hidden = h;
                    }
                    if self.family.is_none() {
                        let id = v["data"][0]["id"].as_str().unwrap_or("");
                        self.family = family_from_name(id);
                    }
                }
            }
            // The slot count, so that documents keep their own KV caches.
            let props = format!("{}/props", self.opts.url);
            if let Ok(Ok(r)) = wait(self.get("/props").send(), &never, (limits.0, limits.1, &props)).await {
                if let Ok(Ok(p)) = wait(r.json::<Value>(), &never, (limits.0, limits.1, &props)).await {
                    self.slots = p["total_slots"].as_u64().unwrap_or(1).clamp(1, 1024) as usize;
                }
            }
            tracing::debug!(url = props, slots = self.slots, "llama.cpp slots");
            return Ok(());
        }
        if self.opts.model.is_empty() {
            match served.first() {
                Some(m) => {
                    tracing::info!(model = m, "backend.model not set: using the first model the server lists");
                    self.opts.model = m.clone();
                    if self.family.is_none() {
                        self.family = family_from_name(m);
                    }
                }
                None => return Err(RemoteError::new(FailKind::NotFound, format!("{url} lists no model"))),
            }
        } else if !served.is_empty() && !served.iter().any(|m| same_model(m, &self.opts.model)) {
            let list = served.iter().take(8).cloned().collect::<Vec<_>>().join(", ");
            return Err(RemoteError::new(
                FailKind::NotFound,
                format!("{url} does not serve the model '{}' (it serves: {list})", self.opts.model),
            ));
        }
        Ok(())
    }

    fn fail(&mut self, e: RemoteError) -> EngineError {
        self.failures += 1;
        let backoff = e
            .retry_after
            .unwrap_or_else(|| BACKOFF_FIRST.saturating_mul(1 << (self.failures - 1).min(10)).min(BACKOFF_MAX));
        self.retry_at = Some((Instant::now() + backoff, e.clone()));
        tracing::warn!(kind = e.kind.name(), backoff_ms = backoff.as_millis() as u64, "remote backend: {e}");
        EngineError::Remote(e)
    }
}

impl Generator for Remote {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            path: self.opts.label(),
            arch: format!("remote ({})", self.opts.kind.name()),
            family: self.family,
            n_layer: 0,
            hidden: self.hidden,
            vocab: 0,
            context: self.opts.context,
            has_chat_template: false,
            chat_template: None,
            remote: true,
            tokens: self.vocab.clone().map(|v| TokenCounter::new(move |text| v.count(text))),
        }
    }

    fn generate_with(&mut self, req: &Request, interrupted: &dyn Fn() -> bool) -> Result<Generation, EngineError> {
        if let Some((at, e)) = &self.retry_at {
            if Instant::now() < *at {
                // Backing off: answered at once, nothing sent.
                return Err(EngineError::Remote(e.clone()));
            }
        }
        // The prompt is encoded only when it might not fit (the pipeline
        // sized its window in these tokens already) or, below, when the
        // server does not say how many it took.
        let vocab = self.vocab.clone();
        let count = || vocab.as_ref().and_then(|v| v.prompt_tokens(&req.prompt));
        let might_overflow = tokens_at_most(&req.prompt) + req.max_tokens > self.opts.context;
        let counted = if might_overflow { count() } else { None };
        if let Some(n) = counted {
            if n + req.max_tokens > self.opts.context {
                return Err(EngineError::PromptTooLong {
                    prompt: n,
                    max_tokens: req.max_tokens,
                    limit: self.opts.context,
                });
            }
        }
        let (prompt, broken) = render(&req.prompt);
        if broken > 0 {
            tracing::info!(count = broken, "special-token strings in the document were sent as text (broken up)");
        }
        let r = if req.max_tokens == 0 {
            self.rt.block_on(self.warm(req, &prompt, interrupted))
        } else {
            self.rt.block_on(self.exchange(req, &prompt, interrupted))
        };
        match r {
            Ok(mut g) => {
                if g.prompt_tokens == 0 {
                    g.prompt_tokens = counted.or_else(count).unwrap_or(0);
                }
                self.failures = 0;
                self.retry_at = None;
                Ok(g)
            }
            Err(Stop::Cancelled) => Err(EngineError::Cancelled),
            Err(Stop::Failed(e)) => Err(self.fail(e)),
        }
    }

    fn reset(&mut self) {}

    fn check(&mut self) -> Result<(), EngineError> {
        let rt = self.rt.clone();
        match rt.block_on(self.health()) {
            Ok(()) => {
                tracing::info!(backend = %self.opts.label(), family = ?self.family.map(|f| f.name()), "remote backend ready");
                if self.family.is_none() {
                    return Err(EngineError::Remote(RemoteError::new(
                        FailKind::Config,
                        format!(
                            "the FIM format of '{}' is unknown: set backend.fimTemplate (qwen2.5-coder, starcoder2, \
                             deepseek-coder, codellama or codegemma); completions use plain continuation until then",
                            self.opts.model
                        ),
                    )));
                }
                Ok(())
            }
            Err(e) => Err(self.fail(e)),
        }
    }
}

/// Why an exchange ended without an answer.
enum Stop {
    Cancelled,
    Failed(RemoteError),
}

/// Awaits `fut`, giving up when interrupted (Cancelled) or when `limit`
/// has passed since `start` (a timeout naming `url`).
async fn wait<F: std::future::Future>(
    fut: F,
    interrupted: &dyn Fn() -> bool,
    (start, limit, url): (Instant, Duration, &str),
) -> Result<F::Output, Stop> {
    let deadline = start + limit;
    tokio::pin!(fut);
    loop {
        tokio::select! {
            r = &mut fut => return Ok(r),
            _ = tokio::time::sleep(TICK) => {
                if interrupted() {
                    return Err(Stop::Cancelled);
                }
                if Instant::now() >= deadline {
                    return Err(Stop::Failed(timeout_error(url, limit, false)));
                }
            }
        }
    }
}

fn timeout_error(url: &str, t: Duration, started: bool) -> RemoteError {
    let what = if started { "stalled for" } else { "did not answer within" };
    RemoteError::new(FailKind::Timeout, format!("{url} {what} {} ms (backend.timeoutMs)", t.as_millis()))
}

fn malformed(url: &str, m: &str) -> RemoteError {
    RemoteError::new(FailKind::Malformed, format!("the answer from {url} is malformed: {m}"))
}

/// A non-2xx answer as an error naming the cause; 2xx passes through.
async fn check_status(
    resp: reqwest::Response,
    url: &str,
    model: &str,
    interrupted: &dyn Fn() -> bool,
    timeout: Duration,
) -> Result<reqwest::Response, Stop> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.min(300)));
    let body = match wait(resp.text(), interrupted, (Instant::now(), timeout.min(Duration::from_secs(5)), url)).await {
        Ok(Ok(t)) => t,
        _ => String::new(),
    };
    let detail = error_detail(&body);
    let code = status.as_u16();
    let (kind, m) = match code {
        401 | 403 => (
            FailKind::Auth,
            format!("{url} refused the request ({code}): check the API key (backend.apiKeyEnv){detail}"),
        ),
        404 => (
            FailKind::NotFound,
            format!("{url} answered 404: a wrong backend.url, or the model '{model}' is not served{detail}"),
        ),
        429 => (FailKind::RateLimited, format!("{url} is rate-limiting (429){detail}")),
        500..=599 => (FailKind::Server, format!("{url} failed ({code}){detail}")),
        _ => (FailKind::BadRequest, format!("{url} rejected the request ({code}){detail}")),
    };
    Err(Stop::Failed(RemoteError { kind, message: m, retry_after }))
}

/// The useful part of an error body: `error.message`, `error` or the text.
fn error_detail(body: &str) -> String {
    let v: Option<Value> = serde_json::from_str(body).ok();
    let msg = v
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str().or(v["error"].as_str()).or(v["message"].as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    if msg.is_empty() {
        return String::new();
    }
    let mut m: String = msg.chars().filter(|c| !c.is_control()).take(ERROR_BODY).collect();
    if msg.chars().count() > ERROR_BODY {
        m.push('…');
    }
    format!(": {m}")
}

/// A transport error as a kind: DNS, TLS, refused connection, timeout.
fn classify(e: &reqwest::Error, url: &str) -> RemoteError {
    let mut chain = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        src = s.source();
    }
    let low = chain.to_ascii_lowercase();
    let (kind, what) = if e.is_timeout() {
        (FailKind::Timeout, "timed out")
    } else if low.contains("dns error")
        || low.contains("failed to lookup address")
        || low.contains("name or service not known")
    {
        (FailKind::Dns, "its host name does not resolve")
    } else if low.contains("certificate") || low.contains("tls") || low.contains("handshake") || low.contains("ssl") {
        (FailKind::Tls, "the TLS connection failed (backend.caFile names extra CAs)")
    } else if e.is_connect() {
        (FailKind::Unreachable, "cannot connect (is the server running?)")
    } else if e.is_builder() {
        (FailKind::Config, "the URL is not usable")
    } else {
        (FailKind::Unreachable, "the connection failed")
    };
    let mut detail: String = chain.chars().take(ERROR_BODY).collect();
    if chain.chars().count() > ERROR_BODY {
        detail.push('…');
    }
    RemoteError::new(kind, format!("{url}: {what}: {detail}"))
}

/// The request went out and the connection closed before any answer came
/// (not a timeout, not a refused connection).
fn closed_unanswered(e: &reqwest::Error) -> bool {
    if e.is_timeout() || e.is_connect() || e.is_status() {
        return false;
    }
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let t = s.to_string().to_ascii_lowercase();
        if t.contains("connection closed before message completed") || t.contains("connection reset") {
            return true;
        }
        src = s.source();
    }
    false
}

/// Splits a byte stream into lines, bounded in length.
#[derive(Default)]
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=i).collect();
            let line = String::from_utf8(line).map_err(|_| "a line is not UTF-8".to_string())?;
            out.push(line.trim_end_matches(['\n', '\r']).to_string());
        }
        if self.buf.len() > MAX_LINE {
            return Err(format!("a line longer than {MAX_LINE} bytes"));
        }
        Ok(out)
    }
}

/// Token counts a server reports with its last event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    prompt: Option<usize>,
    cached: Option<usize>,
    generated: Option<usize>,
}

impl Counts {
    fn merge(&mut self, o: Counts) {
        self.prompt = o.prompt.or(self.prompt);
        self.cached = o.cached.or(self.cached);
        self.generated = o.generated.or(self.generated);
    }
}

fn counts_of(v: &Value) -> Counts {
    let n = |x: &Value| x.as_u64().map(|n| n as usize);
    Counts {
        prompt: n(&v["tokens_evaluated"])
            .or(n(&v["prompt_eval_count"]))
            .or(n(&v["usage"]["prompt_tokens"]))
            .or(n(&v["timings"]["prompt_n"])),
        cached: n(&v["tokens_cached"]).or(n(&v["timings"]["cache_n"])),
        generated: n(&v["tokens_predicted"]).or(n(&v["eval_count"])).or(n(&v["usage"]["completion_tokens"])),
    }
}

#[derive(Debug, PartialEq)]
enum Event {
    Skip,
    Part { text: String, end: bool, counts: Counts },
    Done,
    Error(String),
}

/// One line of a stream: SSE (`data: {...}`, `[DONE]`) for the OpenAI and
/// llama.cpp protocols, one JSON object per line for Ollama.
fn parse_event(kind: BackendKind, line: &str) -> Result<Event, String> {
    let line = line.trim_end();
    if line.is_empty() {
        return Ok(Event::Skip);
    }
    let payload = match kind {
        BackendKind::Ollama => line,
        _ => {
            if line.starts_with(':') || ["event:", "id:", "retry:"].iter().any(|f| line.starts_with(f)) {
                return Ok(Event::Skip);
            }
            match line.strip_prefix("data:") {
                Some(p) => p.trim_start(),
                None => return Err(format!("not a server-sent event: {}", snippet(line))),
            }
        }
    };
    if payload == "[DONE]" && kind != BackendKind::Ollama {
        return Ok(Event::Done);
    }
    let v: Value = serde_json::from_str(payload).map_err(|_| format!("not JSON: {}", snippet(payload)))?;
    if !v.is_object() {
        return Err(format!("not a JSON object: {}", snippet(payload)));
    }
    if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
        let m = e["message"].as_str().or(e.as_str()).map(str::to_string).unwrap_or_else(|| e.to_string());
        return Ok(Event::Error(m));
    }
    let counts = counts_of(&v);
    match kind {
        BackendKind::OpenAi => {
            let Some(choice) = v["choices"].as_array().and_then(|c| c.first()) else {
                // A usage-only chunk.
                return Ok(if v.get("usage").is_some() {
                    Event::Part { text: String::new(), end: false, counts }
                } else {
                    Event::Skip
                });
            };
            let text = choice["text"].as_str().ok_or_else(|| format!("no choices[0].text: {}", snippet(payload)))?;
            let end = !choice["finish_reason"].is_null();
            Ok(Event::Part { text: text.to_string(), end, counts })
        }
        BackendKind::LlamaCpp => {
            let text = v["content"].as_str().ok_or_else(|| format!("no content: {}", snippet(payload)))?;
            Ok(Event::Part { text: text.to_string(), end: v["stop"].as_bool().unwrap_or(false), counts })
        }
        BackendKind::Ollama => {
            let text = v["response"].as_str().ok_or_else(|| format!("no response: {}", snippet(payload)))?;
            Ok(Event::Part { text: text.to_string(), end: v["done"].as_bool().unwrap_or(false), counts })
        }
    }
}

fn snippet(s: &str) -> String {
    let mut t: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        t.push('…');
    }
    t
}

/// A stable slot per key (a document keeps its slot, hence its KV cache).
fn slot_of(key: &str, slots: usize) -> usize {
    // FNV-1a: stable across runs, unlike the std hasher.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % slots.max(1) as u64) as usize
}

/// Model names compare without Ollama's `:latest` and case.
fn same_model(served: &str, wanted: &str) -> bool {
    let norm = |s: &str| s.strip_suffix(":latest").unwrap_or(s).to_ascii_lowercase();
    norm(served) == norm(wanted) || served.rsplit('/').next().is_some_and(|s| norm(s) == norm(wanted))
}

/// The FIM family a served model's name says (`Qwen/Qwen2.5-Coder-7B`,
/// `qwen2.5-coder:1.5b-base`, `bigcode/starcoder2-15b` ...).
pub(crate) fn family_from_name(name: &str) -> Option<Family> {
    let n = name.to_ascii_lowercase();
    if n.contains("qwen") && n.contains("coder") {
        Some(Family::QwenCoder)
    } else if n.contains("starcoder2") {
        Some(Family::StarCoder2)
    } else if n.contains("deepseek-coder") || n.contains("deepseek_coder") {
        Some(Family::DeepSeekCoder)
    } else if n.contains("codellama") || n.contains("code-llama") {
        Some(Family::CodeLlama)
    } else if n.contains("codegemma") {
        Some(Family::CodeGemma)
    } else {
        None
    }
}

/// Every special-token string of every family, and the chat controls.
fn special_strings() -> &'static [String] {
    static ALL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let mut v: Vec<String> = Family::ALL
            .iter()
            .flat_map(|f| f.all_special_tokens())
            .map(|t| t.trim_start_matches('▁').to_string())
            .collect();
        v.extend(["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<s>", "</s>"].map(String::from));
        v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        v.dedup();
        v
    })
}

/// The prompt as the text a server tokenizes. Special pieces become their
/// strings; in the user's text every special-token string is broken up
/// with a zero-width space after its first character, so that a server
/// which parses special tokens in prompts (they all do) cannot read code
/// that mentions `<|fim_prefix|>` as a control token. Returns the text and
/// how many strings were broken up.
pub(crate) fn render(prompt: &Prompt) -> (String, usize) {
    let mut out = String::new();
    let mut broken = 0;
    for p in &prompt.pieces {
        match p {
            Piece::Text(t) => {
                let (t, n) = neutralize(t);
                broken += n;
                out.push_str(&t);
            }
            Piece::Special(s) => out.push_str(&s.replace('▁', " ")),
            Piece::Control(s) => out.push_str(s),
        }
    }
    (out, broken)
}

fn neutralize(t: &str) -> (String, usize) {
    if !t.contains('<') {
        return (t.to_string(), 0);
    }
    let mut out = String::with_capacity(t.len());
    let mut n = 0;
    let mut rest = t;
    'outer: while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        for s in special_strings() {
            if rest.starts_with(s.as_str()) {
                out.push('<');
                out.push('\u{200B}');
                out.push_str(&s[1..]);
                rest = &rest[s.len()..];
                n += 1;
                continue 'outer;
            }
        }
        out.push('<');
        rest = &rest[1..];
    }
    out.push_str(rest);
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_token_strings_in_text_stay_text() {
        let mut p = Prompt::default();
        p.special("<|fim_prefix|>").text("s = '<|fim_suffix|>' < 3 <|endoftext|>").special("<|fim_middle|>");
        let (s, n) = render(&p);
        assert_eq!(n, 2);
        assert!(s.starts_with("<|fim_prefix|>s = '<\u{200B}|fim_suffix|>' < 3 <\u{200B}|endoftext|>"), "{s}");
        assert!(s.ends_with("<|fim_middle|>"));
        assert_eq!(neutralize("a < b && c <d>"), ("a < b && c <d>".to_string(), 0));
    }

    #[test]
    fn stream_lines_of_each_protocol() {
        let part = |t: &str, end| Event::Part { text: t.into(), end, counts: Counts::default() };
        let o = BackendKind::OpenAi;
        assert_eq!(
            parse_event(o, r#"data: {"choices":[{"text":"x = ","finish_reason":null}]}"#),
            Ok(part("x = ", false))
        );
        assert_eq!(parse_event(o, r#"data:{"choices":[{"text":"1","finish_reason":"stop"}]}"#), Ok(part("1", true)));
        assert_eq!(parse_event(o, "data: [DONE]"), Ok(Event::Done));
        assert_eq!(parse_event(o, ": keep-alive"), Ok(Event::Skip));
        assert_eq!(parse_event(o, ""), Ok(Event::Skip));
        assert!(parse_event(o, "data: {not json").unwrap_err().contains("not JSON"));
        assert!(parse_event(o, "garbage").unwrap_err().contains("server-sent"));
        assert_eq!(parse_event(o, r#"data: {"error":{"message":"boom"}}"#), Ok(Event::Error("boom".into())));
        let l = BackendKind::LlamaCpp;
        assert_eq!(parse_event(l, r#"data: {"content":"ab","stop":false}"#), Ok(part("ab", false)));
        let Ok(Event::Part { end: true, counts, .. }) = parse_event(
            l,
            r#"data: {"content":"","stop":true,"tokens_evaluated":40,"tokens_cached":30,"tokens_predicted":5}"#,
        ) else {
            panic!()
        };
        assert_eq!(counts, Counts { prompt: Some(40), cached: Some(30), generated: Some(5) });
        let ol = BackendKind::Ollama;
        assert_eq!(parse_event(ol, r#"{"response":"def","done":false}"#), Ok(part("def", false)));
        assert!(parse_event(ol, "data: [DONE]").is_err());
    }

    #[test]
    fn lines_are_split_across_chunks_and_bounded() {
        let mut l = Lines::default();
        assert_eq!(l.push(b"data: a").unwrap(), Vec::<String>::new());
        assert_eq!(l.push(b"b\r\ndata: c\n").unwrap(), vec!["data: ab".to_string(), "data: c".to_string()]);
        assert!(l.push(&vec![b'x'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn names_give_families_and_slots_are_stable() {
        assert_eq!(family_from_name("Qwen/Qwen2.5-Coder-7B"), Some(Family::QwenCoder));
        assert_eq!(family_from_name("qwen2.5-coder:1.5b-base"), Some(Family::QwenCoder));
        assert_eq!(family_from_name("bigcode/starcoder2-15b"), Some(Family::StarCoder2));
        assert_eq!(family_from_name("llama3"), None);
        assert_eq!(slot_of("file:///a.py", 4), slot_of("file:///a.py", 4));
        assert!(slot_of("x", 3) < 3);
        assert!(same_model("qwen2.5-coder:1.5b", "qwen2.5-coder:1.5b"));
        assert!(same_model("starcoder2:latest", "StarCoder2"));
        assert!(!same_model("llama3", "qwen"));
    }

    #[test]
    fn error_bodies_give_their_message() {
        assert_eq!(error_detail(r#"{"error":{"message":"model not found"}}"#), ": model not found");
        assert_eq!(error_detail(r#"{"error":"bad"}"#), ": bad");
        assert_eq!(error_detail(""), "");
        assert!(error_detail(&"x".repeat(1000)).chars().count() < ERROR_BODY + 5);
    }
}
