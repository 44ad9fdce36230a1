//! Queues: producers send messages ([`producer`]), a store keeps them until
//! a consumer acknowledges them ([`QueueStore`]: a SQLite file on a single
//! node, [`sqlite`]; the cluster database in cluster mode, [`postgres`]),
//! and each consumer worker gets them in batches ([`consumer`]), at least
//! once.
//!
//! A message's life: sent (visible at once or after its delay) → leased to
//! one delivery (its attempt counted) → acked (deleted), or retried (visible
//! again after a delay), or, once `max_retries` retries are spent, moved to
//! the dead-letter queue or dropped with a log line.

pub mod consumer;
pub mod postgres;
pub mod producer;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::Notify;

use crate::protocol::BindingError;

/// Content types a message body may have (`v8` bodies are kept as JSON:
/// Python has no V8 serializer).
pub const CONTENT_TYPES: [&str; 4] = ["json", "text", "bytes", "v8"];
/// Cloudflare's limits (1 KB = 1000 bytes there).
pub const MAX_MESSAGE_BYTES: usize = 128_000;
pub const MAX_BATCH_MESSAGES: usize = 100;
pub const MAX_BATCH_BYTES: usize = 256_000;
pub const MAX_DELAY_SECONDS: u64 = taipan_config::queues::MAX_DELAY_SECONDS;

/// A message on its way into a queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub body: Bytes,
    pub content_type: String,
    pub delay_seconds: u64,
}

/// A message leased to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub body: Vec<u8>,
    pub content_type: String,
    /// When it was sent, ms since the epoch.
    pub timestamp_ms: i64,
    /// Deliveries so far, this one included (1 on the first).
    pub attempts: u64,
}

/// What a consumer decided for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ack,
    /// Deliver again, after this many seconds (else the consumer's `retry_delay`).
    Retry(Option<u64>),
}

/// One queue's backlog, for `taipan queues list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct QueueStats {
    pub queue: String,
    /// Visible now, waiting for a delivery.
    pub ready: u64,
    /// Waiting out a delay.
    pub delayed: u64,
    /// Leased to a delivery under way.
    pub in_flight: u64,
}

/// Where messages live between `send` and their acknowledgement. Every
/// operation is atomic: two deliveries never lease the same message.
pub trait QueueStore: Send + Sync + 'static {
    fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'static, Result<(), BindingError>>;
    /// Lease up to `max` visible messages, oldest first, counting an attempt.
    fn lease(
        &self,
        queue: &str,
        max: u64,
    ) -> BoxFuture<'static, Result<Vec<Message>, BindingError>>;
    /// `(visible now, ms since the oldest of them became visible)`, and when
    /// the next delayed one becomes visible (ms since the epoch).
    fn backlog(&self, queue: &str) -> BoxFuture<'static, Result<Backlog, BindingError>>;
    fn ack(&self, ids: Vec<String>) -> BoxFuture<'static, Result<(), BindingError>>;
    /// Make `id` visible again after `delay_seconds`, unleased.
    fn retry(&self, id: String, delay_seconds: u64)
    -> BoxFuture<'static, Result<(), BindingError>>;
    /// Move `id` to `queue` as a new message (attempts back to 0).
    fn move_to(&self, id: String, queue: String) -> BoxFuture<'static, Result<(), BindingError>>;
    fn stats(&self) -> BoxFuture<'static, Result<Vec<QueueStats>, BindingError>>;

    /// The longest a consumer goes without looking at a queue: a send
    /// through this process wakes it at once, one through another process
    /// (the CLI, another node of a cluster) is found this long after at most.
    fn poll_interval(&self) -> Duration {
        Duration::from_secs(5)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub ready: u64,
    /// How long the oldest ready message has been visible, in ms.
    pub oldest_ready_ms: i64,
    /// When the next delayed message becomes visible (ms since the epoch).
    pub next_visible_ms: Option<i64>,
}

/// Process-lifetime: the store and a wake-up per queue, so a consumer
/// hears of a send at once instead of polling.
pub struct Queues {
    store: Arc<dyn QueueStore>,
    wake: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Queues {
    pub fn new(store: Arc<dyn QueueStore>) -> Arc<Self> {
        Arc::new(Self {
            store,
            wake: Mutex::default(),
        })
    }

    pub fn store(&self) -> &Arc<dyn QueueStore> {
        &self.store
    }

    /// Store `messages` and wake `queue`'s consumer.
    pub async fn send(&self, queue: &str, messages: Vec<NewMessage>) -> Result<(), BindingError> {
        self.store.send(queue, messages).await?;
        self.waker(queue).notify_one();
        Ok(())
    }

    /// Notified when a message is sent to `queue` (or settles there).
    pub fn waker(&self, queue: &str) -> Arc<Notify> {
        self.wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(queue.to_string())
            .or_default()
            .clone()
    }
}

/// Check what a producer sends against the content types and limits.
pub fn check_message(content_type: &str, size: usize, delay: u64) -> Result<(), BindingError> {
    if !CONTENT_TYPES.contains(&content_type) {
        return Err(BindingError::type_error(format!(
            "Unsupported queue message content type: {content_type}"
        )));
    }
    if size > MAX_MESSAGE_BYTES {
        return Err(BindingError::error(format!(
            "Queue send failed: the message is {size} bytes, over the limit of {MAX_MESSAGE_BYTES} (10204)"
        )));
    }
    if delay > MAX_DELAY_SECONDS {
        return Err(BindingError::error(format!(
            "Queue send failed: a delay of {delay} seconds is over the limit of {MAX_DELAY_SECONDS} (10203)"
        )));
    }
    Ok(())
}
