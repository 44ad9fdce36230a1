//! Sandboxes pinned to a key: each key (a Durable Object's `<class>/<id>`)
//! owns one sandbox, kept between calls so its in-memory state survives,
//! and runs one call at a time. Bounded: past `MAX_LIVE` keys an idle one is
//! evicted (its memory goes; what it stored stays, as on Workers). Generic
//! over what is pinned, so the rules are tested without a guest. What a
//! Durable Object *is* lives in `taipan-bindings`; this is only the slots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One key's slot, locked while a call runs in it; `None` until first use
/// (or after a crash: the next call starts a fresh one).
pub type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

/// Keys a worker keeps live at once.
pub const MAX_LIVE: usize = 32;

pub struct Pinned<T> {
    slots: Mutex<HashMap<String, Kept<T>>>,
    max: usize,
}

/// A slot and when a call last asked for it.
struct Kept<T> {
    slot: Slot<T>,
    used: Instant,
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
        if let Some(kept) = slots.get_mut(key) {
            kept.used = Instant::now();
            return Some(kept.slot.clone());
        }
        if slots.len() >= self.max && !evict_idle(&mut slots) {
            return None;
        }
        let slot = Slot::default();
        slots.insert(
            key.to_string(),
            Kept {
                slot: slot.clone(),
                used: Instant::now(),
            },
        );
        Some(slot)
    }

    /// Drop `key`'s slot (what it holds goes when no call is using it).
    pub fn remove(&self, key: &str) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Drop `key`'s slot unless a call is using or waiting for it.
    pub fn remove_if_idle(&self, key: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        if slots.get(key).is_some_and(|kept| is_idle(&kept.slot)) {
            slots.remove(key);
        }
    }

    /// Let go of every idle key no call asked for in `age` and that
    /// `may_go` allows; the keys let go.
    pub fn evict_older_than(&self, age: Duration, may_go: impl Fn(&str) -> bool) -> Vec<String> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = slots
            .iter()
            .filter(|(key, kept)| kept.used.elapsed() >= age && is_idle(&kept.slot) && may_go(key))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &gone {
            slots.remove(key);
        }
        gone
    }

    /// Let one idle key go (e.g. when the sandbox pool is full); false if
    /// all are busy.
    pub fn evict_one(&self) -> bool {
        evict_idle(&mut self.slots.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether any slot holds something (one a call is using counts).
    pub fn holds_any(&self) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .values()
            .any(|kept| kept.slot.try_lock().map_or(true, |held| held.is_some()))
    }

    pub fn len(&self) -> usize {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// No call is using or waiting for `slot`.
fn is_idle<T>(slot: &Slot<T>) -> bool {
    Arc::strong_count(slot) == 1 && slot.try_lock().is_ok()
}

/// Drop one slot no call is using or waiting for; false if all are busy.
fn evict_idle<T>(slots: &mut HashMap<String, Kept<T>>) -> bool {
    let idle = slots
        .iter()
        .find(|(_, kept)| is_idle(&kept.slot))
        .map(|(key, _)| key.clone());
    idle.is_some_and(|key| slots.remove(&key).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_slot_holding_something_or_in_use_counts_as_held() {
        let pinned: Pinned<u32> = Pinned::with_max(2);
        let slot = pinned.slot("a").unwrap();
        assert!(!pinned.holds_any(), "an empty slot");
        let guard = slot.clone().lock_owned().await;
        assert!(pinned.holds_any(), "a call is using it");
        drop(guard);
        *slot.lock().await = Some(7);
        assert!(pinned.holds_any());
    }

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

    #[tokio::test]
    async fn keys_idle_past_an_age_go_unless_kept() {
        let pinned: Pinned<u32> = Pinned::with_max(8);
        drop(pinned.slot("old").unwrap());
        drop(pinned.slot("kept").unwrap());
        let busy = pinned.slot("busy").unwrap();
        let _call = busy.clone().lock_owned().await;
        assert!(
            pinned
                .evict_older_than(Duration::from_secs(60), |_| true)
                .is_empty()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(pinned.slot("fresh").unwrap());
        let gone = pinned.evict_older_than(Duration::from_millis(10), |key| key != "kept");
        assert_eq!(gone, vec!["old".to_string()]);
        assert_eq!(pinned.len(), 3, "kept, busy and fresh stay");
        pinned.remove("kept");
        assert_eq!(pinned.len(), 2);
        pinned.remove_if_idle("busy");
        assert_eq!(pinned.len(), 2, "a key in use stays");
        pinned.remove_if_idle("fresh");
        assert_eq!(pinned.len(), 1);
    }
}
