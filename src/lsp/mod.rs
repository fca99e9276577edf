//! The language server: the only code that knows LSP types. Decodes
//! requests, calls the core (documents, complete, engine), encodes answers.
//! No lock is held across an `.await`.

use crate::complete::{self, LastSuggestion};
use crate::config::{Config, DiagnosticsMode};
use crate::documents::{self, DocumentStore, Encoding};
use crate::engine::{Engine, LoadOptions};
use futures::FutureExt;
use ropey::Rope;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tower_lsp_server::jsonrpc::{Error as RpcError, Result as RpcResult};
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};
use tracing::Instrument;

pub mod client;
mod code_actions;
pub mod framing;
mod proto;
mod stats;

use code_actions::DIAGNOSTICS_DEBOUNCE_MS;

/// Options from the command line that start the server.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Overrides the `model` setting.
    pub model: Option<String>,
    pub device: Option<String>,
}

#[derive(Default)]
struct State {
    docs: Mutex<DocumentStore>,
    /// What the client can do, as `initialize` said: set once.
    caps: std::sync::OnceLock<ClientCaps>,
    config: Mutex<Config>,
    engine: Mutex<Option<Engine>>,
    last: Mutex<HashMap<String, LastSuggestion>>,
    /// Per-document request counter, for the server-side debounce.
    seq: Mutex<HashMap<String, u64>>,
    cli: Mutex<ServeOptions>,
    /// Identity of the loaded model (path and device), to reload on change.
    loaded: Mutex<Option<(PathBuf, String)>>,
    /// The workspace root (for relative paths in prompts).
    root: Mutex<Option<PathBuf>>,
    /// The workspace folders: the only places files are read from.
    workspace: Mutex<crate::workspace::Workspace>,
    /// Per document: the diagnostics debounce and the line being typed.
    diag: Mutex<HashMap<String, code_actions::DiagState>>,
    /// Held while a model loads: one load at a time.
    load_gate: Arc<tokio::sync::Mutex<()>>,
    /// Models loaded so far (for `wick/serverState`).
    loads: std::sync::atomic::AtomicU64,
    /// Bumped per cursor position seen: a prefetch runs only for the latest.
    prefetch_seq: std::sync::atomic::AtomicU64,
    /// Prefetches that ran (for `wick/serverState`).
    prefetches: std::sync::atomic::AtomicU64,
    /// The last model error shown, not to repeat it on every settings change.
    shown_error: Mutex<Option<String>>,
    /// The suggestion being computed per document, by version and position:
    /// a completion and an inline completion for the same place share it
    /// instead of superseding each other.
    inflight: Mutex<HashMap<String, InFlight>>,
    /// Each open document's syntax analysis (its errors and their repairs),
    /// for the version and length it was computed on: diagnostics compute
    /// it, code actions reuse it (editors ask for them on every cursor move).
    analyses: Mutex<HashMap<String, KeptAnalysis>>,
    /// Definitions of other files (open documents by version, imported
    /// files by modification time), for cross-file context per keystroke.
    definitions: Mutex<HashMap<String, (String, Defs)>>,
    /// Shown suggestions until accepted or dismissed (the `stats` setting).
    stats: Mutex<stats::Tracker>,
}

/// The client's capabilities that change what the server does.
#[derive(Debug, Clone, Copy, Default)]
struct ClientCaps {
    encoding: Encoding,
    /// `$/progress` for the model load.
    progress: bool,
    /// The client resolves code actions lazily (`edit` resolvable).
    resolve_edits: bool,
    /// The client takes versioned `documentChanges`.
    document_changes: bool,
}

type Defs = Arc<Vec<crate::syntax::Definition>>;

/// Files whose definitions are kept at most (then the store starts over).
const MAX_KEPT_DEFINITIONS: usize = 256;

/// A document's syntax analysis, with the version and length it is of.
type KeptAnalysis = (i32, usize, Arc<crate::syntax::Analysis>);

/// A suggestion being computed: for this document version and position.
/// Weak: only the requests waiting for it keep it alive, so when the last
/// one is cancelled (or its client gone) the generation is dropped and the
/// engine stops.
type InFlight = (
    Option<i32>,
    Position,
    futures::future::WeakShared<futures::future::BoxFuture<'static, RpcResult<Option<Suggestion>>>>,
);

type SharedSuggestion = futures::future::Shared<futures::future::BoxFuture<'static, RpcResult<Option<Suggestion>>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A document's snapshot with its tree up to date. The parse (a whole file
/// on open, incremental after edits) runs on a blocking thread, never on
/// the protocol's, and never under the documents lock.
/// `as_of` is the arrival mark of the request it is for
/// ([`documents::DocumentStore::mark`]), read when the request arrived.
async fn snapshot_of(
    st: &State,
    uri: &str,
    enc: Encoding,
    as_of: documents::AsOf,
) -> Result<documents::Snapshot, documents::DocError> {
    let mut snap = lock(&st.docs).snapshot_as_of(uri, enc, as_of)?;
    if let Some((edits, job)) = snap.parse.take() {
        let lang = job.lang;
        match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(tree) => {
                lock(&st.docs).install(uri, edits, tree.clone());
                snap.parsed = tree.map(|tree| crate::syntax::Parsed { lang, tree });
            }
            Err(e) => tracing::error!(uri, "parse failed: {e}"),
        }
    }
    Ok(snap)
}

