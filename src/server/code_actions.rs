//! Diagnostics from tree-sitter, and the code actions that fix them with the
//! model ("Fix with wick: …", resolved lazily) or fill empty functions.

use super::*;
use crate::actions::run::ActionOptions;
use crate::actions::{self, FixError, FixRequest};
use crate::config::{DiagnosticsMode, Severity};
use crate::syntax::Analysis;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Quiet time after an edit before the document's syntax errors are published.
pub(crate) const DIAGNOSTICS_DEBOUNCE_MS: u64 = 300;
/// Quiet time after an edit before errors on the line being typed are shown
/// (`WICK_TYPING_PAUSE_MS` overrides it, for tests).
pub(crate) const TYPING_PAUSE_MS: u64 = 1500;

fn typing_pause() -> Duration {
    static PAUSE: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *PAUSE.get_or_init(|| {
        let ms = std::env::var("WICK_TYPING_PAUSE_MS").ok().and_then(|v| v.parse().ok());
        Duration::from_millis(ms.unwrap_or(TYPING_PAUSE_MS))
    })
}

/// What one document's diagnostics wait for.
#[derive(Default)]
pub(super) struct DiagState {
    /// The line the last edit left the cursor on, and when.
    typing: Option<(u32, Instant)>,
    /// Whether the last publish left out errors on the typing line.
    withheld: bool,
}

/// Whether a diagnostic touches `line`.
fn on_line(d: &Diagnostic, line: u32) -> bool {
    d.range.start.line <= line && line <= d.range.end.line
}
/// Most diagnostics published for one document.
const MAX_DIAGNOSTICS: usize = 50;
/// Longest diagnostic message repeated in an action's title.
const TITLE_MESSAGE_CHARS: usize = 60;

/// What a listed action carries to `codeAction/resolve`: the document
/// version it was listed for, and what to compute.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum ActionData {
    /// Fix the diagnostic at `range` with the model.
    Fix { uri: String, version: i32, range: Range, message: String },
    /// Complete the empty function body at `range`.
    Fill { uri: String, version: i32, range: Range },
}

impl ActionData {
    fn to_value(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self).ok()
    }
}

fn title_message(m: &str) -> String {
    let first = m.lines().next().unwrap_or("").trim();
    if first.chars().count() > TITLE_MESSAGE_CHARS {
        format!("{}…", first.chars().take(TITLE_MESSAGE_CHARS - 1).collect::<String>())
    } else {
        first.to_string()
    }
}

