//! Delivering a queue's messages to its consumer worker in batches: wait
//! for `max_batch_size` messages or `max_batch_timeout`, lease them, call
//! the worker's `queue` handler, then settle each message by its outcome.
//! One task per consumed queue, for as long as the worker's bindings live;
//! up to `max_concurrency` batches in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use taipan_config::queues::QueueConsumer;
use tokio::sync::Semaphore;

use super::{Message, Outcome, Queues};
use crate::Services;
use crate::alarms::now_ms;
use crate::tasks::Tasks;

/// After a store error, before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);
/// While the consumer is not ready, how often to look again.
const NOT_READY_PAUSE: Duration = Duration::from_millis(100);

/// Hands a batch to the consumer; answers each message's outcome (a message
/// left out, or an `Err`, means retry).
pub trait Deliver: Send + Sync + 'static {
    /// Whether the consumer can take a batch now (a worker still starting
    /// cannot: leasing would spend an attempt on nothing).
    fn ready(&self) -> bool {
        true
    }

    fn deliver(
        &self,
        queue: &str,
        batch: &[Message],
    ) -> BoxFuture<'static, Result<HashMap<String, Outcome>, String>>;
}

/// Start consuming `consumers` (the tasks stop when the result is dropped,
/// with the worker version's bindings).
pub fn start(
    queues: &Arc<Queues>,
    consumers: &[QueueConsumer],
    deliver: Arc<dyn Deliver>,
) -> Tasks {
    Tasks::spawn_all(
        consumers
            .iter()
            .map(|consumer| consume(queues.clone(), consumer.clone(), deliver.clone())),
    )
}