pub struct Backend {
    client: Client,
    st: Arc<State>,
}

/// Quiet time after the cursor lands somewhere before its prompt is prefilled.
const PREFETCH_DELAY_MS: u64 = 200;

/// What a completion at a position needs, gathered from the server's state.
struct Prepared {
    snap: documents::Snapshot,
    cfg: Config,
    cursor: usize,
    engine: Engine,
    others: Vec<complete::OtherFile>,
    path: String,
    repo_name: String,
}

impl Prepared {
    fn request<'a>(&'a self, last: Option<&'a LastSuggestion>, key: Option<String>) -> complete::SuggestRequest<'a> {
        complete::SuggestRequest {
            input: complete::Input {
                rope: &self.snap.rope,
                cursor: self.cursor,
                lang: self.snap.lang,
                parsed: self.snap.parsed.as_ref(),
                path: &self.path,
                repo_name: &self.repo_name,
                others: &self.others,
            },
            config: &self.cfg,
            stages: complete::Stages::default(),
            last,
            key,
        }
    }
}

/// A completion computed by the core, in char indices of `rope`.
#[derive(Clone)]
struct Suggestion {
    rope: Rope,
    cursor: usize,
    word_start: usize,
    word: String,
    text: String,
    /// Its id for the statistics (None: `stats` is off).
    id: Option<u64>,
}

/// The command an answer carries: the editor runs it when the suggestion
/// is accepted, and it comes back as `wick.didAccept`.
fn accept_command(id: Option<u64>) -> Option<Command> {
    Some(Command {
        title: "accepted".into(),
        command: stats::ACCEPT_COMMAND.into(),
        arguments: Some(vec![serde_json::json!({ "id": id? })]),
    })
}

/// Set by `shutdown`: the exit code after `exit` is 0 only if it came first.
pub static SHUTDOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub async fn serve(opts: ServeOptions) {
    let stdout = tokio::io::stdout();
    let (reader, writer) = tokio::io::duplex(1 << 20);
    tokio::spawn(framing::sanitize(tokio::io::stdin(), writer));
    let (service, socket) = LspService::build(|client| {
        let st = Arc::new(State::default());
        *lock(&st.cli) = opts.clone();
        Backend { client, st }
    })
    .custom_method("textDocument/inlineCompletion", Backend::inline_completion)
    .custom_method(framing::INVALID_METHOD, Backend::invalid_message)
    .custom_method("wick/documentText", Backend::document_text)
    .custom_method("wick/serverState", Backend::server_state)
    .custom_method("wick/didMoveCursor", Backend::did_move_cursor)
    .custom_method("wick/didAccept", Backend::did_accept)
    .finish();
    // Enough concurrency that edits are never stuck behind slow completions.
    Server::new(reader, stdout, socket).concurrency_level(64).serve(service).await;
}

/// The `wick/status` notification: the model's state for an editor's
/// status line. `state` is `loading`, `ready` or `error`.
pub enum StatusNotification {}

impl notification::Notification for StatusNotification {
    type Params = serde_json::Value;
    const METHOD: &'static str = "wick/status";
}

async fn send_status(client: &Client, state: &str, model: &str, message: &str) {
    let params = serde_json::json!({ "state": state, "model": model, "message": message });
    client.send_notification::<StatusNotification>(params).await;
}

impl Backend {
    /// The client's capabilities (the defaults before `initialize`).
    fn caps(&self) -> ClientCaps {
        self.st.caps.get().copied().unwrap_or_default()
    }

    fn encoding(&self) -> Encoding {
        self.caps().encoding
    }

    async fn show(&self, typ: MessageType, msg: String) {
        self.client.show_message(typ, msg).await;
    }

    async fn status(&self, state: &str, model: &str, message: &str) {
        send_status(&self.client, state, model, message).await;
    }

    /// Starts (or restarts) the model load in the background, with
    /// `$/progress` while it loads. Loads run one at a time: a settings
    /// change during a load waits for it, then loads what the settings say
    /// by then (switching back and forth loads the last choice once, not
    /// every model in between at the same time).
    async fn start_engine(&self) {
        let b = self.handle();
        tokio::spawn(async move {
            let gate = b.st.load_gate.clone().lock_owned().await;
            b.load_latest(gate).await;
        });
    }

