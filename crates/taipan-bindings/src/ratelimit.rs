//! Rate limiting bindings (`ratelimits`): `env.LIMITER.limit(key=…)` answers
//! `{"success": false}` once `key` has been let through `limit` times in the
//! current `period`. Counters live in the process, per namespace id, like
//! Cloudflare's per-location ones (approximate by design, not an accounting
//! system); a restart starts them over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::json;

use crate::Binding;
use crate::alarms::now_ms;
use crate::protocol::{BindingError, Call, Reply};

/// Keys a namespace tracks at once; past it, windows that have ended are
/// dropped first, then the oldest.
pub const MAX_KEYS: usize = 100_000;
/// The longest key accepted.
pub const MAX_KEY_BYTES: usize = 1024;

/// Process-lifetime: one namespace's counters, shared by every binding that
/// names it.
#[derive(Default)]
pub struct Counters {
    /// key → (window number, calls let through in it)
    windows: Mutex<HashMap<String, (i64, u64)>>,
}

impl Counters {
    /// Count one call of `key` at `now_ms`; whether it is within `limit`.
    pub fn hit(&self, key: &str, limit: u64, period_s: u64, now_ms: i64) -> bool {
        let window = now_ms / (period_s as i64 * 1000);
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_KEYS && !windows.contains_key(key) {
            windows.retain(|_, (w, _)| *w == window);
            if windows.len() >= MAX_KEYS {
                windows.clear();
            }
        }
        let entry = windows.entry(key.to_string()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        if entry.1 >= limit {
            return false;
        }
        entry.1 += 1;
        true
    }
}

pub struct RateLimiter {
    pub counters: Arc<Counters>,
    pub limit: u64,
    pub period: u64,
}

impl Binding for RateLimiter {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            if op != "limit" {
                return Err(BindingError::type_error(format!(
                    "a rate limiter has no operation {op:?}"
                )));
            }
            let key = call.str_arg("key")?;
            if key.len() > MAX_KEY_BYTES {
                return Err(BindingError::range_error(format!(
                    "the key is over {MAX_KEY_BYTES} bytes"
                )));
            }
            let success = self.counters.hit(key, self.limit, self.period, now_ms());
            Ok(Reply::Json(json!({ "success": success })))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_limit_calls_per_window_and_keys_are_apart() {
        let counters = Counters::default();
        let t = 60_000 * 16_666_667 + 20_000; // 20 s into a 60 s window
        assert!((0..3).all(|_| counters.hit("a", 3, 60, t)));
        assert!(!counters.hit("a", 3, 60, t + 1000));
        assert!(
            counters.hit("b", 3, 60, t + 1000),
            "another key has its own count"
        );
        assert!(
            counters.hit("a", 3, 60, t + 40_000),
            "the next window starts over"
        );
    }
}
