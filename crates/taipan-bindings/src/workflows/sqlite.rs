//! The workflow store of a single node: one SQLite file in the state
//! folder. A lease is a flag held for as long as the process lives: the
//! next process to open the file releases them all (those runs are
//! replayed).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use super::store::{Control, RunEnd, RunState, WorkflowStore, status_json};
use crate::alarms::now_ms;
use crate::protocol::BindingError;
use crate::store::Database;

/// How often an engine looks without being woken: only this process writes
/// the file (and wakes the engine when it does), so the look is a safety
/// net, as for a clock change.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    workflow TEXT NOT NULL,
    id TEXT NOT NULL,
    params TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT,
    wake_ms INTEGER,
    leased INTEGER NOT NULL DEFAULT 0,
    -- Bumped by a restart: a run of an older generation may store nothing.
    generation INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workflow, id)
);
CREATE INDEX IF NOT EXISTS instances_due ON instances (workflow, leased, wake_ms);
CREATE TABLE IF NOT EXISTS steps (
    workflow TEXT NOT NULL,
    id TEXT NOT NULL,
    name TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (workflow, id, name)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    consumed INTEGER NOT NULL DEFAULT 0
);";

pub struct SqliteWorkflowStore {
    db: Database,
}

impl SqliteWorkflowStore {
    /// Open as the process that runs the instances: leases a dead process
    /// held are released (those runs are replayed).
    pub fn open(db: Database) -> anyhow::Result<Arc<Self>> {
        db.with_blocking(|conn| {
            conn.execute_batch(SCHEMA)?;
            conn.execute("UPDATE instances SET leased = 0 WHERE leased = 1", [])
        })?;
        Ok(Arc::new(Self { db }))
    }
}

