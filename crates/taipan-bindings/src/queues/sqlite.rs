//! The queue store of a single node: one SQLite file in the state folder.

use std::sync::Arc;

use futures::future::BoxFuture;
use rusqlite::{OptionalExtension, params};

use super::{Backlog, Message, NewMessage, QueueStats, QueueStore};
use crate::alarms::now_ms;
use crate::protocol::BindingError;
use crate::store::Database;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    content_type TEXT NOT NULL,
    sent_ms INTEGER NOT NULL,
    visible_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    leased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, leased, visible_ms);";

pub struct SqliteQueueStore {
    db: Database,
}

impl SqliteQueueStore {
    /// Open the store as the process that delivers its messages: leases a
    /// previous process held (deliveries it never settled) are released, so
    /// those messages are delivered again.
    pub fn open(db: Database) -> anyhow::Result<Arc<Self>> {
        db.with_blocking(|conn| {
            conn.execute_batch(SCHEMA)?;
            conn.execute("UPDATE messages SET leased = 0 WHERE leased = 1", [])
        })?;
        Ok(Arc::new(Self { db }))
    }

    /// Open the store beside a server that may be delivering from it (the
    /// CLI): its leases stay.
    pub fn open_beside(db: Database) -> anyhow::Result<Arc<Self>> {
        db.with_blocking(|conn| conn.execute_batch(SCHEMA))?;
        Ok(Arc::new(Self { db }))
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl QueueStore for SqliteQueueStore {
    fn send(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, queue) = (self.db.clone(), queue.to_string());
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO messages (id, queue, body, content_type, sent_ms, visible_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    for m in messages {
                        let visible = now + (m.delay_seconds as i64) * 1000;
                        insert.execute(params![
                            new_id(),
                            queue,
                            &m.body[..],
                            m.content_type,
                            now,
                            visible
                        ])?;
                    }
                }
                tx.commit()
            })
            .await
        })
    }

    fn lease(
        &self,
        queue: &str,
        max: u64,
    ) -> BoxFuture<'static, Result<Vec<Message>, BindingError>> {
        let (db, queue) = (self.db.clone(), queue.to_string());
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                let tx = conn.transaction()?;
                let mut leased = Vec::new();
                {
                    let mut select = tx.prepare_cached(
                        "SELECT rowid, id, body, content_type, sent_ms, attempts FROM messages
                         WHERE queue = ?1 AND leased = 0 AND visible_ms <= ?2
                         ORDER BY visible_ms, rowid LIMIT ?3",
                    )?;
                    let rows = select.query_map(params![queue, now, max as i64], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            Message {
                                id: row.get(1)?,
                                body: row.get(2)?,
                                content_type: row.get(3)?,
                                timestamp_ms: row.get(4)?,
                                attempts: row.get::<_, i64>(5)? as u64 + 1,
                            },
                        ))
                    })?;
                    let mut update = tx.prepare_cached(
                        "UPDATE messages SET leased = 1, attempts = attempts + 1 WHERE rowid = ?1",
                    )?;
                    for row in rows {
                        let (rowid, message) = row?;
                        update.execute([rowid])?;
                        leased.push(message);
                    }
                }
                tx.commit()?;
                Ok(leased)
            })
            .await
        })
    }

    fn backlog(&self, queue: &str) -> BoxFuture<'static, Result<Backlog, BindingError>> {
        let (db, queue) = (self.db.clone(), queue.to_string());
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                let (ready, oldest): (i64, Option<i64>) = conn.query_row(
                    "SELECT count(*), min(visible_ms) FROM messages
                     WHERE queue = ?1 AND leased = 0 AND visible_ms <= ?2",
                    params![queue, now],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )?;
                let next: Option<i64> = conn
                    .query_row(
                        "SELECT min(visible_ms) FROM messages
                         WHERE queue = ?1 AND leased = 0 AND visible_ms > ?2",
                        params![queue, now],
                        |row| row.get(0),
                    )
                    .optional()?
                    .flatten();
                Ok(Backlog {
                    ready: ready as u64,
                    oldest_ready_ms: oldest.map_or(0, |o| now - o),
                    next_visible_ms: next,
                })
            })
            .await
        })
    }

    fn ack(&self, ids: Vec<String>) -> BoxFuture<'static, Result<(), BindingError>> {
        let db = self.db.clone();
        Box::pin(async move {
            db.with(move |conn| {
                let tx = conn.transaction()?;
                {
                    let mut delete = tx.prepare_cached("DELETE FROM messages WHERE id = ?1")?;
                    for id in ids {
                        delete.execute([id])?;
                    }
                }
                tx.commit()
            })
            .await
        })
    }

    fn retry(
        &self,
        id: String,
        delay_seconds: u64,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let visible = now_ms() + delay_seconds as i64 * 1000;
            db.with(move |conn| {
                conn.execute(
                    "UPDATE messages SET leased = 0, visible_ms = ?2 WHERE id = ?1",
                    params![id, visible],
                )
                .map(drop)
            })
            .await
        })
    }

    fn move_to(&self, id: String, queue: String) -> BoxFuture<'static, Result<(), BindingError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                conn.execute(
                    "UPDATE messages SET id = ?2, queue = ?3, leased = 0, attempts = 0, visible_ms = ?4
                     WHERE id = ?1",
                    params![id, new_id(), queue, now],
                )
                .map(drop)
            })
            .await
        })
    }

    fn stats(&self) -> BoxFuture<'static, Result<Vec<QueueStats>, BindingError>> {
        let db = self.db.clone();
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT queue,
                            sum(leased = 0 AND visible_ms <= ?1),
                            sum(leased = 0 AND visible_ms > ?1),
                            sum(leased = 1)
                     FROM messages GROUP BY queue ORDER BY queue",
                )?;
                let rows = stmt.query_map([now], |row| {
                    Ok(QueueStats {
                        queue: row.get(0)?,
                        ready: row.get::<_, i64>(1)? as u64,
                        delayed: row.get::<_, i64>(2)? as u64,
                        in_flight: row.get::<_, i64>(3)? as u64,
                    })
                })?;
                rows.collect()
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<SqliteQueueStore>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("queues.sqlite")).unwrap();
        (dir, SqliteQueueStore::open(db).unwrap())
    }

    fn message(body: &str, delay_seconds: u64) -> NewMessage {
        NewMessage {
            body: body.to_string().into(),
            content_type: "text".into(),
            delay_seconds,
        }
    }

    #[tokio::test]
    async fn messages_are_leased_once_in_order_and_counted() {
        let (_dir, store) = store();
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
        assert!(backlog.next_visible_ms.is_some());
        let first = store.lease("q", 1).await.unwrap();
        assert_eq!(
            (first[0].body.as_slice(), first[0].attempts),
            (&b"a"[..], 1)
        );
        let rest = store.lease("q", 10).await.unwrap();
        assert_eq!(rest.len(), 1, "the delayed message is not visible yet");
        assert_eq!(rest[0].body, b"b");
        assert!(
            store.lease("q", 10).await.unwrap().is_empty(),
            "leased messages are not leased twice"
        );

        store.retry(first[0].id.clone(), 0).await.unwrap();
        store.ack(vec![rest[0].id.clone()]).await.unwrap();
        let again = store.lease("q", 10).await.unwrap();
        assert_eq!(
            (again[0].id.as_str(), again[0].attempts),
            (first[0].id.as_str(), 2)
        );
        let stats = store.stats().await.unwrap();
        assert_eq!(
            stats,
            [
                QueueStats {
                    queue: "other".into(),
                    ready: 1,
                    delayed: 0,
                    in_flight: 0
                },
                QueueStats {
                    queue: "q".into(),
                    ready: 0,
                    delayed: 1,
                    in_flight: 1
                },
            ]
        );
    }

    #[tokio::test]
    async fn a_restart_releases_unsettled_leases_and_keeps_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queues.sqlite");
        {
            let store = SqliteQueueStore::open(Database::open(&path).unwrap()).unwrap();
            store.send("q", vec![message("a", 0)]).await.unwrap();
            assert_eq!(store.lease("q", 10).await.unwrap().len(), 1);
        }
        let store = SqliteQueueStore::open(Database::open(&path).unwrap()).unwrap();
        let again = store.lease("q", 10).await.unwrap();
        assert_eq!(
            (again[0].body.as_slice(), again[0].attempts),
            (&b"a"[..], 2)
        );
    }

    #[tokio::test]
    async fn a_moved_message_starts_over_in_its_new_queue() {
        let (_dir, store) = store();
        store.send("q", vec![message("a", 0)]).await.unwrap();
        let leased = store.lease("q", 1).await.unwrap();
        store
            .move_to(leased[0].id.clone(), "dlq".into())
            .await
            .unwrap();
        assert!(store.lease("q", 10).await.unwrap().is_empty());
        let moved = store.lease("dlq", 10).await.unwrap();
        assert_eq!(
            (moved[0].body.as_slice(), moved[0].attempts),
            (&b"a"[..], 1)
        );
        assert_ne!(moved[0].id, leased[0].id);
    }
}
