//! Sandboxes pinned to a key: each key (a Durable Object's `<class>/<id>`)
//! owns one sandbox, kept between calls so its in-memory state survives,
//! and runs one call at a time. Bounded: past `MAX_LIVE` keys an idle one is
//! evicted (its memory goes; what it stored stays, as on Workers). Generic
//! over what is pinned, so the rules are tested without a guest. What a
//! Durable Object *is* lives in `taipan-bindings`; this is only the slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One key's slot, locked while a call runs in it; `None` until first use
/// (or after a crash: the next call starts a fresh one).
pub type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

/// Keys a worker keeps live at once.
pub const MAX_LIVE: usize = 32;

pub struct Pinned<T> {
    slots: Mutex<HashMap<String, Slot<T>>>,
    max: usize,
}

impl<T> Default for Pinned<T> {
    fn default() -> Self {
        Self::with_max(MAX_LIVE)
    }
}

impl<T> Pinned<T> {
    pub fn with_max(max: usize) -> Self {
        Self {
            slots: Mutex::default(),
            max,
        }
    }

    /// `key`'s slot, made if new; `None` when `max` keys are live and every
    /// one is busy.
    pub fn slot(&self, key: &str) -> Option<Slot<T>> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.get(key) {
            return Some(slot.clone());
        }
        if slots.len() >= self.max && !evict_idle(&mut slots) {
            return None;
        }
        let slot = Slot::default();
        slots.insert(key.to_string(), slot.clone());
        Some(slot)
    }

    /// Let one idle key go (e.g. when the sandbox pool is full); false if
    /// all are busy.
    pub fn evict_one(&self) -> bool {
        evict_idle(&mut self.slots.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drop one slot no call is using or waiting for; false if all are busy.
fn evict_idle<T>(slots: &mut HashMap<String, Slot<T>>) -> bool {
    let idle = slots
        .iter()
        .find(|(_, slot)| Arc::strong_count(slot) == 1 && slot.try_lock().is_ok())
        .map(|(key, _)| key.clone());
    idle.is_some_and(|key| slots.remove(&key).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_keeps_its_value_and_runs_one_call_at_a_time() {
        let pinned: Pinned<u32> = Pinned::with_max(2);
        let slot = pinned.slot("a").unwrap();
        *slot.lock().await = Some(7);
        drop(slot);
        let again = pinned.slot("a").unwrap();
        let guard = again.clone().lock_owned().await;
        assert_eq!(*guard, Some(7));
        // A second call waits for the first.
        assert!(again.try_lock().is_err());
        drop(guard);
        assert!(again.try_lock().is_ok());
    }

    #[tokio::test]
    async fn past_max_an_idle_key_is_evicted_never_a_busy_one() {
        let pinned: Pinned<u32> = Pinned::with_max(2);
        let busy = pinned.slot("busy").unwrap();
        let _call = busy.clone().lock_owned().await;
        drop(pinned.slot("idle").unwrap());
        assert!(pinned.slot("new").is_some(), "the idle key made room");
        assert_eq!(pinned.len(), 2);
        // Now both live keys are in use (one held here, one locked).
        let new = pinned.slot("new").unwrap();
        assert!(pinned.slot("third").is_none());
        drop(new);
        assert!(pinned.evict_one());
        assert!(!pinned.evict_one(), "the busy key stays");
    }
}
