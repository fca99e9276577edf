//! Completions: the document snapshot, the one pipeline (`complete::suggest`), shared in-flight answers, prefetch, other files' definitions.

use super::*;

impl Backend {
    /// The shared path of completion and inline completion. Requests for
    /// the same document version and position (and number of suggestions)
    /// share one computation.
    pub(super) async fn suggest(&self, uri: &Uri, pos: Position, candidates: usize) -> RpcResult<Option<Suggestion>> {
        self.cursor_moved(uri, pos.line);
        let uri_s = uri.as_str().to_string();
        // Stamped on arrival, before any await: the preparation can finish
        // out of order, and only a later arrival supersedes in the engine.
        let arrived = crate::engine::arrival();
        let (version, as_of) = {
            let docs = lock(&self.st.docs);
            (docs.latest_version(&uri_s), docs.mark())
        };
        let fut = {
            let mut inflight = lock(&self.st.inflight);
            let asked = (pos, candidates);
            match inflight
                .get(&uri_s)
                .filter(|(v, a, _)| *v == version && *a == asked)
                .and_then(|(_, _, f)| f.upgrade())
            {
                Some(f) => f,
                None => {
                    let b = self.handle();
                    let u = uri.clone();
                    let f: SharedSuggestion =
                        async move { b.suggest_now(&u, pos, as_of, arrived, candidates).await }.boxed().shared();
                    if let Some(w) = f.downgrade() {
                        inflight.insert(uri_s.clone(), (version, asked, w));
                    }
                    f
                }
            }
        };
        let r = fut.await;
        let mut inflight = lock(&self.st.inflight);
        if inflight.get(&uri_s).is_some_and(|(v, a, _)| *v == version && *a == (pos, candidates)) {
            inflight.remove(&uri_s);
        }
        r
    }

