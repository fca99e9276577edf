//! "Only the newest counts", one mechanism for every concern of the server
//! (completions waiting out `debounceMs`, diagnostics waiting for a pause,
//! prefetches waiting for the cursor to settle; the engine supersedes its
//! queued and running requests the same way): work is stamped when it
//! arrives, from the engine's one clock ([`crate::engine::arrival`]), and
//! goes on only while no later stamp has arrived for its key. Stamps taken
//! before an await keep their order however the awaits finish.

use super::lock;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(super) struct Latest {
    stamps: Mutex<HashMap<String, u64>>,
}

impl Latest {
    /// A new stamp for `key`, now its latest.
    pub(super) fn arrive(&self, key: &str) -> u64 {
        let s = crate::engine::arrival();
        self.note(key, s);
        s
    }

    /// Records `stamp`, taken earlier, as `key`'s latest unless a later one
    /// is there already.
    pub(super) fn note(&self, key: &str, stamp: u64) {
        let mut m = lock(&self.stamps);
        let n = m.entry(key.to_string()).or_default();
        *n = (*n).max(stamp);
    }

    /// Whether no stamp later than `stamp` has arrived for `key`.
    pub(super) fn is_latest(&self, key: &str, stamp: u64) -> bool {
        lock(&self.stamps).get(key).is_none_or(|&n| n <= stamp)
    }

    /// Stops the work waiting under `key` (a later stamp arrives).
    pub(super) fn supersede(&self, key: &str) {
        self.arrive(key);
    }

    /// Forgets `key` (a closed document).
    pub(super) fn forget(&self, key: &str) {
        lock(&self.stamps).remove(key);
    }

    /// Keys with a stamp (for `wick/serverState`).
    pub(super) fn len(&self) -> usize {
        lock(&self.stamps).len()
    }
}

#[cfg(test)]
mod tests {
    use super::Latest;

    #[test]
    fn only_the_latest_arrival_goes_on_whatever_the_order_it_is_noted_in() {
        let l = Latest::default();
        let (early, late) = (crate::engine::arrival(), crate::engine::arrival());
        // The later arrival is noted first (its preparation was quicker).
        l.note("a", late);
        l.note("a", early);
        assert!(l.is_latest("a", late));
        assert!(!l.is_latest("a", early));
        let next = l.arrive("a");
        assert!(!l.is_latest("a", late) && l.is_latest("a", next));
        // Keys are independent; a key never seen holds nothing back.
        assert!(l.is_latest("b", early));
        l.supersede("a");
        assert!(!l.is_latest("a", next));
        assert_eq!(l.len(), 1);
        l.forget("a");
        assert_eq!(l.len(), 0);
    }
}
