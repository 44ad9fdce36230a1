//! Cluster mode's queue store: every queue's messages in the cluster
//! database's `queue_messages` table (`taipan_cluster::migrations`,
//! version 3), so a message sent through any node is delivered by any node.
//!
//! The semantics are the SQLite store's ([`super::sqlite`]): visible once
//! its delay is over; leased oldest first, an attempt counted per lease;
//! acked (deleted), retried (visible again after a delay) or moved to
//! another queue as a new message. What several nodes change:
//!
//! - Every node runs the consumer loop of every consumer worker, so a
//!   lease takes its rows `FOR UPDATE SKIP LOCKED`: nodes leasing from one
//!   queue at once get disjoint batches, never the same message.
//! - A lease belongs to the process that took it (one owner id per store)
//!   and lasts while that process lives, as in SQLite: the store renews its
//!   leases every third of [`LEASE`]. A node that dies stops renewing, and
//!   its unsettled messages are ready again [`LEASE`] after the last renewal,
//!   to be delivered again with their attempt counted. (The SQLite store
//!   releases them when its one process restarts; here a restarting node
//!   cannot tell its old leases from another node's deliveries under way.)
//!   Leasing pushes `visible_ms` to when the lease lapses, so "ready" is
//!   just `visible_ms` passed, and `lease_owner` tells in flight from delayed.
//! - Retrying or moving a message applies only while this store still holds
//!   it: once its lease lapsed and another node leased it, that delivery
//!   decides. An ack deletes the message whoever holds it: it was processed.
//! - Times come from the database's clock, the one clock every node shares
//!   (ms since the epoch, as in SQLite); the next visible time a backlog
//!   reports is turned into this node's clock.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use taipan_cluster::Db;
use tokio::task::AbortHandle;

use super::{Backlog, Message, NewMessage, QueueStats, QueueStore};
use crate::alarms::now_ms;
use crate::protocol::BindingError;

/// How long a lease lasts without being renewed: how soon the messages a
/// dead node had leased are delivered again.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often a consumer looks at its queue: how late, at most, it finds a
/// message sent through another node (one sent through this node wakes it
/// at once).
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Now, by the database's clock, in ms since the epoch (`now()`: the same
/// instant throughout a statement).
macro_rules! now_ms {
    () => {
        "(extract(epoch FROM now()) * 1000)::bigint"
    };
}

const SEND: &str = concat!(
    "INSERT INTO queue_messages (id, queue, body, content_type, sent_ms, visible_ms)
     SELECT m.id, $1, m.body, m.content_type, ",
    now_ms!(),
    ", ",
    now_ms!(),
    " + m.delay_ms
     FROM unnest($2::text[], $3::bytea[], $4::text[], $5::bigint[])
          WITH ORDINALITY AS m(id, body, content_type, delay_ms, n)
     ORDER BY m.n"
);

/// Lease up to `$2` ready messages of queue `$1` for owner `$3`, for `$4`
/// ms; rows another lease is taking are skipped, not waited for. Answers
/// each message with when it became visible and its `seq`, to order the
/// batch by (`RETURNING` keeps no order).
const LEASE_SQL: &str = concat!(
    "WITH picked AS (
        SELECT seq, visible_ms FROM queue_messages
        WHERE queue = $1 AND visible_ms <= ",
    now_ms!(),
    "
        ORDER BY visible_ms, seq
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    )
    UPDATE queue_messages m
    SET lease_owner = $3, visible_ms = ",
    now_ms!(),
    " + $4, attempts = m.attempts + 1
    FROM picked WHERE m.seq = picked.seq
    RETURNING m.id, m.body, m.content_type, m.sent_ms, m.attempts, picked.visible_ms, m.seq"
);

const BACKLOG: &str = concat!(
    "WITH t AS (SELECT ",
    now_ms!(),
    " AS now)
    SELECT t.now,
           count(m.seq) FILTER (WHERE m.visible_ms <= t.now),
           min(m.visible_ms) FILTER (WHERE m.visible_ms <= t.now),
           min(m.visible_ms) FILTER (WHERE m.visible_ms > t.now AND m.lease_owner IS NULL)
    FROM t LEFT JOIN queue_messages m ON m.queue = $1
    GROUP BY t.now"
);

