//! Loading the model the settings name (local or a team server), one load at a time, with progress and one message per failure.

use super::*;

impl Backend {
    /// Starts (or restarts) the model load in the background, with
    /// `$/progress` while it loads. Loads run one at a time: a settings
    /// change during a load waits for it, then loads what the settings say
    /// by then (switching back and forth loads the last choice once, not
    /// every model in between at the same time).
    pub(super) async fn start_engine(&self) {
        let b = self.handle();
        tokio::spawn(async move {
            let gate = b.st.load_gate.clone().lock_owned().await;
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
    pub(super) async fn load_remote(
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
}