    /// Loads the model the settings name now, unless it is the one loaded;
    /// `gate` is held until that load has finished.
    async fn load_latest(&self, gate: tokio::sync::OwnedMutexGuard<()>) {
        let cfg = lock(&self.st.config).clone();
        let cli = lock(&self.st.cli).clone();
        if let Some(remote) = cfg.backend.clone() {
            return self.load_remote(remote, cfg.model.clone(), gate).await;
        }
        let spec = cli.model.or(cfg.model.clone());
        let device_spec = cli.device.unwrap_or(cfg.device.clone());
        // Resolving may read a hub cache or download: not on this thread.
        let resolved = tokio::task::spawn_blocking(move || crate::models::resolve(spec.as_deref())).await;
        let resolved = match resolved {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(e) => Err(format!("model resolution failed: {e}")),
        };
        let path = match resolved {
            Ok(p) => p,
            Err(e) => {
                *lock(&self.st.engine) = None;
                tracing::error!("{e}");
                self.status("error", "", &e.to_string()).await;
                if lock(&self.st.shown_error).replace(e.to_string()).as_deref() != Some(&e.to_string()) {
                    self.show(
                        MessageType::ERROR,
                        format!("wick: {e}. Completions are off until a model is available."),
                    )
                    .await;
                }
                return;
            }
        };
        if lock(&self.st.loaded).as_ref() == Some(&(path.clone(), device_spec.clone())) {
            return;
        }
        let (device, warning) = crate::device::open_or_cpu(&device_spec);
        if let Some(w) = warning {
            tracing::warn!("{w}");
            self.show(MessageType::WARNING, format!("wick: {w}")).await;
        }
        if let Some(n) = cfg.threads {
            crate::engine::set_threads(n);
        }
        let opts = LoadOptions { ..crate::device::load_options(&device) };
        // `WICK_LOAD_DELAY_MS` (tests) makes loading slow on purpose, to
        // exercise requests that arrive while the model loads.
        let delay = std::env::var("WICK_LOAD_DELAY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let engine = {
            let path = path.clone();
            Engine::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                crate::engine::Session::load(&path, &device, &opts)
            })
        };
        self.st.loads.fetch_add(1, Ordering::SeqCst);
        *lock(&self.st.engine) = Some(engine.clone());
        *lock(&self.st.loaded) = Some((path.clone(), device_spec));
        let client = self.client.clone();
        let progress = self.caps().progress;
        let st = self.st.clone();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        *lock(&self.st.shown_error) = None;
        self.status("loading", &name, "").await;
        tokio::spawn(async move {
            let token = ProgressToken::String(format!("wick/load/{}", std::process::id()));
            let ongoing = if progress && client.create_work_done_progress(token.clone()).await.is_ok() {
                Some(client.progress(token, "wick: loading model").with_message(name.clone()).begin().await)
            } else {
                None
            };
            let t = Instant::now();
            let e2 = engine.clone();
            let res = tokio::task::spawn_blocking(move || e2.wait_ready()).await;
            let msg = match res {
                Ok(Ok(info)) => {
                    tracing::info!(model = %info.path, ms = t.elapsed().as_millis() as u64, "model ready");
                    send_status(&client, "ready", &name, "").await;
                    format!("{name} ready")
                }
                Ok(Err(e)) => {
                    *lock(&st.loaded) = None;
                    send_status(&client, "error", &name, &e.to_string()).await;
                    client.show_message(MessageType::ERROR, format!("wick: {e}")).await;
                    "failed".into()
                }
                Err(e) => {
                    send_status(&client, "error", &name, &e.to_string()).await;
                    format!("failed: {e}")
                }
            };
            if let Some(p) = ongoing {
                p.finish_with_message(msg).await;
            }
            drop(gate);
        });
    }

    /// Starts a remote backend: the engine thread runs its health check
    /// ("loading" until done), and a watcher turns its health into one
    /// `showMessage` per kind of problem and the status line's state.
    async fn load_remote(
        &self,
        remote: crate::engine::remote::RemoteOptions,
        model: Option<String>,
        gate: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let identity = (PathBuf::from(format!("remote:{remote:?}")), String::new());
        if lock(&self.st.loaded).as_ref() == Some(&identity) {
            return;
        }
        let label = remote.label();
        let engine = Engine::remote(remote, model);
        self.st.loads.fetch_add(1, Ordering::SeqCst);
        *lock(&self.st.engine) = Some(engine.clone());
        *lock(&self.st.loaded) = Some(identity);
        *lock(&self.st.shown_error) = None;
        self.status("loading", &label, "checking the server").await;
        let b = self.handle();
        tokio::spawn(async move {
            let e2 = engine.clone();
            let ready = tokio::task::spawn_blocking(move || e2.wait_ready()).await;
            drop(gate);
            let failed = match ready {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failed {
                *lock(&b.st.loaded) = None;
                b.status("error", &label, &why).await;
                b.show(MessageType::ERROR, format!("wick: {why}")).await;
                return;
            }
            // Only the receiver from here on: when a settings change replaces
            // this engine, its thread ends and so does this loop.
            let mut health = engine.health();
            let id = engine.id();
            drop(engine);
            loop {
                let now = health.borrow_and_update().clone();
                let current = lock(&b.st.engine).as_ref().is_some_and(|e| e.id() == id);
                if !current {
                    return;
                }
                match &now.problem {
                    Some(p) => {
                        tracing::warn!(kind = p.kind.name(), "remote backend: {p}");
                        b.status("error", &label, &p.message).await;
                        b.show(
                            MessageType::WARNING,
                            format!(
                                "wick: {p}. Suggestions are empty until it answers again (retrying with back-off)."
                            ),
                        )
                        .await;
                    }
                    None => {
                        b.status("ready", &label, "").await;
                        if now.episodes > 0 {
                            b.show(MessageType::INFO, format!("wick: {label} answers again.")).await;
                        }
                    }
                }
                if health.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    fn handle(&self) -> Backend {
        Backend { client: self.client.clone(), st: self.st.clone() }
    }

    /// The shared path of completion and inline completion. Requests for
    /// the same document version and position share one computation.
    async fn suggest(&self, uri: &Uri, pos: Position) -> RpcResult<Option<Suggestion>> {
        self.cursor_moved(uri, pos.line);
        let uri_s = uri.as_str().to_string();
        let (version, as_of) = {
            let docs = lock(&self.st.docs);
            (docs.latest_version(&uri_s), docs.mark())
        };
        let fut = {
            let mut inflight = lock(&self.st.inflight);
            match inflight.get(&uri_s).filter(|(v, p, _)| *v == version && *p == pos).and_then(|(_, _, f)| f.upgrade())
            {
                Some(f) => f,
                None => {
                    let b = self.handle();
                    let u = uri.clone();
                    let f: SharedSuggestion = async move { b.suggest_now(&u, pos, as_of).await }.boxed().shared();
                    if let Some(w) = f.downgrade() {
                        inflight.insert(uri_s.clone(), (version, pos, w));
                    }
                    f
                }
            }
        };
        let r = fut.await;
        let mut inflight = lock(&self.st.inflight);
        if inflight.get(&uri_s).is_some_and(|(v, p, _)| *v == version && *p == pos) {
            inflight.remove(&uri_s);
        }
        r
    }

    async fn suggest_now(&self, uri: &Uri, pos: Position, as_of: documents::AsOf) -> RpcResult<Option<Suggestion>> {
        let uri_s = uri.as_str().to_string();
        let span = tracing::info_span!("complete", uri = %uri_s, line = pos.line, col = pos.character);
        let fut = AssertUnwindSafe(self.suggest_inner(uri_s, pos, as_of).instrument(span)).catch_unwind();
        match fut.await {
            Ok(r) => r,
            Err(p) => {
                tracing::error!("completion panicked: {}", crate::engine::panic_message(&p));
                Err(RpcError::internal_error())
            }
        }
    }

    /// What a completion at `pos` needs from the server's state: None for
    /// an unknown document or position, a language turned off, no model.
    async fn prepare(&self, uri: &str, pos: Position, as_of: documents::AsOf) -> Option<Prepared> {
        let enc = self.encoding();
        let snap = snapshot_of(&self.st, uri, enc, as_of).await.map_err(|e| tracing::debug!("{e}")).ok()?;
        let cfg = lock(&self.st.config).clone();
        if !cfg.language_enabled(&snap.language) {
            tracing::debug!(uri, language = snap.language, "no completion: language not enabled");
            return None;
        }
        let cursor = proto::from_position(&snap.rope, pos, enc).map_err(|e| tracing::debug!("{e}")).ok()?;
        let Some(engine) = lock(&self.st.engine).clone() else {
            tracing::debug!(uri, "no completion: no engine");
            return None;
        };
        // Still loading: a quick empty answer.
        if engine.info().is_none() {
            tracing::debug!(uri, "no completion: the model is still loading");
            return None;
        }
        let root = lock(&self.st.root).clone();
        // Reading and parsing imported files is file I/O: off this thread.
        let others = {
            let (b, s, r) = (self.handle(), snap.clone(), root.clone());
            tokio::task::spawn_blocking(move || b.other_files(&s, r.as_deref())).await.unwrap_or_default()
        };
        let path = relative_path(uri, root.as_deref());
        let repo_name =
            root.as_ref().and_then(|r| r.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Some(Prepared { snap, cfg, cursor, engine, others, path, repo_name })
    }

    async fn suggest_inner(&self, uri: String, pos: Position, as_of: documents::AsOf) -> RpcResult<Option<Suggestion>> {
        let t0 = Instant::now();
        let debounce_ms = lock(&self.st.config).debounce_ms;
        if debounce_ms > 0 {
            let mine = {
                let mut seq = lock(&self.st.seq);
                let n = seq.entry(uri.clone()).or_default();
                *n += 1;
                *n
            };
            tokio::time::sleep(std::time::Duration::from_millis(debounce_ms)).await;
            if lock(&self.st.seq).get(&uri).copied() != Some(mine) {
                return Ok(None);
            }
        }
        // The typed-ahead state as of this request, read before the awaits
        // of the preparation: an older request finishing meanwhile must not
        // hand its state to this one mid-way.
        let last = lock(&self.st.last).get(&uri).cloned();
        let Some(p) = self.prepare(&uri, pos, as_of).await else { return Ok(None) };
        let req = p.request(last.as_ref(), Some(uri.clone()));
        let (engine, snap, cursor) = (&p.engine, &p.snap, p.cursor);
        let out = complete::suggest(engine, &req).await;
        if let Some(g) = &out.generation {
            tracing::info!(
                context_ms = out.context_ms,
                queued_ms = out.queued_ms,
                prompt_tokens = g.prompt_tokens,
                reused_tokens = g.reused_tokens,
                processed_tokens = g.prompt_tokens - g.reused_tokens,
                generated_tokens = g.generated_tokens,
                prefill_ms = g.prefill_ms,
                decode_ms = g.decode_ms,
                total_ms = t0.elapsed().as_secs_f64() * 1e3,
                stop = ?g.stop,
                empty = out.empty.map(|e| e.name()),
                "completion"
            );
        } else if out.typed_ahead {
            tracing::info!(total_ms = t0.elapsed().as_secs_f64() * 1e3, "typed-ahead hit");
        }
        // A result for an outdated document is dropped.
        if lock(&self.st.docs).latest_version(&uri) != Some(snap.version) {
            tracing::info!("dropping a completion for an outdated version");
            return Ok(None);
        }
        if out.text.trim().is_empty() {
            lock(&self.st.stats).end(&uri);
            return Ok(None);
        }
        let id = p
            .cfg
            .stats
            .then(|| lock(&self.st.stats).shown(&uri, &snap.language, t0.elapsed(), &out.text, out.typed_ahead));
        if !out.typed_ahead {
            lock(&self.st.last)
                .insert(uri, LastSuggestion::new(&snap.rope, cursor, out.suffix_head.clone(), out.text.clone()));
        }
        Ok(Some(Suggestion {
            id,
            rope: snap.rope.clone(),
            cursor,
            word_start: out.word_start,
            word: out.word,
            text: out.text,
        }))
    }

    /// Prefills the prompt of a completion at `pos` while the engine is
    /// idle (the `prefetch` setting), 200 ms after the cursor settles there;
    /// a newer position supersedes it.
    pub(super) fn schedule_prefetch(&self, uri: &Uri, pos: Position) {
        if !lock(&self.st.config).prefetch {
            return;
        }
        let n = self.st.prefetch_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let (b, uri) = (self.handle(), uri.as_str().to_string());
        let as_of = lock(&self.st.docs).mark();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(PREFETCH_DELAY_MS)).await;
            if b.st.prefetch_seq.load(Ordering::SeqCst) != n {
                return;
            }
            let Some(p) = b.prepare(&uri, pos, as_of).await else {
                tracing::debug!(uri, "prefetch: nothing to prepare");
                return;
            };
            let t0 = Instant::now();
            let Some(g) = complete::prefetch(&p.engine, &p.request(None, None)).await else { return };
            b.st.prefetches.fetch_add(1, Ordering::SeqCst);
            tracing::info!(
                uri,
                line = pos.line,
                prompt_tokens = g.prompt_tokens,
                reused_tokens = g.reused_tokens,
                ms = t0.elapsed().as_secs_f64() * 1e3,
                "prefetched"
            );
        });
    }

    /// Other open documents and the workspace files the current one imports,
    /// for cross-file definitions. Bounded: small files, a few of them.
    fn other_files(&self, snap: &documents::Snapshot, root: Option<&std::path::Path>) -> Vec<complete::OtherFile> {
        const MAX_FILE: usize = 512 * 1024;
        const MAX_FILES: usize = 24;
        let open = lock(&self.st.docs).texts();
        let mut out: Vec<complete::OtherFile> = Vec::new();
        for (uri, rope, version, lang) in open {
            if uri != snap.uri && rope.len_bytes() <= MAX_FILE && out.len() < MAX_FILES {
                let stamp = format!("v{version}:{}", rope.len_bytes());
                if let Some(defs) =
                    self.definitions(&uri, &stamp, || Some(complete::definitions_of(&rope.to_string(), lang)))
                {
                    out.push(complete::OtherFile { path: relative_path(&uri, root), lang, defs });
                }
            }
        }
        let (Some(lang), Some(parsed)) = (snap.lang, snap.parsed.as_ref()) else { return out };
        let Some(current) = uri_to_path(&snap.uri) else { return out };
        if snap.rope.len_bytes() > crate::syntax::MAX_PARSE_BYTES {
            return out;
        }
        let mut ws = lock(&self.st.workspace).clone();
        if ws.roots().is_empty() {
            // No workspace folder: the file's own directory.
            ws = crate::workspace::Workspace::new(current.parent().map(|p| p.to_path_buf()));
        }
        let text = snap.rope.to_string();
        let imports = parsed.imports(&text);
        for imp in ws.resolve_imports(lang, &imports, &current, root, MAX_FILES.saturating_sub(out.len())) {
            if out.iter().any(|o| o.path == imp.rel) {
                continue;
            }
            // Read and parsed again only when the file changes.
            let l = crate::syntax::Lang::from_path(&imp.path.to_string_lossy());
            let key = format!("file://{}", imp.path.display());
            let read = || ws.read(&imp.path, MAX_FILE).map(|f| complete::definitions_of(&f.text, l));
            if let Some(defs) = self.definitions(&key, &imp.stamp, read) {
                out.push(complete::OtherFile { path: imp.rel, lang: l, defs });
            }
        }
        out
    }

    /// The definitions of a file as of `stamp` (a document version or a
    /// file's modification time, with its length): kept, or computed (None:
    /// the file could not be read, and nothing is kept).
    fn definitions(
        &self,
        key: &str,
        stamp: &str,
        compute: impl FnOnce() -> Option<Vec<crate::syntax::Definition>>,
    ) -> Option<Defs> {
        if let Some((s, d)) = lock(&self.st.definitions).get(key) {
            if s == stamp {
                return Some(d.clone());
            }
        }
        let d = Arc::new(compute()?);
        let mut kept = lock(&self.st.definitions);
        if kept.len() >= MAX_KEPT_DEFINITIONS {
            kept.clear();
        }
        kept.insert(key.to_string(), (stamp.to_string(), d.clone()));
        Some(d)
    }

    /// `wick/didMoveCursor` (a notification): where the cursor is, from
    /// editors that do not ask for code actions on every move (Neovim's
    /// plugin sends it). Errors held back on the line being typed are shown
    /// once the cursor leaves it, and the prompt there is prefetched.
    async fn did_move_cursor(&self, params: TextDocumentPositionParams) {
        guard_note("wick/didMoveCursor", async move {
            let (uri, pos) = (params.text_document.uri, params.position);
            if lock(&self.st.docs).get(uri.as_str()).is_none() {
                return;
            }
            self.cursor_moved(&uri, pos.line);
            self.schedule_prefetch(&uri, pos);
        })
        .await
    }

    /// `wick/didAccept` (a notification): the editor took suggestion `id`
    /// (or `chars` of its characters), for the statistics.
    async fn did_accept(&self, params: serde_json::Value) {
        guard_note("wick/didAccept", async move {
            match serde_json::from_value::<stats::DidAccept>(params) {
                Ok(a) => lock(&self.st.stats).accepted(&a),
                Err(e) => tracing::debug!("wick/didAccept: {e}"),
            }
        })
        .await
    }

    /// The server's copy of a document (for clients' diagnostics and tests).
    async fn document_text(&self, params: TextDocumentIdentifier) -> RpcResult<serde_json::Value> {
        guard("wick/documentText", async move {
            let enc = self.encoding();
            let mut docs = lock(&self.st.docs);
            let as_of = docs.mark();
            match docs.snapshot_as_of(params.uri.as_str(), enc, as_of) {
                Ok(s) => {
                    Ok(serde_json::json!({"version": s.version, "text": s.rope.to_string(), "languageId": s.language}))
                }
                Err(e) => Err(RpcError::invalid_params(e.to_string())),
            }
        })
        .await
    }

    /// Sizes of the server's per-document state (for tests and soak runs:
    /// nothing may grow with documents that are closed or were never open).
    async fn server_state(&self, _: serde_json::Value) -> RpcResult<serde_json::Value> {
        guard("wick/serverState", async move {
            Ok(serde_json::json!({
                "documents": lock(&self.st.docs).uris().count(),
                "last": lock(&self.st.last).len(),
                "seq": lock(&self.st.seq).len(),
                "diagSeq": lock(&self.st.diag).len(),
                "inflight": lock(&self.st.inflight).values().filter(|(_, _, f)| f.upgrade().is_some()).count(),
                "analyses": lock(&self.st.analyses).len(),
                "definitions": lock(&self.st.definitions).len(),
                "engineKeys": lock(&self.st.engine).as_ref().map_or(0, |e| e.tracked_keys()),
                "loads": self.st.loads.load(Ordering::SeqCst),
                "prefetches": self.st.prefetches.load(Ordering::SeqCst),
                "loading": self.st.load_gate.try_lock().is_err(),
                "loaded": lock(&self.st.loaded).as_ref().map(|(p, _)| p.display().to_string()),
                "backend": lock(&self.st.engine).as_ref().and_then(|e| e.info()).map(|i| i.path),
                "backendProblem": lock(&self.st.engine).as_ref().and_then(|e| e.health().borrow().problem.clone())
                    .map(|p| serde_json::json!({"kind": p.kind.name(), "message": p.message})),
            }))
        })
        .await
    }

    async fn invalid_message(&self) -> RpcResult<()> {
        Err(RpcError::parse_error())
    }

    async fn inline_completion(&self, params: InlineCompletionParams) -> RpcResult<Option<InlineCompletionResponse>> {
        guard("textDocument/inlineCompletion", async move {
            let tdp = params.text_document_position;
            let s = self.suggest(&tdp.text_document.uri, tdp.position).await?;
            Ok(Some(InlineCompletionResponse::Array(match s {
                None => vec![],
                Some(s) => vec![InlineCompletionItem {
                    insert_text: s.text.clone(),
                    filter_text: None,
                    range: Some(proto::to_range(&s.rope, s.cursor, s.cursor, self.encoding())),
                    command: accept_command(s.id),
                    insert_text_format: Some(InsertTextFormat::PLAIN_TEXT),
                }],
            })))
        })
        .await
    }
}

fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    let mut bytes = Vec::with_capacity(rest.len());
    let b = rest.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&rest[i + 1..i + 3], 16) {
                bytes.push(v);
                i += 3;
                continue;
            }
        }
        bytes.push(b[i]);
        i += 1;
    }
    Some(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

/// A document's path relative to the workspace root, for the prompt.
fn relative_path(uri: &str, root: Option<&std::path::Path>) -> String {
    match uri_to_path(uri) {
        Some(p) => crate::workspace::relative(&p, root),
        None => uri.to_string(),
    }
}

/// The method names `WICK_PANIC_IN` lists (comma-separated): their handlers
/// panic on purpose, for tests of [`guard`].
fn panics_on_purpose(method: &str) -> bool {
    static LIST: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        std::env::var("WICK_PANIC_IN").map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default()
    })
    .iter()
    .any(|m| m == method)
}

