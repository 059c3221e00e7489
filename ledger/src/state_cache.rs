//! The command handler's cache of folded streams: the state and version a decision last saw
//! of each recently used stream, so a command on a warm stream is decided without reading
//! and folding its events again.
//!
//! The cache is only ever a guess. Every stream a decision reads is appended with the
//! version it saw, and the store checks that version under the append lock; so a stale entry
//! (another process appended meanwhile, or a batch's commit failed with an unknown outcome)
//! can only turn into a `Conflict` or into a refusal, and the handler then forgets what it
//! used and decides again on streams read from the log (`service`). A decision accepted on a
//! stale entry cannot be committed.
//!
//! Entries move forward only with events this process appended, each checked to continue
//! the cached version exactly; anything else drops the entry.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hashlink::LruCache;

use crate::domain::{Loaded, evolve};
use crate::event::RecordedEvent;
use crate::ids::StreamId;

/// Streams kept: the least recently used are dropped beyond this. A contract's state is a
/// few hundred bytes, so this bounds the cache to tens of megabytes.
pub const STATE_CACHE_STREAMS: usize = 65_536;

pub struct StateCache {
    entries: Mutex<LruCache<StreamId, Loaded>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// How often [`StateCache::get`] found the stream, since the process started (`/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lookups {
    pub hits: u64,
    pub misses: u64,
}

impl Default for StateCache {
    fn default() -> Self {
        StateCache::with_capacity(STATE_CACHE_STREAMS)
    }
}

