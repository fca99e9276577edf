//! Runs the model for a code action: up to a few samples, each verified,
//! until one passes. Blocking: call it off the async runtime.

use super::*;
use crate::engine::sampling::Sampling;
use crate::engine::{CancelToken, Engine, EngineError, Request, StopWhen};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct ActionOptions {
    pub mode: FixMode,
    /// Samples tried: the first greedy, the others at `temperature`.
    pub attempts: usize,
    pub temperature: f32,
    /// Wall-clock budget for all samples together.
    pub budget: Duration,
    /// Engine queue key (requests with the same key supersede each other).
    pub key: Option<String>,
    /// Stops the samples (set when the code-action request is cancelled).
    pub cancel: CancelToken,
}

impl Default for ActionOptions {
    fn default() -> Self {
        ActionOptions {
            mode: FixMode::Chat,
            attempts: 3,
            temperature: 0.7,
            budget: Duration::from_secs(90),
            key: None,
            cancel: CancelToken::default(),
        }
    }
}

/// A verified fix.
#[derive(Debug, Clone)]
pub struct Fixed {
    pub edit: LineEdit,
    pub plan: FixPlan,
    /// The sample that passed (1-based).
    pub attempt: usize,
    /// Why the earlier samples were rejected.
    pub rejected: Vec<String>,
}

fn engine_error(e: EngineError) -> FixError {
    match e {
        EngineError::NotReady => FixError::NoModel("the model is still loading".into()),
        EngineError::LoadFailed(m) => FixError::NoModel(m),
        other => FixError::Engine(other.to_string()),
    }
}

fn sampling(opts: &ActionOptions, attempt: usize) -> Sampling {
    if attempt == 0 {
        Sampling::default()
    } else {
        Sampling { temperature: opts.temperature, top_p: 0.95, seed: attempt as u64 }
    }
}

/// Asks the model to fix the diagnostic in `req`, verifying every answer;
/// `parsed`: the text's parse and analysis, as for [`plan_fix`].
pub fn fix(
    engine: &Engine,
    req: &FixRequest,
    parsed: Option<(&Parsed, &syntax::Analysis)>,
    opts: &ActionOptions,
) -> Result<Fixed, FixError> {
    let plan = plan_fix(req, parsed)?;
    let info = engine
        .info()
        .ok_or_else(|| FixError::NoModel(engine.load_error().unwrap_or_else(|| "the model is still loading".into())))?;
    let (prompt, stop) = fix_prompt(opts.mode, req, &plan, info.family, info.chat_template.as_deref());
    let region = &req.text[plan.start..plan.end];
    // Room for the region again plus some change (about 3 bytes a token).
    let max_tokens = (region.len() / 2 + 48).min(1024);
    let t0 = Instant::now();
    let mut rejected = Vec::new();
    for attempt in 0..opts.attempts.max(1) {
        let left = opts.budget.saturating_sub(t0.elapsed());
        if attempt > 0 && left.is_zero() {
            break;
        }
        let mut r = Request::new(prompt.clone());
        r.max_tokens = max_tokens;
        r.stop = stop.clone();
        r.sampling = sampling(opts, attempt);
        r.budget = Some(left.max(Duration::from_secs(1)));
        r.heal = false;
        r.key = opts.key.clone();
        let (g, _) = engine.generate_blocking_until(r, &opts.cancel).map_err(engine_error)?;
        if g.stop == crate::engine::StopReason::MaxTokens || g.stop == crate::engine::StopReason::Budget {
            rejected.push("the answer was cut off".to_string());
            continue;
        }
        let (before, after) = context(req.text, plan.start, plan.end);
        let replacement = shape_answer(region, strip_context(&g.text, before, after));
        match verify(req, &plan, &replacement) {
            Ok(()) => match minimal_edit(req.text, plan.start, plan.end, &replacement) {
                Some(edit) => return Ok(Fixed { edit, plan, attempt: attempt + 1, rejected }),
                None => rejected.push("the answer left the code unchanged".into()),
            },
            Err(why) => {
                tracing::debug!(attempt, %why, answer = %g.text, "fix rejected");
                rejected.push(why);
            }
        }
    }
    rejected.dedup();
    Err(FixError::NotFixed(if rejected.is_empty() { "out of time".into() } else { rejected.join("; ") }))
}

