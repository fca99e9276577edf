//! What the server derives from a file (its definitions, for one), kept
//! per file as of a stamp: a document version, or a file's modification
//! time and length. Asked again with the same stamp, it is not recomputed;
//! a new stamp replaces the old entry. Bounded: past the cap the store
//! starts over (files come and go; recomputing is cheap next to an unbounded
//! map in a long session).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Files kept at most by default (then the store starts over).
pub(crate) const FILES_KEPT: usize = 256;

pub(crate) struct PerFile<T> {
    kept: Mutex<HashMap<String, (String, Arc<T>)>>,
    cap: usize,
}

impl<T> Default for PerFile<T> {
    fn default() -> Self {
        PerFile::new(FILES_KEPT)
    }
}

impl<T> PerFile<T> {
    pub fn new(cap: usize) -> Self {
        PerFile { kept: Mutex::new(HashMap::new()), cap: cap.max(1) }
    }

    /// The value for `key` as of `stamp`: kept, or computed and kept (None:
    /// `compute` could not, e.g. the file could not be read; nothing is
    /// kept then). `compute` runs without the lock held.
    pub(crate) fn get_or(&self, key: &str, stamp: &str, compute: impl FnOnce() -> Option<T>) -> Option<Arc<T>> {
        if let Some((s, v)) = self.lock().get(key) {
            if s == stamp {
                return Some(v.clone());
            }
        }
        let v = Arc::new(compute()?);
        let mut kept = self.lock();
        if kept.len() >= self.cap && !kept.contains_key(key) {
            kept.clear();
        }
        kept.insert(key.to_string(), (stamp.to_string(), v.clone()));
        Some(v)
    }

    /// Files with a value kept.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Arc<T>)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::PerFile;
    use std::cell::Cell;

    #[test]
    fn a_value_is_computed_once_per_stamp_and_the_store_is_bounded() {
        let kept = PerFile::new(2);
        let runs = Cell::new(0);
        let compute = |v: u32| {
            runs.set(runs.get() + 1);
            Some(v)
        };
        assert_eq!(*kept.get_or("a", "v1", || compute(1)).unwrap(), 1);
        assert_eq!(*kept.get_or("a", "v1", || compute(99)).unwrap(), 1, "same stamp: kept");
        assert_eq!(runs.get(), 1);
        assert_eq!(*kept.get_or("a", "v2", || compute(2)).unwrap(), 2, "new stamp: recomputed");
        assert!(kept.get_or("b", "v1", || None).is_none(), "nothing to keep");
        assert_eq!(kept.len(), 1);
        kept.get_or("b", "v1", || compute(3));
        assert_eq!(kept.len(), 2);
        kept.get_or("c", "v1", || compute(4));
        assert_eq!(kept.len(), 1, "past the cap the store starts over");
    }
}