impl Backend {
    /// Publishes the document's syntax errors after `delay_ms` without
    /// further edits (unless `diagnostics` is off). Errors on the line being
    /// typed are left out until the user pauses ([`TYPING_PAUSE_MS`]) or
    /// moves to another line ([`Backend::cursor_moved`]): an unfinished
    /// line is not a mistake yet.
    pub(super) fn schedule_diagnostics(&self, uri: Uri, delay_ms: u64) {
        let key = uri.as_str().to_string();
        // A task publishes only while it is the document's latest.
        let n = self.st.diag.arrive(&key);
        let st = self.st.clone();
        let client = self.client.clone();
        let enc = self.encoding();
        let as_of = lock(&self.st.docs).mark();
        let latest = move |st: &State| st.diag.is_latest(&key, n);
        tokio::spawn(async move {
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            }
            let (mode, severity) = {
                let c = lock(&st.config);
                (c.diagnostics, c.diagnostics_severity)
            };
            if mode == DiagnosticsMode::Off || !latest(&st) {
                return;
            }
            let Ok(snap) = snapshot_of(&st, uri.as_str(), enc, as_of).await else { return };
            let Some(analysis) = analysis_of(&st, &snap).await else {
                return;
            };
            let version = snap.version;
            let Ok(diags) =
                tokio::task::spawn_blocking(move || syntax_diagnostics(&snap, &analysis, enc, severity)).await
            else {
                return;
            };
            // Superseded by a newer edit, or closed meanwhile.
            if !latest(&st) {
                return;
            }
            // Closed meanwhile: nothing to publish.
            let Some(typing) = st.diag.with(uri.as_str(), |d| {
                let typing = d.typing.filter(|(_, at)| at.elapsed() < typing_pause());
                d.withheld = typing.is_some_and(|(line, _)| diags.iter().any(|x| on_line(x, line)));
                typing.filter(|_| d.withheld)
            }) else {
                return;
            };
            let Some((line, at)) = typing else {
                client.publish_diagnostics(uri, diags, Some(version)).await;
                return;
            };
            let shown = diags.iter().filter(|x| !on_line(x, line)).cloned().collect();
            client.publish_diagnostics(uri.clone(), shown, Some(version)).await;
            tokio::time::sleep_until((at + typing_pause()).into()).await;
            // No edit since (an edit schedules anew), so `diags` still hold.
            let still = latest(&st) && st.diag.with(uri.as_str(), |d| d.withheld = false).is_some();
            if still {
                client.publish_diagnostics(uri, diags, Some(version)).await;
            }
        });
    }

    /// Notes the line an edit left the cursor on (None: unknown, as after a
    /// whole-document change).
    pub(super) fn typed_at(&self, uri: &str, line: Option<u32>) {
        self.st.diag.with_or_default(uri, |d| d.typing = line.map(|l| (l, Instant::now())));
    }

    /// A request at `line` (completion, code actions): when the cursor has
    /// left the line being typed, the errors held back there are published.
    pub(super) fn cursor_moved(&self, uri: &Uri, line: u32) {
        let republish = self.st.diag.with(uri.as_str(), |d| {
            let left = d.typing.is_some_and(|(l, _)| l != line);
            if left {
                d.typing = None;
            }
            left && d.withheld
        });
        if republish == Some(true) {
            self.schedule_diagnostics(uri.clone(), 0);
        }
    }

    /// After a settings change: diagnostics cleared when turned off,
    /// published again (in the new severity) otherwise.
    pub(super) async fn diagnostics_settings_changed(&self) {
        let mode = lock(&self.st.config).diagnostics;
        let uris: Vec<String> = lock(&self.st.docs).uris().cloned().collect();
        for u in uris {
            let Ok(uri) = u.parse::<Uri>() else { continue };
            if mode == DiagnosticsMode::Off {
                // Pending publishes are superseded, then the list cleared.
                self.st.diag.supersede(&u);
                self.client.publish_diagnostics(uri, Vec::new(), None).await;
            } else {
                self.schedule_diagnostics(uri, 0);
            }
        }
    }

    /// `textDocument/codeAction`: lists "Fix with wick" for each diagnostic
    /// in the request (ours or another server's) and "Complete this
    /// function" in an empty body. Listing makes no model call, unless the
    /// client cannot resolve edits lazily.
    pub(super) async fn code_actions(&self, params: CodeActionParams) -> RpcResult<Option<CodeActionResponse>> {
        let enc = self.encoding();
        let uri = params.text_document.uri.clone();
        let as_of = lock(&self.st.docs).mark();
        let Ok(snap) = snapshot_of(&self.st, uri.as_str(), enc, as_of).await else {
            return Ok(None);
        };
        self.cursor_moved(&uri, params.range.start.line);
        // Editors ask for code actions where the cursor is, on every move:
        // where the next keystroke will likely be.
        self.schedule_prefetch(&uri, params.range.start);
        let only = params.context.only.clone();
        let wants = |k: &CodeActionKind| {
            only.as_ref().is_none_or(|o| {
                o.iter().any(|w| k.as_str() == w.as_str() || k.as_str().starts_with(&format!("{}.", w.as_str())))
            })
        };
        let mut out: Vec<CodeActionOrCommand> = Vec::new();
        let text = snap.rope.to_string();
        let fixes_wanted = wants(&CodeActionKind::QUICKFIX);
        let analysis = if fixes_wanted { analysis_of(&self.st, &snap).await } else { None };
        // A client that passes no diagnostics gets wick's own on the lines
        // asked about (unless they are turned off).
        let (mode, severity) = {
            let c = lock(&self.st.config);
            (c.diagnostics, c.diagnostics_severity)
        };
        let ours = mode != DiagnosticsMode::Off && params.context.diagnostics.is_empty();
        let diagnostics = match (&analysis, ours) {
            (Some(a), true) => syntax_diagnostics(&snap, a, enc, severity)
                .into_iter()
                .filter(|d| d.range.start.line <= params.range.end.line && d.range.end.line >= params.range.start.line)
                .collect(),
            _ => params.context.diagnostics.clone(),
        };
        // A client that resolves nothing lazily would run the model for
        // every listing: for diagnostics it did not pass, only known repairs.
        let model_fixes = !params.context.diagnostics.is_empty() || self.caps().resolve_edits;
        // The planning (known repairs, fix regions, empty bodies) walks the
        // tree and the text: off the protocol thread, like the analysis.
        let ranges: Vec<Option<(usize, usize)>> = if fixes_wanted {
            diagnostics.iter().map(|d| proto::from_range(&snap.rope, &d.range, enc)).collect()
        } else {
            Vec::new()
        };
        let messages: Vec<String> = diagnostics.iter().map(|d| d.message.clone()).collect();
        let rewrite_at = if wants(&CodeActionKind::REFACTOR_REWRITE) {
            proto::from_range(&snap.rope, &params.range, enc).map(|(a, _)| a)
        } else {
            None
        };
        let (lang, language_id, parsed, a2) = (snap.lang, snap.language.clone(), snap.parsed.clone(), analysis.clone());
        let planned = tokio::task::spawn_blocking(move || {
            let plans: Vec<Option<(Option<crate::syntax::KnownEdit>, Option<String>)>> = ranges
                .iter()
                .zip(&messages)
                .map(|(r, message)| {
                    let (start, end) = (*r)?;
                    let known = a2.as_ref().and_then(|a| a.known_edit(&text, start, end));
                    let req = FixRequest { text: &text, lang, language_id: &language_id, start, end, message };
                    let disabled = model_fixes.then(|| {
                        actions::plan_fix(&req, parsed.as_ref().zip(a2.as_deref())).err().map(|e| e.to_string())
                    });
                    Some((known, disabled.flatten()))
                })
                .collect();
            let body =
                rewrite_at.and_then(|at| crate::syntax::empty_body_at(parsed.as_ref()?, &text, at)).map(|b| b.name);
            (plans, body)
        })
        .await;
        let Ok((plans, empty_body)) = planned else { return Ok(None) };
        for (d, plan) in diagnostics.iter().zip(plans) {
            let Some((known, disabled)) = plan else { continue };
            // The repair the syntax search proved: exact and instant.
            if let Some(k) = known {
                let edit = self.text_edit(&snap.rope, k.start, k.end, k.insert);
                out.push(CodeActionOrCommand::CodeAction(CodeAction {
                    title: k.title,
                    kind: Some(CodeActionKind::QUICKFIX),
                    diagnostics: Some(vec![d.clone()]),
                    is_preferred: Some(true),
                    edit: Some(self.workspace_edit(uri.clone(), snap.version, edit)),
                    ..Default::default()
                }));
            }
            if !model_fixes {
                continue;
            }
            let source = d.source.as_deref().filter(|s| *s != "wick");
            let title = match source {
                Some(s) => format!("Fix with wick: {} ({s})", title_message(&d.message)),
                None => format!("Fix with wick: {}", title_message(&d.message)),
            };
            out.push(CodeActionOrCommand::CodeAction(CodeAction {
                title,
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![d.clone()]),
                disabled: disabled.map(|reason| CodeActionDisabled { reason }),
                data: ActionData::Fix {
                    uri: uri.as_str().into(),
                    version: snap.version,
                    range: d.range,
                    message: d.message.clone(),
                }
                .to_value(),
                ..Default::default()
            }));
        }
        if let Some(name) = empty_body {
            out.push(CodeActionOrCommand::CodeAction(CodeAction {
                title: format!("Complete this function with wick: {name}"),
                kind: Some(CodeActionKind::REFACTOR_REWRITE),
                data: ActionData::Fill { uri: uri.as_str().into(), version: snap.version, range: params.range }
                    .to_value(),
                ..Default::default()
            }));
        }
        if !self.caps().resolve_edits {
            // No lazy resolution: compute every edit now.
            let mut eager = Vec::with_capacity(out.len());
            for a in out {
                eager.push(match a {
                    CodeActionOrCommand::CodeAction(a) if a.disabled.is_none() && a.edit.is_none() => {
                        CodeActionOrCommand::CodeAction(self.resolve_action(a).await)
                    }
                    other => other,
                });
            }
            out = eager;
        }
        Ok(Some(out))
    }

    /// `codeAction/resolve`: computes the action's edit with the model.
    pub(super) async fn resolve_code_action(&self, action: CodeAction) -> RpcResult<CodeAction> {
        Ok(self.resolve_action(action).await)
    }

    async fn resolve_action(&self, mut action: CodeAction) -> CodeAction {
        if action.edit.is_some() {
            return action; // listed with its edit (a known repair)
        }
        let t = std::time::Instant::now();
        let result = self.compute_edit(&action).await;
        let ms = t.elapsed().as_millis() as u64;
        match result {
            Ok(edit) => {
                tracing::info!(title = %action.title, ms, "code action resolved");
                action.edit = Some(edit);
            }
            Err(e) => {
                tracing::info!(title = %action.title, ms, "code action not resolved: {e}");
                self.show(MessageType::WARNING, format!("wick: {}: {e}", action.title)).await;
            }
        }
        action
    }

    async fn compute_edit(&self, action: &CodeAction) -> Result<WorkspaceEdit, FixError> {
        // Data this server did not write (another server's, or a client's
        // mangled copy) is an action listed for some other document state.
        let data: ActionData =
            action.data.clone().and_then(|d| serde_json::from_value(d).ok()).ok_or(FixError::Stale)?;
        let (uri_s, version, range, message, fill) = match data {
            ActionData::Fix { uri, version, range, message } => (uri, version, range, message, false),
            ActionData::Fill { uri, version, range } => (uri, version, range, String::new(), true),
        };
        let enc = self.encoding();
        let as_of = lock(&self.st.docs).mark();
        let snap = snapshot_of(&self.st, &uri_s, enc, as_of).await.map_err(|_| FixError::Stale)?;
        if snap.version != version {
            return Err(FixError::Stale);
        }
        let engine = self.st.model.engine().ok_or_else(|| FixError::NoModel("no model is configured".into()))?;
        // The user asked for this fix: one asked for while the model loads
        // (just after start or a restart) waits for it instead of failing;
        // a cancelled resolve drops this wait.
        if !engine.is_ready() && engine.load_error().is_none() {
            tracing::info!("code action: waiting for the model to load");
            let e = engine.clone();
            let _ = tokio::task::spawn_blocking(move || e.wait_ready()).await;
        }
        let (start, end) = proto::from_range(&snap.rope, &range, enc).ok_or(FixError::OutOfRange)?;
        // A cancelled resolve drops this future, and the guard stops the
        // model (between tokens) instead of letting it run to its budget.
        let cancel = crate::engine::CancelToken::default();
        let _stop_on_drop = crate::engine::CancelOnDrop(cancel.clone());
        let opts = ActionOptions { key: Some(format!("action:{uri_s}")), cancel, ..Default::default() };
        let text = snap.rope.to_string();
        let analysis = if fill { None } else { analysis_of(&self.st, &snap).await };
        let (lang, language_id, parsed) = (snap.lang, snap.language.clone(), snap.parsed.clone());
        let job = tokio::task::spawn_blocking(move || {
            if fill {
                let p = parsed.ok_or(FixError::NotEmpty)?;
                actions::run::fill(&engine, &text, &p, start, &opts)
            } else {
                let req = FixRequest { text: &text, lang, language_id: &language_id, start, end, message: &message };
                actions::run::fix(&engine, &req, parsed.as_ref().zip(analysis.as_deref()), &opts)
            }
        });
        let fixed = job.await.map_err(|e| FixError::Engine(e.to_string()))??;
        // The document may have changed while the model ran.
        if lock(&self.st.docs).latest_version(&uri_s) != Some(snap.version) {
            return Err(FixError::Stale);
        }
        let uri: Uri = uri_s.parse().map_err(|_| FixError::Stale)?;
        let edit = self.text_edit(&snap.rope, fixed.edit.start, fixed.edit.end, &fixed.edit.text);
        Ok(self.workspace_edit(uri, snap.version, edit))
    }

    /// One text edit of a document version, versioned when the client
    /// takes `documentChanges`.
    fn workspace_edit(&self, uri: Uri, version: i32, edit: TextEdit) -> WorkspaceEdit {
        if self.caps().document_changes {
            WorkspaceEdit {
                document_changes: Some(DocumentChanges::Edits(vec![TextDocumentEdit {
                    text_document: OptionalVersionedTextDocumentIdentifier { uri, version: Some(version) },
                    edits: vec![OneOf::Left(edit)],
                }])),
                ..Default::default()
            }
        } else {
            WorkspaceEdit { changes: Some(HashMap::from([(uri, vec![edit])])), ..Default::default() }
        }
    }

    fn text_edit(&self, rope: &Rope, start: usize, end: usize, text: &str) -> TextEdit {
        proto::to_text_edit(rope, start, end, text, self.encoding())
    }
}