/// Prefix and suffix windows for the fill prompt, cut at line starts.
const FILL_PREFIX_BYTES: usize = 6000;
const FILL_SUFFIX_BYTES: usize = 1500;

/// Writes the body of the empty function around `byte`.
pub fn fill(
    engine: &Engine,
    text: &str,
    parsed: &Parsed,
    byte: usize,
    opts: &ActionOptions,
) -> Result<Fixed, FixError> {
    let fp = plan_fill(text, parsed, byte).ok_or(FixError::NotEmpty)?;
    let info = engine
        .info()
        .ok_or_else(|| FixError::NoModel(engine.load_error().unwrap_or_else(|| "the model is still loading".into())))?;
    let family = info.family.ok_or_else(|| FixError::NoModel("the model has no fill-in-the-middle tokens".into()))?;
    let mut ps = fp.prefix.len().saturating_sub(FILL_PREFIX_BYTES);
    while !fp.prefix.is_char_boundary(ps) {
        ps += 1;
    }
    if ps > 0 {
        ps = fp.prefix[ps..].find('\n').map_or(ps, |i| ps + i + 1);
    }
    let mut se = fp.suffix.len().min(FILL_SUFFIX_BYTES);
    while !fp.suffix.is_char_boundary(se) {
        se -= 1;
    }
    if se < fp.suffix.len() {
        se = fp.suffix[..se].rfind('\n').unwrap_or(se);
    }
    let prompt = family.fim(&fp.prefix[ps..], &fp.suffix[..se], FimOrder::Psm);
    let t0 = Instant::now();
    let mut rejected = Vec::new();
    let errors_before = syntax::syntax_errors(parsed, text, syntax::ANALYSIS_MAX_ERRORS).len();
    for attempt in 0..opts.attempts.max(1) {
        let left = opts.budget.saturating_sub(t0.elapsed());
        if attempt > 0 && left.is_zero() {
            break;
        }
        let mut r = Request::new(prompt.clone());
        r.max_tokens = 384;
        r.sampling = sampling(opts, attempt);
        r.budget = Some(left.max(Duration::from_secs(1)));
        r.heal = false;
        r.key = opts.key.clone();
        // Stop as soon as the body has ended, not at the token limit.
        let plan = fp.clone();
        r.until = Some(StopWhen(std::sync::Arc::new(move |t: &str| body_end(t, &plan).1)));
        let (g, _) = engine.generate_blocking_until(r, &opts.cancel).map_err(engine_error)?;
        let body = cut_body(&g.text, &fp);
        if body.trim().is_empty() {
            rejected.push("the model wrote nothing".to_string());
            continue;
        }
        let new_inner = if fp.body.braces { format!("\n{}{body}\n{}", fp.indent, fp.body.indent) } else { body };
        let mut new_text = String::with_capacity(text.len() + new_inner.len());
        new_text.push_str(&text[..fp.body.start]);
        new_text.push_str(&new_inner);
        new_text.push_str(&text[fp.body.end..]);
        let after = Parsed::parse(parsed.lang, &new_text)
            .map(|p| syntax::syntax_errors(&p, &new_text, syntax::ANALYSIS_MAX_ERRORS).len());
        if after.is_some_and(|n| n > errors_before) {
            rejected.push("the body did not parse".into());
            continue;
        }
        let (ls, le) = (line_start(text, fp.body.start), line_end(text, fp.body.end));
        let replacement = format!("{}{new_inner}{}", &text[ls..fp.body.start], &text[fp.body.end..le]);
        if let Some(edit) = minimal_edit(text, ls, le, &replacement) {
            let plan =
                FixPlan { start: ls, end: le, errors_total: errors_before, errors_in_region: 0, is_syntax: false };
            return Ok(Fixed { edit, plan, attempt: attempt + 1, rejected });
        }
    }
    rejected.dedup();
    Err(FixError::NotFixed(if rejected.is_empty() { "out of time".into() } else { rejected.join("; ") }))
}