/// One guard for every handler: runs it in a span with its timing, and
/// turns a panic into a log line with the method's name (and, for a
/// request, an internal-error answer), so no handler can end the server.
async fn guard<T>(method: &'static str, fut: impl std::future::Future<Output = RpcResult<T>>) -> RpcResult<T> {
    let t = Instant::now();
    let run = async move {
        if panics_on_purpose(method) {
            panic!("WICK_PANIC_IN names {method}");
        }
        fut.await
    };
    let r = AssertUnwindSafe(run).catch_unwind().instrument(tracing::debug_span!("handler", method)).await;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    match r {
        Ok(r) => {
            tracing::debug!(method, ms, "handled");
            r
        }
        Err(p) => {
            tracing::error!(method, ms, "handler panicked: {}", crate::engine::panic_message(&p));
            Err(RpcError {
                code: tower_lsp_server::jsonrpc::ErrorCode::InternalError,
                message: format!("wick: internal error in {method} (details in the server log)").into(),
                data: None,
            })
        }
    }
}

/// [`guard`] for a notification: nothing to answer.
async fn guard_note(method: &'static str, fut: impl std::future::Future<Output = ()>) {
    let _ = guard(method, async move {
        fut.await;
        Ok(())
    })
    .await;
}

fn position_encoding(params: &InitializeParams) -> Encoding {
    let offered = params.capabilities.general.as_ref().and_then(|g| g.position_encodings.as_ref());
    match offered {
        Some(list) if list.contains(&PositionEncodingKind::UTF8) => Encoding::Utf8,
        _ => Encoding::Utf16,
    }
}

