//! The server's side of the local statistics (`stats` setting): each shown
//! suggestion gets an id, which the answer's `command` carries; the editor
//! reports an accept with it (`wick/didAccept`, or `workspace/executeCommand`
//! `wick.didAccept`, which VS Code's client runs for the item's command).
//! A suggestion not accepted before the next one for its document, the
//! document's close or shutdown was dismissed, or partly accepted when the
//! user typed a prefix of it first (typed-ahead). Records go to a writer
//! thread: the protocol's threads never wait on the disk.

use crate::stats::{Outcome, Record};
use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::time::Duration;

/// The command an answer carries, which the editor runs on accept.
pub(super) const ACCEPT_COMMAND: &str = "wick.didAccept";

/// `wick/didAccept` and the command's argument: which suggestion, and for a
/// partial accept how many of its characters were taken.
#[derive(Debug, serde::Deserialize)]
pub(super) struct DidAccept {
    pub id: u64,
    #[serde(default)]
    pub chars: Option<u32>,
    /// Which of the answer's suggestions (0, the first, when absent).
    #[serde(default)]
    pub candidate: Option<u32>,
}

/// A suggestion shown and not yet settled.
struct Shown {
    t: u64,
    lang: String,
    latency_ms: u32,
    chars: u32,
    lines: u32,
    /// Characters of it the user typed (typed-ahead).
    typed: u32,
    /// The lengths of the other suggestions offered with it, in order.
    others: Vec<u32>,
    /// Which one was taken (0: the first).
    candidate: u32,
}

enum Msg {
    Line(String),
    Flush(Sender<()>),
}

#[derive(Default)]
pub(super) struct Tracker {
    next_id: u64,
    shown: HashMap<u64, Shown>,
    /// The suggestion showing per document.
    current: HashMap<String, u64>,
    writer: Option<Sender<Msg>>,
}

impl Tracker {
    /// A suggestion answered for `uri`. A typed-ahead answer continues the
    /// one showing there (same id, `remaining` of its characters left);
    /// any other ends it and gets a new id.
    pub fn shown(&mut self, uri: &str, lang: &str, latency: Duration, text: &str, typed_ahead: bool) -> u64 {
        let remaining = text.chars().count() as u32;
        if typed_ahead {
            if let Some(s) = self.current.get(uri).and_then(|id| self.shown.get_mut(id).map(|s| (*id, s))) {
                s.1.typed = s.1.typed.max(s.1.chars.saturating_sub(remaining));
                return s.0;
            }
        }
        self.end(uri);
        self.next_id += 1;
        let id = self.next_id;
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.shown.insert(
            id,
            Shown {
                t,
                lang: lang.to_string(),
                latency_ms: latency.as_millis().min(u32::MAX as u128) as u32,
                chars: remaining,
                lines: text.lines().count().max(1) as u32,
                typed: 0,
                others: Vec::new(),
                candidate: 0,
            },
        );
        self.current.insert(uri.to_string(), id);
        id
    }

    /// Suggestion `id` came with these others to cycle through.
    pub fn offered(&mut self, id: u64, others: &[String]) {
        if let Some(s) = self.shown.get_mut(&id) {
            s.others = others.iter().map(|t| t.chars().count() as u32).collect();
        }
    }

    /// An answer for `uri` that shows nothing new: what was showing is gone
    /// (unless the answer was a typed-ahead continuation of it).
    pub fn end(&mut self, uri: &str) {
        if let Some(id) = self.current.remove(uri) {
            self.settle(id, None);
        }
    }