impl StateCache {
    pub fn with_capacity(streams: usize) -> StateCache {
        assert!(streams > 0, "a state cache holds at least one stream");
        StateCache { entries: Mutex::new(LruCache::new(streams)), hits: AtomicU64::new(0), misses: AtomicU64::new(0) }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<StreamId, Loaded>> {
        // A panic while holding the lock cannot leave an entry half-advanced (entries are
        // replaced whole), so a poisoned cache is still a valid one.
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached state of `stream`, if any; counted as a hit or a miss.
    pub fn get(&self, stream: &StreamId) -> Option<Loaded> {
        let found = self.entries().get(stream).cloned();
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn lookups(&self) -> Lookups {
        Lookups { hits: self.hits.load(Ordering::Relaxed), misses: self.misses.load(Ordering::Relaxed) }
    }

    /// Records `loaded`, read from the log, unless the cache already holds a later version
    /// (an append of this process got there between the read and now).
    pub fn offer(&self, stream: &StreamId, loaded: &Loaded) {
        if loaded.version == 0 {
            // A stream that does not exist yet is usually one about to be created under a
            // fresh id: not worth a slot.
            return;
        }
        let mut entries = self.entries();
        if entries.peek(stream).is_some_and(|cached| cached.version >= loaded.version) {
            return;
        }
        entries.insert(stream.clone(), loaded.clone());
    }

    /// Moves the cached streams forward over `appended` (committed, in log order). A stream
    /// created by these events enters the cache; one whose events do not continue its cached
    /// version is dropped.
    pub fn advance(&self, appended: &[RecordedEvent]) {
        let mut entries = self.entries();
        for recorded in appended {
            let stream = &recorded.stream_id;
            let next = match entries.remove(stream) {
                Some(mut loaded) if loaded.version + 1 == recorded.stream_version => {
                    evolve(&mut loaded.state, &recorded.event);
                    loaded.version += 1;
                    loaded
                }
                Some(_) => continue,
                None if recorded.stream_version == 1 => {
                    let mut loaded = Loaded { version: 0, state: None };
                    evolve(&mut loaded.state, &recorded.event);
                    loaded.version = 1;
                    loaded
                }
                None => continue,
            };
            entries.insert(stream.clone(), next);
        }
    }

    /// Drops what is cached of `streams`.
    pub fn forget<'a>(&self, streams: impl IntoIterator<Item = &'a StreamId>) {
        let mut entries = self.entries();
        for stream in streams {
            entries.remove(stream);
        }
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::fold;

    fn scenario() -> Vec<RecordedEvent> {
        let mut ledger = crate::memory::MemoryLedger::new();
        let (accepted, _) = crate::testkit::play(&mut ledger, &mut crate::testkit::Scenario::new(7), 400);
        assert!(accepted > 50, "the scenario appends ({accepted} accepted)");
        ledger.log
    }

    fn stream_of(events: &[RecordedEvent], stream: &StreamId) -> Vec<crate::event::Event> {
        events.iter().filter(|e| &e.stream_id == stream).map(|e| e.event.clone()).collect()
    }

    #[test]
    fn advancing_over_appended_events_equals_folding_the_stream_from_the_log() {
        let log = scenario();
        let cache = StateCache::default();
        for chunk in log.chunks(7) {
            cache.advance(chunk);
        }
        let mut checked = 0;
        for recorded in &log {
            let cached = cache.get(&recorded.stream_id).expect("every stream of the log was created in it");
            let events = stream_of(&log, &recorded.stream_id);
            assert_eq!(cached.version, events.len() as i64);
            assert_eq!(cached.state, fold(&recorded.stream_id, &events));
            checked += 1;
        }
        assert!(checked > 100, "the scenario has events ({checked})");
    }

    #[test]
    fn an_event_that_does_not_continue_the_cached_version_drops_the_stream() {
        let log = scenario();
        let first = &log[0];
        let cache = StateCache::default();
        cache.advance(std::slice::from_ref(first));
        assert_eq!(cache.get(&first.stream_id).map(|l| l.version), Some(1));
        // Version 3 after version 1: another writer appended version 2.
        let mut gap = first.clone();
        gap.stream_version = 3;
        cache.advance(std::slice::from_ref(&gap));
        assert_eq!(cache.get(&first.stream_id), None);
        // A stream first seen mid-way is not guessed at either.
        cache.advance(std::slice::from_ref(&gap));
        assert_eq!(cache.get(&first.stream_id), None);
    }

    #[test]
    fn an_older_read_does_not_replace_a_newer_entry() {
        let log = scenario();
        let stream = log[0].stream_id.clone();
        let events = stream_of(&log, &stream);
        let cache = StateCache::default();
        let newer = Loaded { version: events.len() as i64, state: fold(&stream, &events) };
        cache.offer(&stream, &newer);
        let older = Loaded { version: 1, state: fold(&stream, &events[..1]) };
        cache.offer(&stream, &older);
        assert_eq!(cache.get(&stream), Some(newer));
        cache.forget([&stream]);
        assert_eq!(cache.get(&stream), None);
        cache.offer(&stream, &Loaded { version: 0, state: None });
        assert!(cache.is_empty(), "absent streams are not cached");
    }

    #[test]
    fn the_least_recently_used_stream_goes_first() {
        let log = scenario();
        let mut streams: Vec<StreamId> =
            log.iter().filter(|e| e.stream_version == 1).map(|e| e.stream_id.clone()).collect();
        streams.truncate(3);
        let cache = StateCache::with_capacity(2);
        let created: Vec<&RecordedEvent> =
            streams.iter().map(|s| log.iter().find(|e| &e.stream_id == s && e.stream_version == 1).unwrap()).collect();
        cache.advance(&[created[0].clone(), created[1].clone()]);
        assert!(cache.get(&streams[0]).is_some()); // streams[1] is now the least recent
        cache.advance(&[created[2].clone()]);
        assert_eq!(cache.len(), 2);
        assert!(cache.get(&streams[1]).is_none());
        assert!(cache.get(&streams[0]).is_some() && cache.get(&streams[2]).is_some());
        // Every lookup above is counted for `/metrics`: three found, one not.
        assert_eq!(cache.lookups(), Lookups { hits: 3, misses: 1 });
    }
}
