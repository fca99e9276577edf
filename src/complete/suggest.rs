//! The one completion pipeline: plan (window, prompt, line policy), typed
//! ahead or generate, clean. The language server, `wick complete`, `wick
//! eval` and `wick bench` all call [`suggest`], so what is measured is what
//! users get.

use super::window::Start;
use super::{clean, plan, plan_window, tail, Input, LastSuggestion, Plan, Stages};
use crate::config::{Config, PromptMode};
use crate::engine::{Engine, EngineError, Generation, ModelInfo, Request, StopReason};
use std::time::Instant;

/// What one completion asks for, besides the document.
pub struct SuggestRequest<'a> {
    pub input: Input<'a>,
    pub config: &'a Config,
    pub stages: Stages,
    /// The document's last suggestion, to answer typed-ahead keystrokes.
    pub last: Option<&'a LastSuggestion>,
    /// Requests with the same key supersede each other (one document).
    pub key: Option<String>,
    /// When it arrived ([`crate::engine::arrival`], taken before any
    /// await); 0: when it reaches the engine.
    pub arrived: u64,
    /// How many distinct suggestions to answer with, at most (1: the
    /// main one; more: alternatives branching at the first token).
    pub candidates: usize,
}

/// Why a completion came back empty: a counter per reason in the eval, a
/// log line in the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Empty {
    /// In a comment or string (`inComments` is off).
    Quiet,
    /// The model is still loading (or failed to).
    Loading,
    Superseded,
    Cancelled,
    /// The engine failed (logged with its error).
    Engine,
    /// The model wrote nothing but whitespace.
    ModelEmpty,
    /// All it wrote is already right of the cursor.
    Overlap,
    /// It only closed a bracket that the text after the cursor closes.
    Closer,
    /// Every cut of it adds syntax errors.
    Syntax,
    /// The document changed while it was computed (set by the server).
    Stale,
}

impl Empty {
    pub fn name(self) -> &'static str {
        match self {
            Empty::Quiet => "comment-or-string",
            Empty::Loading => "model-loading",
            Empty::Superseded => "superseded",
            Empty::Cancelled => "cancelled",
            Empty::Engine => "engine-error",
            Empty::ModelEmpty => "model-wrote-nothing",
            Empty::Overlap => "only-repeats-the-line",
            Empty::Closer => "only-a-closer",
            Empty::Syntax => "adds-syntax-errors",
            Empty::Stale => "document-changed",
        }
    }
}

/// A completion: the text to insert at the cursor (empty, with the reason,
/// when there is none) and how it was made.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub text: String,
    pub empty: Option<Empty>,
    /// Char index where the already-typed word before the cursor starts.
    pub word_start: usize,
    pub word: String,
    pub multiline: bool,
    /// Answered from the last suggestion, without the model.
    pub typed_ahead: bool,
    /// The model's own text, before cleaning.
    pub raw: String,
    pub generation: Option<Generation>,
    pub queued_ms: f64,
    /// Planning time: windows, syntax queries, prompt.
    pub context_ms: f64,
    pub total_ms: f64,
    /// The start of the text after the cursor (for [`LastSuggestion`]).
    pub suffix_head: String,
    /// Other suggestions after `text` (with [`SuggestRequest::candidates`]
    /// above 1), cleaned, distinct, most likely first.
    pub alternatives: Vec<String>,
}

impl Outcome {
    fn empty(why: Empty, t0: Instant) -> Outcome {
        Outcome {
            text: String::new(),
            empty: Some(why),
            word_start: 0,
            word: String::new(),
            multiline: false,
            typed_ahead: false,
            raw: String::new(),
            generation: None,
            queued_ms: 0.0,
            context_ms: 0.0,
            total_ms: t0.elapsed().as_secs_f64() * 1e3,
            suffix_head: String::new(),
            alternatives: Vec::new(),
        }
    }