const RENEW: &str = concat!(
    "UPDATE queue_messages SET visible_ms = ",
    now_ms!(),
    " + $2 WHERE lease_owner = $1"
);

const RETRY: &str = concat!(
    "UPDATE queue_messages SET lease_owner = NULL, visible_ms = ",
    now_ms!(),
    " + $2 WHERE id = $1 AND lease_owner = $3"
);

const MOVE: &str = concat!(
    "UPDATE queue_messages
     SET id = $2, queue = $3, lease_owner = NULL, attempts = 0, visible_ms = ",
    now_ms!(),
    " WHERE id = $1 AND lease_owner = $4"
);

const STATS: &str = concat!(
    "WITH t AS (SELECT ",
    now_ms!(),
    " AS now)
    SELECT m.queue,
           count(*) FILTER (WHERE m.visible_ms <= t.now),
           count(*) FILTER (WHERE m.visible_ms > t.now AND m.lease_owner IS NULL),
           count(*) FILTER (WHERE m.visible_ms > t.now AND m.lease_owner IS NOT NULL)
    FROM queue_messages m CROSS JOIN t
    GROUP BY m.queue ORDER BY m.queue"
);

pub struct PostgresQueueStore {
    db: Db,
    /// Whose leases this store's are (one id per process and store).
    owner: Arc<str>,
    lease: Duration,
    /// The task renewing this store's leases, started by its first lease;
    /// stopped when the store is dropped.
    renewer: Arc<OnceLock<AbortHandle>>,
}

impl PostgresQueueStore {
    /// The queues of the cluster whose database is `db` (migrated).
    pub fn new(db: Db) -> Arc<Self> {
        Self::with_lease(db, LEASE)
    }

    fn with_lease(db: Db, lease: Duration) -> Arc<Self> {
        Arc::new(Self {
            db,
            owner: new_id().into(),
            lease,
            renewer: Arc::default(),
        })
    }
}

impl Drop for PostgresQueueStore {
    fn drop(&mut self) {
        if let Some(renewer) = self.renewer.get() {
            renewer.abort();
        }
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Seconds as ms, bounded so adding them to now stays far from overflow.
fn delay_ms(seconds: u64) -> i64 {
    seconds.min(u64::from(u32::MAX)) as i64 * 1000
}

/// A failed operation as the worker (or the log) reads it.
fn failed<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> BindingError {
    move |e| BindingError::error(format!("Queue {op} failed: the cluster database: {e}"))
}

/// Start renewing `owner`'s leases, once per store (from its first lease:
/// in a future, so surely on a runtime). The task ends with the store.
fn start_renewing(
    renewer: &Weak<OnceLock<AbortHandle>>,
    db: &Db,
    owner: &Arc<str>,
    lease: Duration,
) {
    let Some(cell) = renewer.upgrade() else {
        return;
    };
    cell.get_or_init(|| {
        let (db, owner, alive) = (db.clone(), owner.clone(), renewer.clone());
        let lease_ms = millis(lease);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(lease / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                if alive.strong_count() == 0 {
                    return;
                }
                let renewed = async {
                    let client = db.client().await.map_err(|e| e.to_string())?;
                    client
                        .execute(RENEW, &[&&*owner, &lease_ms])
                        .await
                        .map_err(|e| e.to_string())
                };
                if let Err(e) = renewed.await {
                    tracing::warn!(
                        "renewing queue message leases failed (they lapse {} s after the last \
                         renewal, then the messages are delivered again): {e}",
                        lease.as_secs()
                    );
                }
            }
        })
        .abort_handle()
    });
}

