//! Loading the model the settings name (local or a team server), one load at a time, with progress and one message per failure.

use super::*;
use std::sync::atomic::AtomicU64;

/// The model the settings name: the engine running it, which model and
/// device that is, the last error shown and the one-load-at-a-time gate.
/// One owner, so a load replaces all of it together.
#[derive(Default)]
pub(super) struct ModelSlot {
    current: Mutex<Current>,
    /// Held while a model loads: one load at a time.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Models loaded so far (for `wick/serverState`).
    loads: AtomicU64,
}

#[derive(Default)]
struct Current {
    engine: Option<Engine>,
    /// The model (path, or the team server) and device the engine runs,
    /// to reload on change; None once its load failed, so that the same
    /// settings try again.
    identity: Option<(PathBuf, String)>,
    /// The last model error shown, not to repeat it on every settings change.
    shown_error: Option<String>,
}

impl ModelSlot {
    /// The engine to ask (None: no model is configured or it failed).
    pub(super) fn engine(&self) -> Option<Engine> {
        lock(&self.current).engine.clone()
    }

    fn runs(&self, identity: &(PathBuf, String)) -> bool {
        lock(&self.current).identity.as_ref() == Some(identity)
    }

    /// `engine` (loading) replaces the current one.
    fn install(&self, engine: Engine, identity: (PathBuf, String)) {
        self.loads.fetch_add(1, Ordering::SeqCst);
        *lock(&self.current) = Current { engine: Some(engine), identity: Some(identity), shown_error: None };
    }

    /// `engine`'s load failed: the same settings load again next time
    /// (unless another engine replaced it meanwhile).
    fn failed(&self, engine: u64) {
        let mut c = lock(&self.current);
        if c.engine.as_ref().is_some_and(|e| e.id() == engine) {
            c.identity = None;
        }
    }

    /// No model can be loaded (`error`): completions are off. Whether
    /// `error` is news (not the error shown last).
    fn none(&self, error: &str) -> bool {
        let mut c = lock(&self.current);
        c.engine = None;
        c.shown_error.replace(error.to_string()).as_deref() != Some(error)
    }

    /// The slot's figures for `wick/serverState`.
    pub(super) fn state(&self) -> serde_json::Value {
        let c = lock(&self.current);
        let engine = c.engine.as_ref();
        serde_json::json!({
            "engineKeys": engine.map_or(0, |e| e.tracked_keys()),
            "loads": self.loads.load(Ordering::SeqCst),
            "loading": self.gate.try_lock().is_err(),
            "loaded": c.identity.as_ref().map(|(p, _)| p.display().to_string()),
            "backend": engine.and_then(|e| e.info()).map(|i| i.path),
            "backendProblem": engine.and_then(|e| e.health().borrow().problem.clone())
                .map(|p| serde_json::json!({"kind": p.kind.name(), "message": p.message})),
        })
    }
}

impl Backend {
    /// Starts (or restarts) the model load in the background, with
    /// `$/progress` while it loads. Loads run one at a time: a settings
    /// change during a load waits for it, then loads what the settings say
    /// by then (switching back and forth loads the last choice once, not
    /// every model in between at the same time).
    pub(super) async fn start_engine(&self) {
        let b = self.handle();
        tokio::spawn(async move {
            let gate = b.st.model.gate.clone().lock_owned().await;
            b.load_latest(gate).await;
        });
    }

    /// Loads the model the settings name now, unless it is the one loaded;
    /// `gate` is held until that load has finished.
    pub(super) async fn load_latest(&self, gate: tokio::sync::OwnedMutexGuard<()>) {
        let cfg = lock(&self.st.config).clone();
        let cli = self.st.cli.clone();
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
                tracing::error!("{e}");
                self.status("error", "", &e.to_string()).await;
                if self.st.model.none(&e) {
                    self.show(
                        MessageType::ERROR,
                        format!("wick: {e}. Completions are off until a model is available."),
                    )
                    .await;
                }
                return;
            }
        };
        let identity = (path.clone(), device_spec.clone());
        if self.st.model.runs(&identity) {
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
        self.st.model.install(engine.clone(), identity);
        let client = self.client.clone();
        let progress = self.caps().progress;
        let st = self.st.clone();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
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
                    st.model.failed(engine.id());
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
    pub(super) async fn load_remote(
        &self,
        remote: crate::engine::remote::RemoteOptions,
        model: Option<String>,
        gate: tokio::sync::OwnedMutexGuard<()>,
    ) {
        let identity = (PathBuf::from(format!("remote:{remote:?}")), String::new());
        if self.st.model.runs(&identity) {
            return;
        }
        let label = remote.label();
        let engine = Engine::remote(remote, model);
        self.st.model.install(engine.clone(), identity);
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
                b.st.model.failed(engine.id());
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
                let current = b.st.model.engine().is_some_and(|e| e.id() == id);
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
}