    fn from_plan(plan: &Plan, t0: Instant) -> Outcome {
        Outcome {
            word_start: plan.word_start,
            word: plan.word.clone(),
            multiline: plan.multiline,
            suffix_head: plan.suffix_head.clone(),
            context_ms: t0.elapsed().as_secs_f64() * 1e3,
            ..Outcome::empty(Empty::ModelEmpty, t0)
        }
    }
}

/// The prompt layout `auto` stands for with this model. Measured on the
/// real-code benchmark (docs/benchmarks.md): models below ~1B parameters
/// (hidden size under 1,024: Qwen2.5-Coder-0.5B) continue the prefix better
/// than they fill the middle; larger ones fill the middle better.
/// A remote engine that does not report its model's size fills the middle
/// (a team server runs larger models).
pub(crate) fn auto_prompt(info: &ModelInfo) -> PromptMode {
    let size_unknown = info.remote && info.hidden == 0;
    if info.family.is_none() || (info.hidden < 1024 && !size_unknown) {
        PromptMode::Prefix
    } else {
        PromptMode::Fim
    }
}

/// The settings as this model runs them: `prompt: auto` resolved.
pub fn resolved(cfg: &Config, info: &ModelInfo) -> Config {
    let mut c = cfg.clone();
    if c.prompt == PromptMode::Auto {
        c.prompt = auto_prompt(info);
    }
    c
}

/// One completion at the cursor: the plan, then the rest of the last
/// suggestion if the user typed its start, else the model; then the clean-up.
/// Never fails: an empty answer carries its reason.
pub(crate) async fn suggest(engine: &Engine, req: &SuggestRequest<'_>) -> Outcome {
    let t0 = Instant::now();
    let Some(info) = engine.info() else { return Outcome::empty(Empty::Loading, t0) };
    let cfg = resolved(req.config, &info);
    let Some(mut plan) = plan(&req.input, &cfg, info.family, info.tokens.as_ref(), req.stages) else {
        return Outcome::empty(Empty::Quiet, t0);
    };
    let mut out = Outcome::from_plan(&plan, t0);
    let candidates = req.candidates.clamp(1, crate::config::MAX_SUGGESTIONS);
    // Several suggestions are asked for explicitly (the editor's next or
    // previous): the rest of one typed-ahead suggestion would be only one.
    if let Some(last) = req.last.filter(|_| candidates == 1) {
        if let Some(rest) = last.remainder(&tail(req.input.rope, req.input.cursor), &plan.suffix_head) {
            if let Ok(text) = clean(&rest, &plan, false) {
                out.text = text;
                out.empty = None;
                out.typed_ahead = true;
                out.total_ms = t0.elapsed().as_secs_f64() * 1e3;
                return out;
            }
        }
    }
    plan.request.key = req.key.clone();
    plan.request.arrived = req.arrived;
    // One spare: an alternative may clean up to the same text as another.
    plan.request.alternatives = if candidates > 1 { candidates } else { 0 };
    let reply = engine.generate(plan.request.clone()).await;
    out.total_ms = t0.elapsed().as_secs_f64() * 1e3;
    let (g, times) = match reply {
        Ok(r) => r,
        Err(e) => {
            out.empty = Some(match e {
                EngineError::Superseded => Empty::Superseded,
                EngineError::Cancelled => Empty::Cancelled,
                EngineError::NotReady | EngineError::LoadFailed(_) => Empty::Loading,
                e => {
                    tracing::warn!("completion failed: {e}");
                    Empty::Engine
                }
            });
            return out;
        }
    };
    out.queued_ms = times.queued_ms;
    let cut_short = |stop| matches!(stop, StopReason::MaxTokens | StopReason::Budget | StopReason::ContextFull);
    let main =
        if g.stop == StopReason::Cancelled { Err(Empty::Cancelled) } else { clean(&g.text, &plan, cut_short(g.stop)) };
    if let Err(why) = main {
        tracing::info!(reason = why.name(), raw = %g.text.chars().take(200).collect::<String>(), "empty completion");
    }
    // A one-line alternative cut short by its time share is an unfinished
    // line: not worth offering (several lines keep their finished ones).
    let others = g
        .alternatives
        .iter()
        .filter(|a| plan.multiline || a.stop != StopReason::Budget)
        .map(|a| clean(&a.text, &plan, cut_short(a.stop)));
    let (main, alternatives) = rank(main, others, candidates);
    match main {
        Ok(t) => {
            out.text = t;
            out.empty = None;
        }
        Err(why) => out.empty = Some(why),
    }
    out.alternatives = alternatives;
    out.raw = g.text.clone();
    out.generation = Some(g);
    out
}

