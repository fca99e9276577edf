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

/// The latest stamp per key, and what the concern keeps per key beside it
/// (`T`), so that one owner holds both and forgets both together.
pub(super) struct Latest<T = ()> {
    entries: Mutex<HashMap<String, Entry<T>>>,
}

#[derive(Default)]
struct Entry<T> {
    stamp: u64,
    data: T,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Latest { entries: Mutex::default() }
    }
}

impl<T: Default> Latest<T> {
    /// A new stamp for `key`, now its latest.
    pub(super) fn arrive(&self, key: &str) -> u64 {
        let s = crate::engine::arrival();
        self.note(key, s);
        s
    }

    /// Records `stamp`, taken earlier, as `key`'s latest unless a later one
    /// is there already.
    pub(super) fn note(&self, key: &str, stamp: u64) {
        let mut m = lock(&self.entries);
        let e = m.entry(key.to_string()).or_default();
        e.stamp = e.stamp.max(stamp);
    }

    /// Whether no stamp later than `stamp` has arrived for `key`.
    pub(super) fn is_latest(&self, key: &str, stamp: u64) -> bool {
        lock(&self.entries).get(key).is_none_or(|e| e.stamp <= stamp)
    }

    /// Stops the work waiting under `key` (a later stamp arrives).
    pub(super) fn supersede(&self, key: &str) {
        self.arrive(key);
    }

    /// Forgets `key` and its data (a closed document).
    pub(super) fn forget(&self, key: &str) {
        lock(&self.entries).remove(key);
    }

    /// Keys with a stamp (for `wick/serverState`).
    pub(super) fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Runs `f` on `key`'s data, if the key is known (None: it is not, as
    /// after [`Latest::forget`]).
    pub(super) fn with<R>(&self, key: &str, f: impl FnOnce(&mut T) -> R) -> Option<R> {
        lock(&self.entries).get_mut(key).map(|e| f(&mut e.data))
    }

    /// Runs `f` on `key`'s data, made with its default (and no stamp) if the
    /// key is new.
    pub(super) fn with_or_default<R>(&self, key: &str, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut lock(&self.entries).entry(key.to_string()).or_default().data)
    }
}

#[cfg(test)]
mod tests {
    use super::Latest;

    #[test]
    fn only_the_latest_arrival_goes_on_whatever_the_order_it_is_noted_in() {
        let l = Latest::<()>::default();
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

    #[test]
    fn data_lives_and_goes_with_its_key() {
        let l = Latest::<u32>::default();
        assert_eq!(l.with("a", |n| *n), None);
        l.with_or_default("a", |n| *n = 7);
        // Data made without a stamp holds nothing back.
        assert!(l.is_latest("a", 0));
        let s = l.arrive("a");
        assert_eq!(l.with("a", |n| *n), Some(7));
        assert!(l.is_latest("a", s));
        l.forget("a");
        assert_eq!(l.with("a", |n| *n), None);
        assert_eq!(l.len(), 0);
    }
}