impl QueueStore for PostgresQueueStore {
    fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, queue) = (self.db.clone(), queue.to_string());
        Box::pin(async move {
            if messages.is_empty() {
                return Ok(());
            }
            let ids: Vec<String> = messages.iter().map(|_| new_id()).collect();
            let bodies: Vec<&[u8]> = messages.iter().map(|m| &m.body[..]).collect();
            let types: Vec<&str> = messages.iter().map(|m| m.content_type.as_str()).collect();
            let delays: Vec<i64> = messages.iter().map(|m| delay_ms(m.delay_seconds)).collect();
            let client = db.client().await.map_err(failed("send"))?;
            let statement = client.prepare_cached(SEND).await.map_err(failed("send"))?;
            client
                .execute(&statement, &[&queue, &ids, &bodies, &types, &delays])
                .await
                .map_err(failed("send"))?;
            Ok(())
        })
    }

    fn lease(
        &self,
        queue: &str,
        max: u64,
    ) -> BoxFuture<'static, Result<Vec<Message>, BindingError>> {
        let (db, queue, owner) = (self.db.clone(), queue.to_string(), self.owner.clone());
        let (renewer, lease) = (Arc::downgrade(&self.renewer), self.lease);
        Box::pin(async move {
            start_renewing(&renewer, &db, &owner, lease);
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            let client = db.client().await.map_err(failed("lease"))?;
            let statement = client
                .prepare_cached(LEASE_SQL)
                .await
                .map_err(failed("lease"))?;
            let rows = client
                .query(&statement, &[&queue, &max, &&*owner, &millis(lease)])
                .await
                .map_err(failed("lease"))?;
            let mut leased: Vec<(i64, i64, Message)> = rows
                .iter()
                .map(|row| {
                    let message = Message {
                        id: row.get(0),
                        body: row.get(1),
                        content_type: row.get(2),
                        timestamp_ms: row.get(3),
                        attempts: row.get::<_, i64>(4) as u64,
                    };
                    (row.get(5), row.get(6), message)
                })
                .collect();
            leased.sort_by_key(|(visible, seq, _)| (*visible, *seq));
            Ok(leased.into_iter().map(|(_, _, m)| m).collect())
        })
    }

    fn backlog(&self, queue: &str) -> BoxFuture<'static, Result<Backlog, BindingError>> {
        let (db, queue) = (self.db.clone(), queue.to_string());
        Box::pin(async move {
            let client = db.client().await.map_err(failed("read"))?;
            let statement = client
                .prepare_cached(BACKLOG)
                .await
                .map_err(failed("read"))?;
            let row = client
                .query_one(&statement, &[&queue])
                .await
                .map_err(failed("read"))?;
            let (now, ready): (i64, i64) = (row.get(0), row.get(1));
            let (oldest, next): (Option<i64>, Option<i64>) = (row.get(2), row.get(3));
            Ok(Backlog {
                ready: ready as u64,
                oldest_ready_ms: oldest.map_or(0, |o| now - o),
                // The consumer sleeps until then by this node's clock.
                next_visible_ms: next.map(|next| now_ms() + (next - now)),
            })
        })
    }

    fn ack(&self, ids: Vec<String>) -> BoxFuture<'static, Result<(), BindingError>> {
        let db = self.db.clone();
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let client = db.client().await.map_err(failed("ack"))?;
            client
                .execute("DELETE FROM queue_messages WHERE id = ANY($1)", &[&ids])
                .await
                .map_err(failed("ack"))?;
            Ok(())
        })
    }

    fn retry(
        &self,
        id: String,
        delay_seconds: u64,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, owner) = (self.db.clone(), self.owner.clone());
        Box::pin(async move {
            let client = db.client().await.map_err(failed("retry"))?;
            client
                .execute(RETRY, &[&id, &delay_ms(delay_seconds), &&*owner])
                .await
                .map_err(failed("retry"))?;
            Ok(())
        })
    }

    fn move_to(&self, id: String, queue: String) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, owner) = (self.db.clone(), self.owner.clone());
        Box::pin(async move {
            let client = db.client().await.map_err(failed("move"))?;
            client
                .execute(MOVE, &[&id, &new_id(), &queue, &&*owner])
                .await
                .map_err(failed("move"))?;
            Ok(())
        })
    }

    fn stats(&self) -> BoxFuture<'static, Result<Vec<QueueStats>, BindingError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let client = db.client().await.map_err(failed("stats"))?;
            let rows = client.query(STATS, &[]).await.map_err(failed("stats"))?;
            Ok(rows
                .iter()
                .map(|row| QueueStats {
                    queue: row.get(0),
                    ready: row.get::<_, i64>(1) as u64,
                    delayed: row.get::<_, i64>(2) as u64,
                    in_flight: row.get::<_, i64>(3) as u64,
                })
                .collect())
        })
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::sync::Mutex;

    use taipan_cluster::testing::TestDatabase;

    use super::*;
    use crate::queues::Outcome;
    use crate::queues::consumer::{self, Deliver};
    use crate::queues::sqlite::SqliteQueueStore;
    use crate::store::Database;

    fn message(body: &str, delay_seconds: u64) -> NewMessage {
        NewMessage {
            body: body.to_string().into(),
            content_type: "text".into(),
            delay_seconds,
        }
    }

    fn stats(queue: &str, ready: u64, delayed: u64, in_flight: u64) -> QueueStats {
        QueueStats {
            queue: queue.into(),
            ready,
            delayed,
            in_flight,
        }
    }

    /// What every queue store does, whichever its backend.
    async fn behaves_as_a_queue_store(store: Arc<dyn QueueStore>) {
        assert_eq!(store.backlog("q").await.unwrap(), Backlog::default());
        assert!(store.stats().await.unwrap().is_empty());
        let before = now_ms();
        store
            .send(
                "q",
                vec![message("a", 0), message("b", 0), message("later", 60)],
            )
            .await
            .unwrap();
        store.send("other", vec![message("x", 0)]).await.unwrap();
        let backlog = store.backlog("q").await.unwrap();
        assert_eq!(backlog.ready, 2);
        assert!(backlog.oldest_ready_ms >= 0);
        let next = backlog.next_visible_ms.expect("the delayed message");
        assert!(
            (before + 55_000..before + 65_000).contains(&next),
            "{next} is about a minute after {before}"
        );

        let first = store.lease("q", 1).await.unwrap();
        assert_eq!(
            (first[0].body.as_slice(), first[0].attempts),
            (&b"a"[..], 1)
        );
        assert_eq!(first[0].content_type, "text");
        assert!(
            (first[0].timestamp_ms - before).abs() < 5_000,
            "sent about now"
        );
        let rest = store.lease("q", 10).await.unwrap();
        assert_eq!(rest.len(), 1, "the delayed message is not visible yet");
        assert_eq!(rest[0].body, b"b");
        assert!(
            store.lease("q", 10).await.unwrap().is_empty(),
            "leased messages are not leased twice"
        );
        assert_eq!(store.backlog("q").await.unwrap().ready, 0);

        store.retry(first[0].id.clone(), 0).await.unwrap();
        store.ack(vec![rest[0].id.clone()]).await.unwrap();
        let again = store.lease("q", 10).await.unwrap();
        assert_eq!(
            (again[0].id.as_str(), again[0].attempts),
            (first[0].id.as_str(), 2)
        );
        assert_eq!(
            store.stats().await.unwrap(),
            [stats("other", 1, 0, 0), stats("q", 0, 1, 1)]
        );

        // A retry with a delay: not visible until it is over.
        store.retry(again[0].id.clone(), 60).await.unwrap();
        assert!(store.lease("q", 10).await.unwrap().is_empty());
        assert_eq!(
            store.stats().await.unwrap(),
            [stats("other", 1, 0, 0), stats("q", 0, 2, 0)]
        );

        // A moved message starts over in its new queue, under a new id.
        let x = store.lease("other", 10).await.unwrap();
        store.move_to(x[0].id.clone(), "dlq".into()).await.unwrap();
        assert!(store.lease("other", 10).await.unwrap().is_empty());
        let moved = store.lease("dlq", 10).await.unwrap();
        assert_eq!(
            (moved[0].body.as_slice(), moved[0].attempts),
            (&b"x"[..], 1)
        );
        assert_ne!(moved[0].id, x[0].id);
        store.ack(vec![moved[0].id.clone()]).await.unwrap();
        assert_eq!(store.stats().await.unwrap(), [stats("q", 0, 2, 0)]);

        // Bodies are bytes; a batch comes oldest first.
        let bytes = NewMessage {
            body: vec![0u8, 255, 10].into(),
            content_type: "bytes".into(),
            delay_seconds: 0,
        };
        let many: Vec<NewMessage> = (0..5).map(|i| message(&i.to_string(), 0)).collect();
        store.send("b", vec![bytes]).await.unwrap();
        store.send("b", many).await.unwrap();
        let batch = store.lease("b", 3).await.unwrap();
        let bodies: Vec<&[u8]> = batch.iter().map(|m| m.body.as_slice()).collect();
        assert_eq!(bodies, [&[0u8, 255, 10][..], b"0", b"1"]);
        assert_eq!(batch[0].content_type, "bytes");
        assert_eq!(store.lease("b", 10).await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn the_sqlite_store_behaves_as_a_queue_store() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("queues.sqlite")).unwrap();
        behaves_as_a_queue_store(SqliteQueueStore::open(db).unwrap()).await;
    }

    #[tokio::test]
    async fn the_postgres_store_behaves_as_a_queue_store() {
        let database = TestDatabase::create().await;
        behaves_as_a_queue_store(PostgresQueueStore::new(database.connect().await)).await;
    }

    /// A node's leases last while it lives (renewed past the lease time);
    /// once it is gone they lapse, and another node delivers its messages
    /// again, the attempt counted.
    #[tokio::test]
    async fn a_dead_nodes_leases_lapse_and_another_node_delivers_again() {
        let database = TestDatabase::create().await;
        let lease = Duration::from_secs(1);
        let a = PostgresQueueStore::with_lease(database.connect().await, lease);
        let b = PostgresQueueStore::with_lease(database.connect().await, lease);
        a.send("q", vec![message("m", 0)]).await.unwrap();
        let leased = a.lease("q", 10).await.unwrap();
        assert_eq!(leased.len(), 1);

        tokio::time::sleep(lease * 2).await;
        assert!(
            b.lease("q", 10).await.unwrap().is_empty(),
            "a live node's lease is renewed"
        );
        assert_eq!(b.stats().await.unwrap(), [stats("q", 0, 0, 1)]);

        drop(a);
        tokio::time::sleep(lease * 2).await;
        assert_eq!(b.stats().await.unwrap(), [stats("q", 1, 0, 0)]);
        assert_eq!(b.backlog("q").await.unwrap().ready, 1);
        let again = b.lease("q", 10).await.unwrap();
        assert_eq!(
            (again[0].id.as_str(), again[0].attempts),
            (leased[0].id.as_str(), 2)
        );
    }

    /// A node whose lease lapsed (it stalled) and was taken over leaves the
    /// new delivery alone: its retry and move change nothing.
    #[tokio::test]
    async fn a_stale_node_cannot_settle_a_message_another_node_holds() {
        let database = TestDatabase::create().await;
        let lease = Duration::from_secs(1);
        let a = PostgresQueueStore::with_lease(database.connect().await, lease);
        let b = PostgresQueueStore::with_lease(database.connect().await, lease);
        a.send("q", vec![message("m", 0)]).await.unwrap();
        let stale = a.lease("q", 10).await.unwrap();
        a.renewer.get().expect("renewing").abort();
        tokio::time::sleep(lease + Duration::from_millis(300)).await;
        let held = b.lease("q", 10).await.unwrap();
        assert_eq!(held[0].id, stale[0].id);

        a.retry(stale[0].id.clone(), 0).await.unwrap();
        a.move_to(stale[0].id.clone(), "dlq".into()).await.unwrap();
        assert_eq!(b.stats().await.unwrap(), [stats("q", 0, 0, 1)]);
        b.retry(held[0].id.clone(), 0).await.unwrap();
        assert_eq!(b.stats().await.unwrap(), [stats("q", 1, 0, 0)]);
    }

    /// Two nodes leasing from one queue at once never get the same message,
    /// and between them get every message once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn nodes_leasing_at_once_never_share_a_message() {
        const MESSAGES: usize = 600;
        let database = TestDatabase::create().await;
        let nodes = [
            PostgresQueueStore::new(database.connect().await),
            PostgresQueueStore::new(database.connect().await),
        ];
        for chunk in 0..MESSAGES / 100 {
            let batch = (0..100)
                .map(|i| message(&(chunk * 100 + i).to_string(), 0))
                .collect();
            nodes[0].send("q", batch).await.unwrap();
        }
        let mut leasers = Vec::new();
        for (n, node) in nodes.iter().enumerate() {
            // Several concurrent deliveries per node, as max_concurrency allows.
            for _ in 0..4 {
                let node = node.clone();
                leasers.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        let batch = node.lease("q", 7).await.unwrap();
                        if batch.is_empty() && node.backlog("q").await.unwrap().ready == 0 {
                            return (n, got);
                        }
                        got.extend(batch);
                    }
                }));
            }
        }
        let mut seen = HashSet::new();
        let mut per_node = [0; 2];
        for leaser in leasers {
            let (n, got) = leaser.await.unwrap();
            per_node[n] += got.len();
            for m in got {
                assert_eq!(m.attempts, 1, "{} leased before", m.id);
                assert!(seen.insert(m.id.clone()), "{} leased twice", m.id);
            }
        }
        assert_eq!(seen.len(), MESSAGES, "every message leased");
        assert!(
            per_node.iter().all(|&n| n > 0),
            "both nodes leased: {per_node:?}"
        );
        assert_eq!(nodes[1].stats().await.unwrap(), [stats("q", 0, 0, 600)]);
    }

    /// Records the bodies it is given, and acks them.
    #[derive(Default)]
    struct Acker {
        seen: Mutex<Vec<String>>,
    }

    impl Deliver for Acker {
        fn deliver(
            &self,
            _queue: &str,
            batch: &[Message],
        ) -> BoxFuture<'static, Result<HashMap<String, Outcome>, String>> {
            let mut seen = self.seen.lock().unwrap();
            seen.extend(
                batch
                    .iter()
                    .map(|m| String::from_utf8_lossy(&m.body).into_owned()),
            );
            let outcomes = batch.iter().map(|m| (m.id.clone(), Outcome::Ack)).collect();
            Box::pin(async move { Ok(outcomes) })
        }
    }

    /// A message sent through one node reaches the consumer loop of another,
    /// which no send wakes, within its poll interval.
    #[tokio::test]
    async fn a_consumer_finds_what_another_node_sent_by_polling() {
        let database = TestDatabase::create().await;
        let sender = crate::queues::Queues::new(PostgresQueueStore::new(database.connect().await));
        let receiver =
            crate::queues::Queues::new(PostgresQueueStore::new(database.connect().await));
        let config = taipan_config::queues::QueueConsumer {
            queue: "q".into(),
            max_batch_size: 10,
            max_batch_timeout_ms: 0,
            max_retries: 3,
            retry_delay: 0,
            dead_letter_queue: None,
            max_concurrency: 1,
        };
        let acker = Arc::new(Acker::default());
        let consumers = consumer::start(&receiver, &[config], acker.clone());
        // The loop has looked once and sleeps now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = std::time::Instant::now();
        sender.send("q", vec![message("hi", 0)]).await.unwrap();
        while acker.seen.lock().unwrap().is_empty() {
            assert!(
                sent.elapsed() < POLL_INTERVAL + Duration::from_secs(2),
                "not delivered within the poll interval"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*acker.seen.lock().unwrap(), ["hi"]);
        for _ in 0..100 {
            if sender.store().stats().await.unwrap().is_empty() {
                drop(consumers);
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the message was not acked");
    }
}