impl LanguageServer for Backend {
    async fn initialize(&self, params: InitializeParams) -> RpcResult<InitializeResult> {
        guard("initialize", async move {
            let enc = position_encoding(&params);
            #[allow(deprecated)]
            let folders: Vec<PathBuf> = match &params.workspace_folders {
                Some(f) if !f.is_empty() => f.iter().filter_map(|f| uri_to_path(f.uri.as_str())).collect(),
                _ => params.root_uri.as_ref().and_then(|u| uri_to_path(u.as_str())).into_iter().collect(),
            };
            *lock(&self.st.workspace) = crate::workspace::Workspace::new(folders);
            #[allow(deprecated)]
            let root = params
                .workspace_folders
                .as_ref()
                .and_then(|f| f.first())
                .map(|f| f.uri.as_str().to_string())
                .or_else(|| params.root_uri.as_ref().map(|u| u.as_str().to_string()))
                .and_then(|u| uri_to_path(&u));
            *lock(&self.st.root) = root;
            let td = params.capabilities.text_document.as_ref();
            let caps = ClientCaps {
                encoding: enc,
                progress: params.capabilities.window.as_ref().and_then(|w| w.work_done_progress).unwrap_or(false),
                resolve_edits: td
                    .and_then(|t| t.code_action.as_ref())
                    .and_then(|c| c.resolve_support.as_ref())
                    .is_some_and(|r| r.properties.iter().any(|p| p == "edit")),
                document_changes: params
                    .capabilities
                    .workspace
                    .as_ref()
                    .and_then(|w| w.workspace_edit.as_ref())
                    .and_then(|w| w.document_changes)
                    .unwrap_or(false),
            };
            if self.st.caps.set(caps).is_err() {
                tracing::warn!("a second initialize: the first one's capabilities stay");
            }
            if let Some(opts) = &params.initialization_options {
                let problems = lock(&self.st.config).update(opts);
                if !problems.is_empty() {
                    // Reported once the client is initialized (no messages before).
                    let client = self.client.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        client.show_message(MessageType::WARNING, problems.message()).await;
                    });
                }
            }
            Ok(InitializeResult {
                capabilities: ServerCapabilities {
                    position_encoding: Some(match enc {
                        Encoding::Utf8 => PositionEncodingKind::UTF8,
                        Encoding::Utf16 => PositionEncodingKind::UTF16,
                    }),
                    text_document_sync: Some(TextDocumentSyncCapability::Options(TextDocumentSyncOptions {
                        open_close: Some(true),
                        change: Some(TextDocumentSyncKind::INCREMENTAL),
                        // For `diagnostics: onSave`.
                        save: Some(TextDocumentSyncSaveOptions::Supported(true)),
                        ..Default::default()
                    })),
                    completion_provider: Some(CompletionOptions {
                        resolve_provider: Some(false),
                        trigger_characters: Some(vec![".".into(), "(".into(), " ".into()]),
                        ..Default::default()
                    }),
                    inline_completion_provider: Some(OneOf::Left(true)),
                    // VS Code's client turns this into the command an
                    // accepted item runs (other clients may send it too).
                    execute_command_provider: Some(ExecuteCommandOptions {
                        commands: vec![stats::ACCEPT_COMMAND.into()],
                        work_done_progress_options: Default::default(),
                    }),
                    code_action_provider: Some(CodeActionProviderCapability::Options(CodeActionOptions {
                        code_action_kinds: Some(vec![CodeActionKind::QUICKFIX, CodeActionKind::REFACTOR_REWRITE]),
                        resolve_provider: Some(true),
                        work_done_progress_options: Default::default(),
                    })),
                    ..Default::default()
                },
                server_info: Some(ServerInfo { name: "wick".into(), version: Some(env!("CARGO_PKG_VERSION").into()) }),
                offset_encoding: None,
            })
        })
        .await
    }

    async fn initialized(&self, _: InitializedParams) {
        guard_note("initialized", async move {
            self.start_engine().await;
        })
        .await
    }

    async fn shutdown(&self) -> RpcResult<()> {
        guard("shutdown", async move {
            SHUTDOWN.store(true, std::sync::atomic::Ordering::SeqCst);
            // Suggestions still showing were dismissed; written before the answer.
            let written = lock(&self.st.stats).finish();
            if let Some(written) = written {
                let _ = tokio::task::spawn_blocking(move || written.recv_timeout(Duration::from_secs(1))).await;
            }
            Ok(())
        })
        .await
    }

    async fn did_open(&self, p: DidOpenTextDocumentParams) {
        guard_note("textDocument/didOpen", async move {
            let d = p.text_document;
            lock(&self.st.docs).open(d.uri.as_str(), &d.text, d.version, &d.language_id);
            lock(&self.st.analyses).remove(d.uri.as_str());
            self.schedule_diagnostics(d.uri, 0);
        })
        .await
    }

    async fn did_change(&self, p: DidChangeTextDocumentParams) {
        guard_note("textDocument/didChange", async move {
            let enc = self.encoding();
            let typed_line = p.content_changes.last().and_then(proto::line_after_change);
            let changes = p.content_changes.into_iter().map(proto::from_change).collect();
            let uri = p.text_document.uri.as_str().to_string();
            if let Err(e) = lock(&self.st.docs).change(&uri, p.text_document.version, changes, enc) {
                // A document never opened gets no state and no task.
                tracing::warn!("didChange: {e}");
                return;
            }
            self.typed_at(&uri, typed_line);
            if lock(&self.st.config).diagnostics == DiagnosticsMode::On {
                self.schedule_diagnostics(p.text_document.uri, DIAGNOSTICS_DEBOUNCE_MS);
            }
        })
        .await
    }

    async fn did_save(&self, p: DidSaveTextDocumentParams) {
        guard_note("textDocument/didSave", async move {
            let uri = p.text_document.uri.as_str().to_string();
            if lock(&self.st.docs).get(&uri).is_none() {
                return;
            }
            // Saved: the line is finished.
            self.typed_at(&uri, None);
            if lock(&self.st.config).diagnostics != DiagnosticsMode::Off {
                self.schedule_diagnostics(p.text_document.uri, 0);
            }
        })
        .await
    }

    async fn did_close(&self, p: DidCloseTextDocumentParams) {
        guard_note("textDocument/didClose", async move {
            let uri = p.text_document.uri.as_str().to_string();
            lock(&self.st.docs).close(&uri);
            lock(&self.st.last).remove(&uri);
            lock(&self.st.seq).remove(&uri);
            lock(&self.st.diag).remove(&uri);
            lock(&self.st.analyses).remove(&uri);
            lock(&self.st.inflight).remove(&uri);
            lock(&self.st.stats).end(&uri);
            self.client.publish_diagnostics(p.text_document.uri, Vec::new(), None).await;
        })
        .await
    }

    async fn execute_command(&self, p: ExecuteCommandParams) -> RpcResult<Option<LSPAny>> {
        guard("workspace/executeCommand", async move {
            if p.command != stats::ACCEPT_COMMAND {
                return Err(RpcError::invalid_params(format!("unknown command {}", p.command)));
            }
            let arg = p.arguments.into_iter().next().unwrap_or_default();
            let a = serde_json::from_value::<stats::DidAccept>(arg)
                .map_err(|e| RpcError::invalid_params(format!("{}: {e}", stats::ACCEPT_COMMAND)))?;
            lock(&self.st.stats).accepted(&a);
            Ok(None)
        })
        .await
    }

    async fn code_action(&self, params: CodeActionParams) -> RpcResult<Option<CodeActionResponse>> {
        guard("textDocument/codeAction", async move { self.code_actions(params).await }).await
    }

    async fn code_action_resolve(&self, action: CodeAction) -> RpcResult<CodeAction> {
        guard("codeAction/resolve", async move { self.resolve_code_action(action).await }).await
    }

    async fn did_change_configuration(&self, p: DidChangeConfigurationParams) {
        guard_note("workspace/didChangeConfiguration", async move {
            let (problems, diagnostics_changed) = {
                let mut c = lock(&self.st.config);
                let before = (c.diagnostics, c.diagnostics_severity);
                let problems = c.update(&p.settings);
                if !c.stats {
                    lock(&self.st.stats).forget();
                }
                (problems, before != (c.diagnostics, c.diagnostics_severity))
            };
            if !problems.is_empty() {
                self.show(MessageType::WARNING, problems.message()).await;
            }
            if diagnostics_changed {
                self.diagnostics_settings_changed().await;
            }
            self.start_engine().await;
        })
        .await
    }

    async fn completion(&self, params: CompletionParams) -> RpcResult<Option<CompletionResponse>> {
        guard("textDocument/completion", async move {
            let tdp = params.text_document_position;
            let Some(s) = self.suggest(&tdp.text_document.uri, tdp.position).await? else {
                return Ok(Some(CompletionResponse::Array(vec![])));
            };
            let new_text = format!("{}{}", s.word, s.text);
            let first = new_text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
            let label: String = if first.chars().count() > 80 {
                first.chars().take(79).chain(['…']).collect()
            } else {
                first.to_string()
            };
            let item = CompletionItem {
                label,
                kind: Some(CompletionItemKind::TEXT),
                detail: Some("wick".into()),
                documentation: Some(Documentation::MarkupContent(MarkupContent {
                    kind: MarkupKind::Markdown,
                    value: format!("```\n{new_text}\n```"),
                })),
                filter_text: Some(new_text.clone()),
                sort_text: Some("0".into()),
                preselect: Some(true),
                text_edit: Some(CompletionTextEdit::Edit(TextEdit {
                    range: proto::to_range(&s.rope, s.word_start, s.cursor, self.encoding()),
                    new_text,
                })),
                insert_text_format: Some(InsertTextFormat::PLAIN_TEXT),
                command: accept_command(s.id),
                ..Default::default()
            };
            Ok(Some(CompletionResponse::List(CompletionList { is_incomplete: true, items: vec![item] })))
        })
        .await
    }
}