    pub(super) async fn suggest_now(
        &self,
        uri: &Uri,
        pos: Position,
        as_of: documents::AsOf,
        arrived: u64,
        candidates: usize,
    ) -> RpcResult<Option<Suggestion>> {
        let uri_s = uri.as_str().to_string();
        let span = tracing::info_span!("complete", uri = %uri_s, line = pos.line, col = pos.character);
        let fut = AssertUnwindSafe(self.suggest_inner(uri_s, pos, as_of, arrived, candidates).instrument(span))
            .catch_unwind();
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
    pub(super) async fn prepare(&self, uri: &str, pos: Position, as_of: documents::AsOf) -> Option<Prepared> {
        let enc = self.encoding();
        let snap = snapshot_of(&self.st, uri, enc, as_of).await.map_err(|e| tracing::debug!("{e}")).ok()?;
        let cfg = lock(&self.st.config).clone();
        if !cfg.language_enabled(&snap.language) {
            tracing::debug!(uri, language = snap.language, "no completion: language not enabled");
            return None;
        }
        let cursor = proto::from_position(&snap.rope, pos, enc).map_err(|e| tracing::debug!("{e}")).ok()?;
        let Some(engine) = self.st.model.engine() else {
            tracing::debug!(uri, "no completion: no engine");
            return None;
        };
        // Still loading: a quick empty answer.
        if engine.info().is_none() {
            tracing::debug!(uri, "no completion: the model is still loading");
            return None;
        }
        let root = self.st.folders.get().and_then(|f| f.root.clone());
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

    pub(super) async fn suggest_inner(
        &self,
        uri: String,
        pos: Position,
        as_of: documents::AsOf,
        arrived: u64,
        candidates: usize,
    ) -> RpcResult<Option<Suggestion>> {
        let t0 = Instant::now();
        let debounce_ms = lock(&self.st.config).debounce_ms;
        if debounce_ms > 0 {
            self.st.completions.note(&uri, arrived);
            tokio::time::sleep(std::time::Duration::from_millis(debounce_ms)).await;
            if !self.st.completions.is_latest(&uri, arrived) {
                return Ok(None);
            }
        }
        // The typed-ahead state as of this request, read before the awaits
        // of the preparation: an older request finishing meanwhile must not
        // hand its state to this one mid-way.
        let last = lock(&self.st.last).get(&uri).cloned();
        let Some(p) = self.prepare(&uri, pos, as_of).await else { return Ok(None) };
        // Edited meanwhile: the answer would be dropped, so ask nothing.
        if lock(&self.st.docs).latest_version(&uri) != Some(p.snap.version) {
            tracing::debug!("no completion: the document changed during the preparation");
            return Ok(None);
        }
        let req = p.request(last.as_ref(), Some(uri.clone()), arrived, candidates.min(p.cfg.suggestions));
        let (snap, cursor) = (&p.snap, p.cursor);
        let out = complete::suggest(&p.engine, &req).await;
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
                alternatives = out.alternatives.len(),
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
        let id = p.cfg.stats.then(|| {
            let mut stats = lock(&self.st.stats);
            let id = stats.shown(&uri, &snap.language, t0.elapsed(), &out.text, out.typed_ahead);
            if !out.typed_ahead {
                stats.offered(id, &out.alternatives);
            }
            id
        });
        if !out.typed_ahead {
            let mut texts = vec![out.text.clone()];
            texts.extend(out.alternatives.iter().cloned());
            lock(&self.st.last).insert(uri, LastSuggestion::of(&snap.rope, cursor, out.suffix_head.clone(), texts));
        }
        Ok(Some(Suggestion {
            id,
            rope: snap.rope.clone(),
            cursor,
            word_start: out.word_start,
            word: out.word,
            text: out.text,
            alternatives: out.alternatives,
        }))
    }

    /// Prefills the prompt of a completion at `pos` while the engine is
    /// idle (the `prefetch` setting), 200 ms after the cursor settles there;
    /// a newer position supersedes it.
    pub(super) fn schedule_prefetch(&self, uri: &Uri, pos: Position) {
        if !lock(&self.st.config).prefetch {
            return;
        }
        let n = self.st.prefetch_latest.arrive("");
        let (b, uri) = (self.handle(), uri.as_str().to_string());
        let as_of = lock(&self.st.docs).mark();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(PREFETCH_DELAY_MS)).await;
            if !b.st.prefetch_latest.is_latest("", n) {
                return;
            }
            let Some(p) = b.prepare(&uri, pos, as_of).await else {
                tracing::debug!(uri, "prefetch: nothing to prepare");
                return;
            };
            let t0 = Instant::now();
            let Some(g) = complete::prefetch(&p.engine, &p.request(None, None, 0, 1)).await else { return };
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
    pub(super) fn other_files(
        &self,
        snap: &documents::Snapshot,
        root: Option<&std::path::Path>,
    ) -> Vec<complete::OtherFile> {
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
        let mut ws = self.st.folders.get().map(|f| f.workspace.clone()).unwrap_or_default();
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
            let read = || ws.read(&imp.path, MAX_FILE).map(|f| complete::definitions_of(&f, l));
            if let Some(defs) = self.definitions(&key, &imp.stamp, read) {
                out.push(complete::OtherFile { path: imp.rel, lang: l, defs });
            }
        }
        out
    }

    /// The definitions of a file as of `stamp` (a document version or a
    /// file's modification time, with its length): kept, or computed (None:
    /// the file could not be read, and nothing is kept).
    pub(super) fn definitions(
        &self,
        key: &str,
        stamp: &str,
        compute: impl FnOnce() -> Option<Vec<crate::syntax::Definition>>,
    ) -> Option<Defs> {
        self.st.definitions.get_or(key, stamp, compute)
    }

    pub(super) async fn inline_completion(
        &self,
        params: InlineCompletionParams,
    ) -> RpcResult<Option<InlineCompletionResponse>> {
        guard("textDocument/inlineCompletion", async move {
            let tdp = params.text_document_position;
            // Asked for explicitly (the editor's next/previous suggestion,
            // or a manual trigger): several to cycle through. While typing:
            // one, so that keystrokes pay nothing for the others.
            let explicit = params.context.trigger_kind == InlineCompletionTriggerKind::INVOKED;
            let candidates = if explicit { crate::config::MAX_SUGGESTIONS } else { 1 };
            let s = self.suggest(&tdp.text_document.uri, tdp.position, candidates).await?;
            Ok(Some(InlineCompletionResponse::Array(match s {
                None => vec![],
                Some(s) => {
                    let range = proto::to_range(&s.rope, s.cursor, s.cursor, self.encoding());
                    std::iter::once(&s.text)
                        .chain(&s.alternatives)
                        .enumerate()
                        .map(|(i, text)| InlineCompletionItem {
                            insert_text: text.clone(),
                            filter_text: None,
                            range: Some(range),
                            command: accept_command(s.id, i),
                            insert_text_format: Some(InsertTextFormat::PLAIN_TEXT),
                        })
                        .collect()
                }
            })))
        })
        .await
    }
}
