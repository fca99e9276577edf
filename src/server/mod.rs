//! The language server: the only code that knows LSP types. Decodes
//! requests, calls the core (documents, complete, engine), encodes answers.
//! No lock is held across an `.await`.

use crate::complete::{self, LastSuggestion};
use crate::config::{Config, DiagnosticsMode};
use crate::engine::{Engine, LoadOptions};
use crate::workspace::documents::{self, DocumentStore, Encoding};
use futures::FutureExt;
use ropey::Rope;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tower_lsp_server::jsonrpc::{Error as RpcError, Result as RpcResult};
use tower_lsp_server::ls_types::InlineCompletionTriggerKind;
use tower_lsp_server::ls_types::*;
use tower_lsp_server::{Client, LanguageServer, LspService, Server};
use tracing::Instrument;

pub mod client;
mod code_actions;
mod completion;
mod ext;
pub mod framing;
mod latest;
mod loading;
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
    /// The model the settings name, and its loading.
    model: loading::ModelSlot,
    last: Mutex<HashMap<String, LastSuggestion>>,
    /// Per document, the latest completion request (`debounceMs`).
    completions: latest::Latest,
    /// The command line's options: set when the server starts.
    cli: ServeOptions,
    /// The workspace folders, as `initialize` named them: set once.
    folders: std::sync::OnceLock<Folders>,
    /// Per document, the latest diagnostics scheduling (debounce), with the
    /// line being typed and what was held back there.
    diag: latest::Latest<code_actions::DiagState>,
    /// The latest cursor position seen (one key): a prefetch runs only for it.
    prefetch_latest: latest::Latest,
    /// Prefetches that ran (for `wick/serverState`).
    prefetches: std::sync::atomic::AtomicU64,
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
    definitions: crate::workspace::PerFile<Vec<crate::syntax::Definition>>,
    /// Shown suggestions until accepted or dismissed (the `stats` setting).
    stats: Mutex<stats::Tracker>,
}

/// The workspace as `initialize` named it.
#[derive(Debug, Default)]
struct Folders {
    /// The first folder (for relative paths in prompts).
    root: Option<PathBuf>,
    /// All of them: the only places files are read from.
    workspace: crate::workspace::Workspace,
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

/// A document's syntax analysis, with the version and length it is of.
type KeptAnalysis = (i32, usize, Arc<crate::syntax::Analysis>);

/// A suggestion being computed: for this document version and position.
/// Weak: only the requests waiting for it keep it alive, so when the last
/// one is cancelled (or its client gone) the generation is dropped and the
/// engine stops.
type InFlight = (
    Option<i32>,
    Asked,
    futures::future::WeakShared<futures::future::BoxFuture<'static, RpcResult<Option<Suggestion>>>>,
);

/// Where a completion was asked for, and how many suggestions.
type Asked = (Position, usize);

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

pub(crate) struct Backend {
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
    fn request<'a>(
        &'a self,
        last: Option<&'a LastSuggestion>,
        key: Option<String>,
        arrived: u64,
        candidates: usize,
    ) -> complete::SuggestRequest<'a> {
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
            arrived,
            candidates,
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
    /// Other suggestions, for the editor to cycle through (most likely first).
    alternatives: Vec<String>,
    /// Its id for the statistics (None: `stats` is off).
    id: Option<u64>,
}

/// The command an answer carries: the editor runs it when the suggestion
/// is accepted, and it comes back as `wick.didAccept`.
/// `candidate`: which of the answer's suggestions (0: the first).
fn accept_command(id: Option<u64>, candidate: usize) -> Option<Command> {
    let arg = match candidate {
        0 => serde_json::json!({ "id": id? }),
        i => serde_json::json!({ "id": id?, "candidate": i }),
    };
    Some(Command { title: "accepted".into(), command: stats::ACCEPT_COMMAND.into(), arguments: Some(vec![arg]) })
}

/// Set by `shutdown`: the exit code after `exit` is 0 only if it came first.
pub(crate) static SHUTDOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub async fn serve(opts: ServeOptions) {
    let stdout = tokio::io::stdout();
    let (reader, writer) = tokio::io::duplex(1 << 20);
    tokio::spawn(framing::sanitize(tokio::io::stdin(), writer));
    let (service, socket) = LspService::build(|client| {
        let st = Arc::new(State { cli: opts.clone(), ..State::default() });
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
pub(crate) enum StatusNotification {}

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

    fn handle(&self) -> Backend {
        Backend { client: self.client.clone(), st: self.st.clone() }
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
            let workspace = crate::workspace::Workspace::new(folders);
            #[allow(deprecated)]
            let root = params
                .workspace_folders
                .as_ref()
                .and_then(|f| f.first())
                .map(|f| f.uri.as_str().to_string())
                .or_else(|| params.root_uri.as_ref().map(|u| u.as_str().to_string()))
                .and_then(|u| uri_to_path(&u));
            if self.st.folders.set(Folders { root, workspace }).is_err() {
                tracing::warn!("a second initialize: the workspace folders stay as the first one named them");
            }
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
            self.st.completions.forget(&uri);
            self.st.diag.forget(&uri);
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
            let Some(s) = self.suggest(&tdp.text_document.uri, tdp.position, 1).await? else {
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
                command: accept_command(s.id, 0),
                ..Default::default()
            };
            Ok(Some(CompletionResponse::List(CompletionList { is_incomplete: true, items: vec![item] })))
        })
        .await
    }
}