    /// The editor took suggestion `id` (all of it, or `chars` characters).
    /// An unknown or settled id is ignored.
    pub fn accepted(&mut self, a: &DidAccept) {
        let Some(s) = self.shown.get(&a.id) else {
            tracing::debug!(id = a.id, "didAccept for a suggestion already settled");
            return;
        };
        // Another of the answer's suggestions: its length is what counts.
        let i = a.candidate.unwrap_or(0).min(s.others.len() as u32);
        let len = if i == 0 { s.chars } else { s.others[i as usize - 1] };
        let chars = a.chars.map_or(len, |c| c.min(len));
        if let Some(s) = self.shown.get_mut(&a.id) {
            s.candidate = i;
            s.chars = len;
        }
        self.current.retain(|_, id| *id != a.id);
        self.settle(a.id, Some(chars));
    }

    /// `stats` was turned off: what is showing is never written.
    pub(crate) fn forget(&mut self) {
        self.shown.clear();
        self.current.clear();
    }

    /// Everything showing is settled (shutdown), and written before the
    /// answer (at most a second's wait for the disk).
    pub fn finish(&mut self) -> Option<std::sync::mpsc::Receiver<()>> {
        let ids: Vec<u64> = self.shown.keys().copied().collect();
        for id in ids {
            self.settle(id, None);
        }
        self.current.clear();
        let (tx, rx) = channel();
        self.writer.as_ref()?.send(Msg::Flush(tx)).ok()?;
        Some(rx)
    }

    /// Writes the record of `id`: `taken` characters accepted (None: only
    /// what was typed ahead).
    fn settle(&mut self, id: u64, taken: Option<u32>) {
        let Some(s) = self.shown.remove(&id) else { return };
        let taken = taken.unwrap_or(s.typed).max(s.typed);
        let outcome = match taken {
            0 => Outcome::Dismissed,
            n if n >= s.chars => Outcome::Accepted,
            _ => Outcome::Partial,
        };
        let record = Record {
            t: s.t,
            lang: s.lang,
            latency_ms: s.latency_ms,
            chars: s.chars,
            lines: s.lines,
            outcome,
            accepted_chars: (outcome == Outcome::Partial).then_some(taken),
            typed_ahead: s.typed > 0,
            offered: 1 + s.others.len() as u32,
            candidate: s.candidate,
        };
        let writer = self.writer.get_or_insert_with(spawn_writer);
        let _ = writer.send(Msg::Line(record.to_line()));
    }
}

