//! `queues`: the queues a worker sends to (`[[queues.producers]]`) and the
//! ones it consumes (`[[queues.consumers]]`), with wrangler's defaults and
//! Cloudflare's bounds.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bindings::{binding_name, optional_string};
use crate::error::ConfigError;
use crate::raw::RawConfig;

const KEY: &str = "queues";

/// The longest delay a message may be given, in seconds (24 h).
pub const MAX_DELAY_SECONDS: u64 = 86_400;
/// Bounds of `max_batch_size`, `max_batch_timeout` (s) and `max_retries`.
pub const MAX_BATCH_SIZE: u64 = 100;
pub const MAX_BATCH_TIMEOUT_SECONDS: f64 = 60.0;
pub const MAX_RETRIES: u64 = 100;
pub const MAX_CONCURRENCY: u64 = 250;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Queues {
    pub producers: Vec<QueueProducer>,
    pub consumers: Vec<QueueConsumer>,
}

/// `env.BINDING` sends to `queue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueProducer {
    pub binding: String,
    pub queue: String,
    /// `delivery_delay`: seconds every message waits unless `send` says otherwise.
    #[serde(default)]
    pub delivery_delay: u64,
}

/// This worker's `queue` handler receives `queue`'s messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConsumer {
    pub queue: String,
    /// Messages per batch at most (default 10, 1–100).
    pub max_batch_size: u64,
    /// How long a batch waits to fill up, in ms (default 5 s, at most 60 s).
    pub max_batch_timeout_ms: u64,
    /// Deliveries after the first before a message is given up (default 3).
    pub max_retries: u64,
    /// Seconds a retried message waits (default 0).
    pub retry_delay: u64,
    /// Where messages go once their retries are spent (else they are dropped).
    pub dead_letter_queue: Option<String>,
    /// Batches delivered at once (default 1: in order, one at a time).
    pub max_concurrency: u64,
}

pub(crate) fn parse(raw: &RawConfig) -> Result<Queues, ConfigError> {
    let Some(table) = raw.get(KEY) else {
        return Ok(Queues::default());
    };
    let Value::Object(table) = table else {
        return Err(raw
            .error(KEY, "`queues` must be a table")
            .hint("write [[queues.producers]] and [[queues.consumers]] entries"));
    };
    let mut queues = Queues::default();
    for entry in list(raw, table, "producers")? {
        let binding = binding_name(raw, KEY, &entry)?;
        let queue = queue_name(raw, &entry, &format!("queue producer `{binding}`"))?;
        let delivery_delay = number(raw, &entry, "delivery_delay", 0.0, MAX_DELAY_SECONDS as f64)?
            .map_or(0, |d| d as u64);
        queues.producers.push(QueueProducer {
            binding,
            queue,
            delivery_delay,
        });
    }
    for entry in list(raw, table, "consumers")? {
        let queue = queue_name(raw, &entry, "a queue consumer")?;
        if queues.consumers.iter().any(|c| c.queue == queue) {
            return Err(raw
                .error(KEY, format!("the queue {queue:?} has two consumers"))
                .hint("a queue has one consumer; list it once under [[queues.consumers]]"));
        }
        let size = number(raw, &entry, "max_batch_size", 1.0, MAX_BATCH_SIZE as f64)?;
        let timeout = number(
            raw,
            &entry,
            "max_batch_timeout",
            0.0,
            MAX_BATCH_TIMEOUT_SECONDS,
        )?;
        let retries = number(raw, &entry, "max_retries", 0.0, MAX_RETRIES as f64)?;
        let delay = number(raw, &entry, "retry_delay", 0.0, MAX_DELAY_SECONDS as f64)?;
        let concurrency = number(raw, &entry, "max_concurrency", 1.0, MAX_CONCURRENCY as f64)?;
        let dead_letter_queue = optional_string(raw, KEY, &entry, "dead_letter_queue")?;
        if dead_letter_queue.as_deref() == Some(queue.as_str()) {
            return Err(raw
                .error(
                    KEY,
                    format!("the queue {queue:?} is its own dead_letter_queue"),
                )
                .hint(
                    "name another queue, or leave dead_letter_queue out to drop spent messages",
                ));
        }
        queues.consumers.push(QueueConsumer {
            queue,
            max_batch_size: size.map_or(10, |n| n as u64),
            max_batch_timeout_ms: timeout.map_or(5_000, |s| (s * 1000.0) as u64),
            max_retries: retries.map_or(3, |n| n as u64),
            retry_delay: delay.map_or(0, |n| n as u64),
            dead_letter_queue,
            max_concurrency: concurrency.map_or(1, |n| n as u64),
        });
    }
    Ok(queues)
}

