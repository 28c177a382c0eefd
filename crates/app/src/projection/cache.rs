//! The projection's cache of the histories of pathways touched lately (two
//! generations): appends come in bursts on the same pathways.

use super::*;

/// Histories of the pathways touched lately, in two generations: a look-up
/// in the old one moves the entry to the young one; when the young one is
/// full it becomes the old one.
#[derive(Default)]
pub(super) struct HistoryCache {
    young: HashMap<PathwayKey, Arc<Vec<RecordedEvent>>>,
    old: HashMap<PathwayKey, Arc<Vec<RecordedEvent>>>,
}

impl HistoryCache {
    /// The history of `id` if the cache has all `len` of its events.
    pub(super) fn get(&mut self, id: &str, len: usize) -> Option<Arc<Vec<RecordedEvent>>> {
        if let Some(h) = self.young.get(id) {
            return (h.len() == len).then(|| h.clone());
        }
        let (key, h) = self.old.remove_entry(id)?;
        if h.len() != len {
            return None;
        }
        self.insert(key, h.clone());
        Some(h)
    }

    pub(super) fn insert(&mut self, id: PathwayKey, history: Arc<Vec<RecordedEvent>>) {
        if self.young.len() >= CACHED_PATHWAYS && !self.young.contains_key(&id) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(id, history);
    }

    /// Whether no history is cached at all.
    pub(super) fn is_empty(&self) -> bool {
        self.young.is_empty() && self.old.is_empty()
    }

    /// Whether the cache holds exactly the first `len` events of `id`.
    pub(super) fn holds(&self, id: &str, len: usize) -> bool {
        self.young
            .get(id)
            .or_else(|| self.old.get(id))
            .is_some_and(|h| h.len() == len)
    }

    /// Adds the event after the first `len` (when the cache holds exactly those).
    pub(super) fn extend(&mut self, id: &str, len: usize, event: RecordedEvent) {
        for generation in [&mut self.young, &mut self.old] {
            if let Some(h) = generation.get_mut(id) {
                if h.len() == len {
                    Arc::make_mut(h).push(event);
                }
                return;
            }
        }
    }
}