/// The suggestions of one answer from the cleaned main answer and the
/// cleaned alternatives (in the engine's order, most likely first token
/// first): at most `n` in all, distinct, the main one first. When the main
/// answer came out empty, the first usable alternative takes its place.
pub(crate) fn rank(
    main: Result<String, Empty>,
    alternatives: impl IntoIterator<Item = Result<String, Empty>>,
    n: usize,
) -> (Result<String, Empty>, Vec<String>) {
    let mut shown: Vec<String> = main.iter().cloned().collect();
    for a in alternatives.into_iter().flatten() {
        if shown.len() >= n.max(1) {
            break;
        }
        if !a.trim().is_empty() && !shown.contains(&a) {
            shown.push(a);
        }
    }
    if main.is_err() && !shown.is_empty() {
        let first = shown.remove(0);
        return (Ok(first), shown);
    }
    let rest = if main.is_ok() { shown.split_off(1) } else { Vec::new() };
    (main, rest)
}

/// The key prefetches run under: a newer one supersedes an older one,
/// whichever document it was for.
pub(crate) const PREFETCH_KEY: &str = "\u{0}prefetch";

/// Warms the engine's KV cache for a completion at the cursor: plans as
/// [`suggest`] does, then prefills that prompt at idle priority without
/// generating. Any other request interrupts it between small chunks; what
/// was prefilled stays cached, so the first keystroke there reuses it.
/// None when nothing ran (no model, a quiet position, interrupted first).
///
/// Then, in a file larger than the window, it prefills the prompt whose
/// window starts a grid step later, where typing on will move the start
/// (the engine keeps it in a spare cache): the keystroke that moves it
/// finds that prompt cached instead of prefilling it cold. Not on a team
/// server: its slots keep one prompt each, and the second would evict the
/// first.
pub async fn prefetch(engine: &Engine, req: &SuggestRequest<'_>) -> Option<Generation> {
    let info = engine.info()?;
    let cfg = resolved(req.config, &info);
    let tokens = info.tokens.as_ref();
    let now = plan(&req.input, &cfg, info.family, tokens, req.stages)?;
    let g = prefill_idle(engine, now.request.clone()).await?;
    if info.remote {
        return Some(g);
    }
    if let Some(next) = plan_window(&req.input, &cfg, info.family, tokens, req.stages, Start::Next) {
        if next.prefix != now.prefix {
            if let Some(a) = prefill_idle(engine, next.request).await {
                tracing::debug!(prompt_tokens = a.prompt_tokens, reused_tokens = a.reused_tokens, "prefetched ahead");
            }
        }
    }
    Some(g)
}

/// Prefills `request`'s prompt at idle priority, generating nothing.
async fn prefill_idle(engine: &Engine, mut request: Request) -> Option<Generation> {
    request.max_tokens = 0;
    request.idle = true;
    request.key = Some(PREFETCH_KEY.into());
    match engine.generate(request).await {
        Ok((g, _)) => Some(g),
        Err(e) => {
            tracing::debug!("prefetch: {e}");
            None
        }
    }
}

/// [`suggest`] for callers without an async runtime (CLI, eval, bench).
pub fn suggest_blocking(engine: &Engine, req: &SuggestRequest<'_>) -> Outcome {
    futures::executor::block_on(suggest(engine, req))
}