fn list(
    raw: &RawConfig,
    table: &Map<String, Value>,
    key: &str,
) -> Result<Vec<Map<String, Value>>, ConfigError> {
    match table.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Object(map) => Ok(map.clone()),
                _ => Err(raw.error(KEY, format!("each entry of `queues.{key}` must be a table"))),
            })
            .collect(),
        Some(_) => Err(raw
            .error(KEY, format!("`queues.{key}` must be a list of tables"))
            .hint(format!("write [[queues.{key}]] entries"))),
    }
}

/// Queue names: what a store keys messages by; wrangler's rule (letters,
/// digits, dashes, up to 63).
fn queue_name(
    raw: &RawConfig,
    entry: &Map<String, Value>,
    what: &str,
) -> Result<String, ConfigError> {
    let name = optional_string(raw, KEY, entry, "queue")?.ok_or_else(|| {
        raw.error(KEY, format!("{what} has no `queue`"))
            .hint("name the queue: queue = \"my-queue\"")
    })?;
    if !valid_queue_name(&name) {
        return Err(raw
            .error(KEY, format!("{name:?} is not a queue name"))
            .hint("use up to 63 letters, digits, dashes and underscores"));
    }
    Ok(name)
}

pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A number field in `[lo, hi]`, or None when absent.
fn number(
    raw: &RawConfig,
    entry: &Map<String, Value>,
    field: &str,
    lo: f64,
    hi: f64,
) -> Result<Option<f64>, ConfigError> {
    match entry.get(field) {
        None => Ok(None),
        Some(value) => match value.as_f64() {
            Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
            _ => Err(raw.error(
                KEY,
                format!("`{field}` in `queues` must be a number from {lo} to {hi}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{TODAY, project};

    #[test]
    fn producers_and_consumers_with_defaults() {
        let dir = project(
            "wrangler.toml",
            r#"name = "q"
main = "src/entry.py"
compatibility_date = "2025-11-01"
[[queues.producers]]
binding = "JOBS"
queue = "jobs"
[[queues.producers]]
binding = "LATER"
queue = "jobs"
delivery_delay = 30
[[queues.consumers]]
queue = "jobs"
max_batch_size = 5
max_batch_timeout = 0.5
dead_letter_queue = "jobs-dlq"
[[queues.consumers]]
queue = "jobs-dlq"
"#,
        );
        let cfg = crate::load_at(dir.path(), TODAY).unwrap();
        let q = &cfg.bindings.queues;
        assert_eq!(q.producers.len(), 2);
        assert_eq!(
            (q.producers[1].queue.as_str(), q.producers[1].delivery_delay),
            ("jobs", 30)
        );
        let c = &q.consumers[0];
        assert_eq!(
            (c.max_batch_size, c.max_batch_timeout_ms, c.max_retries),
            (5, 500, 3)
        );
        assert_eq!(c.dead_letter_queue.as_deref(), Some("jobs-dlq"));
        let d = &q.consumers[1];
        assert_eq!(
            (d.max_batch_size, d.max_batch_timeout_ms, d.max_concurrency),
            (10, 5000, 1)
        );
        assert!(
            cfg.warnings.iter().all(|w| !w.contains("queues")),
            "{:?}",
            cfg.warnings
        );
        assert!(cfg.bindings.kinds().contains(&("JOBS", "queue")));
    }

    #[test]
    fn bad_queue_settings_are_errors_with_the_line() {
        for (body, needle) in [
            (
                "[[queues.consumers]]\nqueue = \"a\"\nmax_batch_size = 500\n",
                "max_batch_size",
            ),
            (
                "[[queues.consumers]]\nqueue = \"a b\"\n",
                "not a queue name",
            ),
            ("[[queues.producers]]\nbinding = \"Q\"\n", "has no `queue`"),
            (
                "[[queues.consumers]]\nqueue = \"a\"\n[[queues.consumers]]\nqueue = \"a\"\n",
                "two consumers",
            ),
            (
                "[[queues.consumers]]\nqueue = \"a\"\ndead_letter_queue = \"a\"\n",
                "its own dead_letter_queue",
            ),
        ] {
            let dir = project(
                "wrangler.toml",
                &format!(
                    "name = \"q\"\nmain = \"src/entry.py\"\ncompatibility_date = \"2025-11-01\"\n{body}"
                ),
            );
            let err = crate::load_at(dir.path(), TODAY).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
            assert!(err.contains("wrangler.toml\":4"), "{body}: {err}");
        }
    }
}