/// The thread that appends to the statistics file; a failure is logged
/// once, and the records are dropped (never a panic, never a retry loop).
fn spawn_writer() -> Sender<Msg> {
    let (tx, rx) = channel::<Msg>();
    let spawned = std::thread::Builder::new().name("wick-stats".into()).spawn(move || {
        let Some(path) = crate::workspace::stats_path() else {
            tracing::warn!("statistics: no data directory (set WICK_DATA_DIR or HOME); nothing is recorded");
            return;
        };
        let log = crate::workspace::CappedLog::new(path, crate::workspace::STATS_CAP);
        let mut warned = false;
        while let Ok(msg) = rx.recv() {
            let mut lines = String::new();
            let mut flush = Vec::new();
            // What queued up meanwhile goes in one write.
            for m in std::iter::once(msg).chain(rx.try_iter()) {
                match m {
                    Msg::Line(l) => lines.push_str(&l),
                    Msg::Flush(done) => flush.push(done),
                }
            }
            if let Err(e) = log.append(&lines) {
                if !warned {
                    tracing::warn!("statistics: cannot write {}: {e}", log.path.display());
                    warned = true;
                }
            }
            for done in flush {
                let _ = done.send(());
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("statistics: no writer thread: {e}");
    }
    tx
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tracker whose records come back to the test instead of a file.
    fn tracker() -> (Tracker, std::sync::mpsc::Receiver<Msg>) {
        let (tx, rx) = channel();
        (Tracker { writer: Some(tx), ..Tracker::default() }, rx)
    }

    /// The records written since the last call.
    fn records(rx: &std::sync::mpsc::Receiver<Msg>) -> Vec<crate::stats::Record> {
        let text: String = rx
            .try_iter()
            .filter_map(|m| match m {
                Msg::Line(l) => Some(l),
                Msg::Flush(_) => None,
            })
            .collect();
        crate::stats::parse(&text)
    }

    fn written(rx: &std::sync::mpsc::Receiver<Msg>) -> Vec<(Outcome, Option<u32>, bool)> {
        records(rx).into_iter().map(|r| (r.outcome, r.accepted_chars, r.typed_ahead)).collect()
    }

    #[test]
    fn typed_ahead_continues_a_suggestion_and_counts_as_partly_accepted() {
        let (mut t, rx) = tracker();
        let ms = Duration::from_millis(20);
        let a = t.shown("u", "python", ms, "range(10)", false);
        // The user typed "rang": the rest is answered as typed-ahead.
        assert_eq!(t.shown("u", "python", ms, "e(10)", true), a);
        assert!(written(&rx).is_empty());
        // Then something else was asked for: a went away, 4 of 9 taken.
        let b = t.shown("u", "python", ms, "print(x)", false);
        assert_ne!(a, b);
        assert_eq!(written(&rx), [(Outcome::Partial, Some(4), true)]);
        // Typed ahead, then accepted: accepted.
        t.shown("u", "python", ms, "x)", true);
        t.accepted(&DidAccept { id: b, chars: None, candidate: None });
        assert_eq!(written(&rx), [(Outcome::Accepted, None, true)]);
        // A typed-ahead answer with nothing showing is a new suggestion.
        let c = t.shown("u", "python", ms, "abc", true);
        assert!(c > b);
        // An empty answer ends it; so do close and shutdown for others.
        t.end("u");
        let d = t.shown("v", "rust", ms, "let", false);
        t.accepted(&DidAccept { id: d, chars: Some(99), candidate: None });
        t.accepted(&DidAccept { id: d, chars: None, candidate: None });
        t.shown("w", "rust", ms, "fn", false);
        let e = t.shown("x", "rust", ms, "fn", false);
        assert!(t.finish().is_some());
        // Turned off: nothing showing is written.
        t.shown("x", "rust", ms, "fn", false);
        t.forget();
        t.accepted(&DidAccept { id: e + 1, chars: None, candidate: None });
        assert!(t.finish().is_some());
        assert_eq!(
            written(&rx),
            [
                (Outcome::Dismissed, None, false),
                (Outcome::Accepted, None, false),
                (Outcome::Dismissed, None, false),
                (Outcome::Dismissed, None, false)
            ]
        );
    }

    #[test]
    fn the_record_says_how_many_were_offered_and_which_was_taken() {
        let (mut t, rx) = tracker();
        let ms = Duration::from_millis(20);
        let a = t.shown("u", "python", ms, "range(10)", false);
        t.offered(a, &["len(xs)".into(), "n".into()]);
        // The second alternative, all of it: its length counts.
        t.accepted(&DidAccept { id: a, chars: None, candidate: Some(2) });
        let r = records(&rx);
        assert_eq!((r[0].offered, r[0].candidate, r[0].chars, r[0].outcome), (3, 2, 1, Outcome::Accepted));
        // Part of the first alternative.
        let b = t.shown("u", "python", ms, "range(10)", false);
        t.offered(b, &["len(xs)".into()]);
        t.accepted(&DidAccept { id: b, chars: Some(3), candidate: Some(1) });
        let r = records(&rx);
        assert_eq!((r[0].candidate, r[0].chars, r[0].accepted_chars), (1, 7, Some(3)));
        // An index past the offered ones is the last one; one offered
        // writes neither field.
        let c = t.shown("u", "python", ms, "x", false);
        t.accepted(&DidAccept { id: c, chars: None, candidate: Some(9) });
        let line = {
            let r = records(&rx);
            assert_eq!((r[0].offered, r[0].candidate), (1, 0));
            r[0].to_line()
        };
        assert!(!line.contains("offered") && !line.contains("candidate"), "{line}");
    }
}