/// The syntax analysis of a snapshot: the one kept for its version, or
/// computed (off the async threads) and kept. None for a document without
/// a grammar.
async fn analysis_of(st: &Arc<State>, snap: &documents::Snapshot) -> Option<Arc<Analysis>> {
    let parsed = snap.parsed.clone()?;
    let len = snap.rope.len_bytes();
    if let Some((v, l, a)) = lock(&st.analyses).get(&snap.uri) {
        if *v == snap.version && *l == len {
            return Some(a.clone());
        }
    }
    let text = snap.rope.to_string();
    let a = Arc::new(tokio::task::spawn_blocking(move || Analysis::new(&parsed, &text)).await.ok()?);
    // Keep it unless the document moved on (or closed) meanwhile.
    let current = lock(&st.docs).latest_version(&snap.uri) == Some(snap.version);
    if current {
        lock(&st.analyses).insert(snap.uri.clone(), (snap.version, len, a.clone()));
    }
    Some(a)
}

/// The document's syntax errors as LSP diagnostics.
fn syntax_diagnostics(
    snap: &documents::Snapshot,
    analysis: &Analysis,
    enc: Encoding,
    severity: Severity,
) -> Vec<Diagnostic> {
    let severity = match severity {
        Severity::Error => DiagnosticSeverity::ERROR,
        Severity::Warning => DiagnosticSeverity::WARNING,
        Severity::Information => DiagnosticSeverity::INFORMATION,
        Severity::Hint => DiagnosticSeverity::HINT,
    };
    analysis
        .errors
        .iter()
        .take(MAX_DIAGNOSTICS)
        .map(|e| Diagnostic {
            range: proto::to_range_of_bytes(&snap.rope, e.start, e.end, enc),
            severity: Some(severity),
            source: Some("wick".into()),
            message: e.message.clone(),
            ..Default::default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_data_is_typed_and_foreign_data_is_refused() {
        let range = Range::new(Position::new(1, 2), Position::new(1, 5));
        let fix = ActionData::Fix { uri: "file:///a.py".into(), version: 3, range, message: "m".into() };
        let v = fix.to_value().unwrap();
        assert_eq!(v["kind"], "fix");
        assert_eq!(v["version"], 3);
        assert!(matches!(serde_json::from_value::<ActionData>(v), Ok(ActionData::Fix { version: 3, .. })));
        for foreign in [
            serde_json::json!({"uri": "file:///a.py", "version": 3, "range": range}),
            serde_json::json!({"kind": "fix", "uri": 3}),
            serde_json::json!({"kind": "fill", "uri": "file:///a.py", "version": "3", "range": range}),
            serde_json::json!([1, 2]),
        ] {
            assert!(serde_json::from_value::<ActionData>(foreign.clone()).is_err(), "{foreign}");
        }
    }
}