/// The consuming loop of one queue.
pub async fn consume(queues: Arc<Queues>, consumer: QueueConsumer, deliver: Arc<dyn Deliver>) {
    let queue = consumer.queue.clone();
    let wake = queues.waker(&queue);
    let permits = Arc::new(Semaphore::new(consumer.max_concurrency.max(1) as usize));
    let consumer = Arc::new(consumer);
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let backlog = match queues.store().backlog(&queue).await {
            Ok(backlog) => backlog,
            Err(e) => {
                tracing::warn!(queue, "reading the queue failed: {}", e.message);
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            }
        };
        let timeout = consumer.max_batch_timeout_ms as i64;
        let due = backlog.ready >= consumer.max_batch_size || backlog.oldest_ready_ms >= timeout;
        if backlog.ready > 0 && due && !deliver.ready() {
            drop(permit);
            tokio::time::sleep(NOT_READY_PAUSE).await;
            continue;
        }
        if backlog.ready > 0 && due {
            // Lease, deliver and settle in a task of its own: stopping this
            // loop (a redeploy) never strands a leased batch.
            let (queues, consumer, deliver, wake) = (
                queues.clone(),
                consumer.clone(),
                deliver.clone(),
                wake.clone(),
            );
            let (leased, lease_done) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                deliver_one(&queues, &consumer, &*deliver, leased).await;
                drop(permit);
                wake.notify_one();
            });
            // The backlog is read again once the task has leased its batch.
            let _ = lease_done.await;
            continue;
        }
        drop(permit);
        // A send through this process wakes the loop sooner; the store's
        // poll interval bounds how late it finds one made elsewhere.
        let mut sleep = queues.store().poll_interval();
        if backlog.ready > 0 {
            sleep = sleep.min(Duration::from_millis(
                (timeout - backlog.oldest_ready_ms).max(0) as u64,
            ));
        }
        if let Some(next) = backlog.next_visible_ms {
            sleep = sleep.min(Duration::from_millis((next - now_ms()).max(0) as u64));
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Lease one batch (then say so on `leased`), hand it to the consumer,
/// settle it.
async fn deliver_one(
    queues: &Queues,
    consumer: &QueueConsumer,
    deliver: &dyn Deliver,
    leased: tokio::sync::oneshot::Sender<()>,
) {
    let queue = &consumer.queue;
    let batch = queues.store().lease(queue, consumer.max_batch_size).await;
    let _ = leased.send(());
    let batch = match batch {
        Ok(batch) => batch,
        Err(e) => {
            tracing::warn!(queue, "leasing messages failed: {}", e.message);
            tokio::time::sleep(ERROR_PAUSE).await;
            return;
        }
    };
    if batch.is_empty() {
        return;
    }
    let outcomes = match deliver.deliver(queue, &batch).await {
        Ok(outcomes) => outcomes,
        Err(why) => {
            tracing::warn!(
                queue,
                "delivering a batch of {} failed: {why}; retrying it",
                batch.len()
            );
            HashMap::new()
        }
    };
    settle(queues, consumer, batch, outcomes).await;
}

/// Apply each message's outcome: ack deletes it; retry makes it visible
/// again after its delay, unless its retries are spent: then it moves to
/// the dead-letter queue, or is dropped with a log line.
pub async fn settle(
    queues: &Queues,
    consumer: &QueueConsumer,
    batch: Vec<Message>,
    mut outcomes: HashMap<String, Outcome>,
) {
    let store = queues.store();
    let mut acked = Vec::new();
    for message in batch {
        let outcome = outcomes.remove(&message.id).unwrap_or(Outcome::Retry(None));
        let result = match outcome {
            Outcome::Ack => {
                acked.push(message.id);
                continue;
            }
            Outcome::Retry(_) if message.attempts > consumer.max_retries => {
                match &consumer.dead_letter_queue {
                    Some(dlq) => {
                        tracing::info!(
                            queue = consumer.queue,
                            "message {} moved to {dlq} after {} attempts",
                            message.id,
                            message.attempts
                        );
                        let moved = store.move_to(message.id, dlq.clone()).await;
                        queues.waker(dlq).notify_one();
                        moved
                    }
                    None => {
                        tracing::warn!(
                            queue = consumer.queue,
                            "message {} dropped after {} attempts (no dead_letter_queue)",
                            message.id,
                            message.attempts
                        );
                        acked.push(message.id);
                        continue;
                    }
                }
            }
            Outcome::Retry(delay) => {
                let delay = delay
                    .unwrap_or(consumer.retry_delay)
                    .min(super::MAX_DELAY_SECONDS);
                store.retry(message.id, delay).await
            }
        };
        if let Err(e) = result {
            tracing::warn!(
                queue = consumer.queue,
                "settling a message failed: {}",
                e.message
            );
        }
    }
    if !acked.is_empty()
        && let Err(e) = store.ack(acked).await
    {
        tracing::warn!(
            queue = consumer.queue,
            "acknowledging messages failed: {}",
            e.message
        );
    }
}

/// The batch as the guest reads it: JSON bodies as their text, text as is,
/// bytes base64-encoded.
pub fn batch_json(queue: &str, batch: &[Message]) -> Value {
    let messages: Vec<Value> = batch
        .iter()
        .map(|m| {
            let body = if m.content_type == "bytes" {
                base64::engine::general_purpose::STANDARD.encode(&m.body)
            } else {
                String::from_utf8_lossy(&m.body).into_owned()
            };
            json!({
                "id": m.id,
                "timestamp": m.timestamp_ms,
                "attempts": m.attempts,
                "contentType": m.content_type,
                "body": body,
            })
        })
        .collect();
    json!({"queue": queue, "messages": messages})
}

/// The guest's answer: `{"acks": [id…], "retries": [{"id", "delaySeconds"}…]}`.
pub fn outcomes_of(reply: &Value) -> HashMap<String, Outcome> {
    let mut outcomes = HashMap::new();
    for id in reply["acks"].as_array().into_iter().flatten() {
        if let Some(id) = id.as_str() {
            outcomes.insert(id.to_string(), Outcome::Ack);
        }
    }
    for retry in reply["retries"].as_array().into_iter().flatten() {
        if let Some(id) = retry["id"].as_str() {
            outcomes.insert(
                id.to_string(),
                Outcome::Retry(retry["delaySeconds"].as_u64()),
            );
        }
    }
    outcomes
}

/// Delivery to a worker on this server, found by name at each batch (so a
/// redeployed version gets the next one).
pub struct ToWorker {
    pub services: Arc<dyn Services>,
    pub worker: String,
}

impl Deliver for ToWorker {
    fn ready(&self) -> bool {
        self.services.worker(&self.worker).is_some()
    }

    fn deliver(
        &self,
        queue: &str,
        batch: &[Message],
    ) -> BoxFuture<'static, Result<HashMap<String, Outcome>, String>> {
        let worker = self.services.worker(&self.worker);
        let body = batch_json(queue, batch).to_string();
        Box::pin(async move {
            let worker = worker.ok_or("the consumer worker is not running")?;
            let response = worker.queue(body.into()).await;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the consumer's answer failed: {e:?}"))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                return Err(format!(
                    "the queue handler answered {status}: {}",
                    text.trim()
                ));
            }
            let reply: Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("the consumer's answer is not JSON: {e}"))?;
            if let Some(error) = reply["error"].as_str() {
                tracing::warn!("the queue handler raised: {error}");
            }
            Ok(outcomes_of(&reply))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::queues::NewMessage;
    use crate::queues::sqlite::SqliteQueueStore;
    use crate::store::Database;

    /// One delivered batch: its queue, bodies and attempts.
    type Seen = (String, Vec<String>, Vec<u64>);

    /// Records each batch and answers by `decide`.
    struct Recorder {
        seen: Mutex<Vec<Seen>>,
        decide: fn(&Message) -> Option<Outcome>,
    }

    impl Deliver for Recorder {
        fn deliver(
            &self,
            queue: &str,
            batch: &[Message],
        ) -> BoxFuture<'static, Result<HashMap<String, Outcome>, String>> {
            let bodies = batch
                .iter()
                .map(|m| String::from_utf8_lossy(&m.body).into_owned())
                .collect();
            let attempts = batch.iter().map(|m| m.attempts).collect();
            self.seen
                .lock()
                .unwrap()
                .push((queue.to_string(), bodies, attempts));
            let outcomes = batch
                .iter()
                .filter_map(|m| Some((m.id.clone(), (self.decide)(m)?)))
                .collect();
            Box::pin(async move { Ok(outcomes) })
        }
    }

    fn consumer(queue: &str) -> QueueConsumer {
        QueueConsumer {
            queue: queue.into(),
            max_batch_size: 3,
            max_batch_timeout_ms: 100,
            max_retries: 1,
            retry_delay: 0,
            dead_letter_queue: None,
            max_concurrency: 1,
        }
    }

    fn text(body: &str) -> NewMessage {
        NewMessage {
            body: body.to_string().into(),
            content_type: "text".into(),
            delay_seconds: 0,
        }
    }

    async fn setup() -> (tempfile::TempDir, Arc<Queues>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("q.sqlite")).unwrap();
        (dir, Queues::new(SqliteQueueStore::open(db).unwrap()))
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        for _ in 0..300 {
            if condition() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{what}: not within 3 s");
    }

    async fn until_empty(queues: &Queues) {
        for _ in 0..300 {
            if queues.store().stats().await.unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the queues still hold messages after 3 s");
    }

    #[tokio::test]
    async fn full_batches_go_at_once_and_the_rest_after_the_timeout() {
        let (_dir, queues) = setup().await;
        let recorder = Arc::new(Recorder {
            seen: Mutex::default(),
            decide: |_| Some(Outcome::Ack),
        });
        queues
            .send("q", ["1", "2", "3", "4"].map(text).to_vec())
            .await
            .unwrap();
        let consumers = start(&queues, &[consumer("q")], recorder.clone());
        until("two batches", || recorder.seen.lock().unwrap().len() == 2).await;
        let seen = recorder.seen.lock().unwrap().clone();
        assert_eq!(seen[0].1, ["1", "2", "3"]);
        assert_eq!(seen[1].1, ["4"]);
        until_empty(&queues).await;
        drop(consumers);
    }

    #[tokio::test]
    async fn a_message_retried_past_max_retries_moves_to_the_dead_letter_queue() {
        let (_dir, queues) = setup().await;
        // "bad" is always retried; anything else (and anything in the DLQ) acked.
        let recorder = Arc::new(Recorder {
            seen: Mutex::default(),
            decide: |m| (m.body != b"bad" || m.attempts > 5).then_some(Outcome::Ack),
        });
        let mut main = consumer("q");
        main.dead_letter_queue = Some("dlq".into());
        let consumers = start(&queues, &[main, consumer("dlq")], recorder.clone());
        queues
            .send("q", vec![text("bad"), text("good")])
            .await
            .unwrap();
        until("the dead letter", || {
            recorder
                .seen
                .lock()
                .unwrap()
                .iter()
                .any(|(q, _, _)| q == "dlq")
        })
        .await;
        let seen = recorder.seen.lock().unwrap().clone();
        assert_eq!(
            seen[0],
            ("q".into(), vec!["bad".into(), "good".into()], vec![1, 1])
        );
        // Retried once (max_retries 1), then given up on its second failure.
        assert_eq!(seen[1], ("q".into(), vec!["bad".into()], vec![2]));
        assert_eq!(seen[2], ("dlq".into(), vec!["bad".into()], vec![1]));
        assert_eq!(seen.len(), 3);
        drop(consumers);
    }

    #[tokio::test]
    async fn without_a_dead_letter_queue_a_spent_message_is_dropped() {
        let (_dir, queues) = setup().await;
        let recorder = Arc::new(Recorder {
            seen: Mutex::default(),
            decide: |_| None,
        });
        let consumers = start(&queues, &[consumer("q")], recorder.clone());
        queues.send("q", vec![text("x")]).await.unwrap();
        until("two deliveries", || {
            recorder.seen.lock().unwrap().len() == 2
        })
        .await;
        until_empty(&queues).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(recorder.seen.lock().unwrap().len(), 2, "no third delivery");
        drop(consumers);
    }

    #[test]
    fn the_guest_answer_maps_to_outcomes() {
        let reply = json!({"acks": ["a"], "retries": [{"id": "b", "delaySeconds": 5}, {"id": "c", "delaySeconds": null}], "error": null});
        let outcomes = outcomes_of(&reply);
        assert_eq!(outcomes["a"], Outcome::Ack);
        assert_eq!(outcomes["b"], Outcome::Retry(Some(5)));
        assert_eq!(outcomes["c"], Outcome::Retry(None));
    }
}
