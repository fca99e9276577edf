//! wick's own protocol extensions (`wick/...`): cursor reports, accepts, the server's copy of a document, its state.

use super::*;

impl Backend {
    /// `wick/didMoveCursor` (a notification): where the cursor is, from
    /// editors that do not ask for code actions on every move (Neovim's
    /// plugin sends it). Errors held back on the line being typed are shown
    /// once the cursor leaves it, and the prompt there is prefetched.
    pub(super) async fn did_move_cursor(&self, params: TextDocumentPositionParams) {
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
    pub(super) async fn did_accept(&self, params: serde_json::Value) {
        guard_note("wick/didAccept", async move {
            match serde_json::from_value::<stats::DidAccept>(params) {
                Ok(a) => lock(&self.st.stats).accepted(&a),
                Err(e) => tracing::debug!("wick/didAccept: {e}"),
            }
        })
        .await
    }

    /// The server's copy of a document (for clients' diagnostics and tests).
    pub(super) async fn document_text(&self, params: TextDocumentIdentifier) -> RpcResult<serde_json::Value> {
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
    pub(super) async fn server_state(&self, _: serde_json::Value) -> RpcResult<serde_json::Value> {
        guard("wick/serverState", async move {
            let mut state = serde_json::json!({
                "documents": lock(&self.st.docs).uris().count(),
                "last": lock(&self.st.last).len(),
                "seq": self.st.completions.len(),
                "diagSeq": self.st.diag.len(),
                "inflight": lock(&self.st.inflight).values().filter(|(_, _, f)| f.upgrade().is_some()).count(),
                "analyses": lock(&self.st.analyses).len(),
                "definitions": self.st.definitions.len(),
                "prefetches": self.st.prefetches.load(Ordering::SeqCst),
            });
            if let (Some(all), serde_json::Value::Object(model)) = (state.as_object_mut(), self.st.model.state()) {
                all.extend(model);
            }
            Ok(state)
        })
        .await
    }

    pub(super) async fn invalid_message(&self) -> RpcResult<()> {
        Err(RpcError::parse_error())
    }
}