impl WorkflowStore for SqliteWorkflowStore {
    fn create(
        &self,
        workflow: &str,
        id: &str,
        params: Value,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, workflow, id) = (self.db.clone(), workflow.to_string(), id.to_string());
        Box::pin(async move {
            let now = now_ms();
            let created = db
                .with(move |conn| {
                    conn.execute(
                        "INSERT OR IGNORE INTO instances (workflow, id, params, created_ms, status, wake_ms)
                         VALUES (?1, ?2, ?3, ?4, 'queued', ?4)",
                        params![workflow, id, params.to_string(), now],
                    )
                })
                .await?;
            if created == 0 {
                return Err(BindingError::error(
                    "an instance with this id already exists",
                ));
            }
            Ok(())
        })
    }

    fn status(
        &self,
        workflow: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<Option<Value>, BindingError>> {
        let (db, workflow, id) = (self.db.clone(), workflow.to_string(), id.to_string());
        Box::pin(async move {
            db.with(move |conn| {
                conn.query_row(
                    "SELECT status, output, error, leased FROM instances WHERE workflow = ?1 AND id = ?2",
                    params![workflow, id],
                    |row| Ok(status_json(row.get(0)?, row.get(3)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
            })
            .await
        })
    }

    fn control(
        &self,
        workflow: &str,
        id: &str,
        control: Control,
    ) -> BoxFuture<'static, Result<bool, BindingError>> {
        let (db, workflow, id) = (self.db.clone(), workflow.to_string(), id.to_string());
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                let tx = conn.transaction()?;
                let changed = match control {
                    // Finished instances stay as they are.
                    Control::Pause => tx.execute(
                        "UPDATE instances SET status = 'paused'
                         WHERE workflow = ?1 AND id = ?2 AND status IN ('queued', 'running', 'waiting')",
                        params![workflow, id],
                    )?,
                    Control::Resume => tx.execute(
                        "UPDATE instances SET status = 'running', wake_ms = ?3
                         WHERE workflow = ?1 AND id = ?2 AND status = 'paused'",
                        params![workflow, id, now],
                    )?,
                    Control::Terminate => tx.execute(
                        "UPDATE instances SET status = 'terminated', wake_ms = NULL
                         WHERE workflow = ?1 AND id = ?2 AND status NOT IN ('complete', 'errored')",
                        params![workflow, id],
                    )?,
                    Control::Restart => {
                        tx.execute("DELETE FROM steps WHERE workflow = ?1 AND id = ?2", params![workflow, id])?;
                        tx.execute("DELETE FROM events WHERE workflow = ?1 AND id = ?2", params![workflow, id])?;
                        // A run in flight belongs to the old generation: it
                        // may store nothing more, and the new one may start.
                        tx.execute(
                            "UPDATE instances SET status = 'queued', output = NULL, error = NULL, wake_ms = ?3,
                                    leased = 0, generation = generation + 1
                             WHERE workflow = ?1 AND id = ?2",
                            params![workflow, id, now],
                        )?
                    }
                };
                let exists: bool = tx
                    .query_row(
                        "SELECT 1 FROM instances WHERE workflow = ?1 AND id = ?2",
                        params![workflow, id],
                        |_| Ok(true),
                    )
                    .optional()?
                    .unwrap_or(false);
                tx.commit()?;
                let _ = changed;
                Ok(exists)
            })
            .await
        })
    }

    fn send_event(
        &self,
        workflow: &str,
        id: &str,
        kind: &str,
        payload: Value,
    ) -> BoxFuture<'static, Result<bool, BindingError>> {
        let (db, workflow, id, kind) = (
            self.db.clone(),
            workflow.to_string(),
            id.to_string(),
            kind.to_string(),
        );
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                let tx = conn.transaction()?;
                let exists = tx.execute(
                    "UPDATE instances SET wake_ms = ?3 WHERE workflow = ?1 AND id = ?2 AND status = 'waiting'",
                    params![workflow, id, now],
                )? > 0
                    || tx
                        .query_row(
                            "SELECT 1 FROM instances WHERE workflow = ?1 AND id = ?2",
                            params![workflow, id],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_some();
                if exists {
                    tx.execute(
                        "INSERT INTO events (workflow, id, type, payload) VALUES (?1, ?2, ?3, ?4)",
                        params![workflow, id, kind, payload.to_string()],
                    )?;
                }
                tx.commit()?;
                Ok(exists)
            })
            .await
        })
    }

    fn lease_due(
        &self,
        workflow: &str,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<RunState>, BindingError>> {
        let (db, workflow) = (self.db.clone(), workflow.to_string());
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                let tx = conn.transaction()?;
                let due: Vec<(String, String, i64, i64)> = tx
                    .prepare(
                        "SELECT id, params, created_ms, generation FROM instances
                         WHERE workflow = ?1 AND leased = 0 AND wake_ms <= ?2
                           AND status IN ('queued', 'running', 'waiting')
                         ORDER BY wake_ms LIMIT ?3",
                    )?
                    .query_map(params![workflow, now, max as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                let mut states = Vec::new();
                for (id, params, created_ms, generation) in due {
                    tx.execute(
                        "UPDATE instances SET leased = 1, status = 'running' WHERE workflow = ?1 AND id = ?2",
                        params![workflow, id],
                    )?;
                    let steps = tx
                        .prepare("SELECT name, record FROM steps WHERE workflow = ?1 AND id = ?2")?
                        .query_map(params![workflow, id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
                        .collect::<rusqlite::Result<Vec<_>>>()?
                        .into_iter()
                        .map(|(name, record)| (name, serde_json::from_str(&record).unwrap_or(Value::Null)))
                        .collect();
                    let events = tx
                        .prepare(
                            "SELECT seq, type, payload FROM events
                             WHERE workflow = ?1 AND id = ?2 AND consumed = 0 ORDER BY seq",
                        )?
                        .query_map(params![workflow, id], |r| {
                            let payload: String = r.get(2)?;
                            Ok(json!({
                                "seq": r.get::<_, i64>(0)?,
                                "type": r.get::<_, String>(1)?,
                                "payload": serde_json::from_str::<Value>(&payload).unwrap_or(Value::Null),
                            }))
                        })?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    states.push(RunState {
                        id,
                        generation,
                        params: serde_json::from_str(&params).unwrap_or(Value::Null),
                        created_ms,
                        steps,
                        events,
                    });
                }
                tx.commit()?;
                Ok(states)
            })
            .await
        })
    }

    fn put_step(
        &self,
        workflow: &str,
        id: &str,
        generation: i64,
        name: &str,
        record: Value,
        consumed_event: Option<i64>,
    ) -> BoxFuture<'static, Result<bool, BindingError>> {
        let (db, workflow, id, name) = (
            self.db.clone(),
            workflow.to_string(),
            id.to_string(),
            name.to_string(),
        );
        Box::pin(async move {
            db.with(move |conn| {
                let tx = conn.transaction()?;
                let status: Option<String> = tx
                    .query_row(
                        "SELECT status FROM instances WHERE workflow = ?1 AND id = ?2 AND generation = ?3",
                        params![workflow, id, generation],
                        |r| r.get(0),
                    )
                    .optional()?;
                let (store, go_on) = match status.as_deref() {
                    None | Some("terminated") => (false, false),
                    Some("paused") => (true, false),
                    Some(_) => (true, true),
                };
                if !store {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO steps (workflow, id, name, record) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (workflow, id, name) DO UPDATE SET record = excluded.record",
                    params![workflow, id, name, record.to_string()],
                )?;
                if let Some(seq) = consumed_event {
                    tx.execute(
                        "UPDATE events SET consumed = 1 WHERE seq = ?1 AND workflow = ?2 AND id = ?3",
                        params![seq, workflow, id],
                    )?;
                }
                tx.commit()?;
                Ok(go_on)
            })
            .await
        })
    }

    fn finish(
        &self,
        workflow: &str,
        state: &RunState,
        end: RunEnd,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, workflow, id) = (self.db.clone(), workflow.to_string(), state.id.clone());
        let (generation, seen) = (state.generation, state.seen_seq());
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                // A pause or termination made while the run went on stays.
                let keep = "CASE WHEN status IN ('paused', 'terminated') THEN status ELSE ?3 END";
                let current = "workflow = ?1 AND id = ?2 AND generation = ?5";
                match end {
                    RunEnd::Complete(output) => conn.execute(
                        &format!("UPDATE instances SET leased = 0, status = {keep}, output = ?4, wake_ms = NULL WHERE {current}"),
                        params![workflow, id, "complete", output.to_string(), generation],
                    ),
                    RunEnd::Errored(error) => conn.execute(
                        &format!("UPDATE instances SET leased = 0, status = {keep}, error = ?4, wake_ms = NULL WHERE {current}"),
                        params![workflow, id, "errored", error.to_string(), generation],
                    ),
                    RunEnd::Waiting(until) => conn.execute(
                        &format!(
                            "UPDATE instances SET leased = 0, status = {keep},
                                wake_ms = CASE WHEN EXISTS (SELECT 1 FROM events e WHERE e.workflow = ?1
                                                 AND e.id = ?2 AND e.consumed = 0 AND e.seq > ?6)
                                          THEN ?7 ELSE ?4 END
                             WHERE {current}"
                        ),
                        params![workflow, id, "waiting", until, generation, seen, now],
                    ),
                    RunEnd::RetryAt(at) => conn.execute(
                        &format!("UPDATE instances SET leased = 0, status = {keep}, wake_ms = ?4 WHERE {current}"),
                        params![workflow, id, "running", at, generation],
                    ),
                }
                .map(drop)
            })
            .await
        })
    }

    fn next_due(&self, workflow: &str) -> BoxFuture<'static, Result<Option<i64>, BindingError>> {
        let (db, workflow) = (self.db.clone(), workflow.to_string());
        Box::pin(async move {
            db.with(move |conn| {
                conn.query_row(
                    "SELECT min(wake_ms) FROM instances
                     WHERE workflow = ?1 AND leased = 0 AND status IN ('queued', 'running', 'waiting')",
                    [workflow],
                    |r| r.get(0),
                )
            })
            .await
        })
    }

    fn renew(&self, _: &str, _: &RunState) -> BoxFuture<'static, Result<(), BindingError>> {
        // A lease lasts as long as this process (released when it restarts).
        Box::pin(async { Ok(()) })
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }

    fn renew_every(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> Arc<SqliteWorkflowStore> {
        SqliteWorkflowStore::open(Database::open(path).unwrap()).unwrap()
    }

    async fn lease_one(store: &SqliteWorkflowStore) -> Option<RunState> {
        store.lease_due("wf", 1).await.unwrap().pop()
    }

    #[tokio::test]
    async fn a_restart_of_the_process_releases_the_lease_and_keeps_the_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sqlite");
        {
            let store = open(&path);
            store.create("wf", "a", json!({})).await.unwrap();
            lease_one(&store).await.unwrap();
            store
                .put_step("wf", "a", 0, "do:x#1", json!({"value": 1}), None)
                .await
                .unwrap();
        }
        let store = open(&path);
        let run = lease_one(&store).await.unwrap();
        assert_eq!(run.steps["do:x#1"], json!({"value": 1}));
    }
}
