//! Where workflow instances live: one SQLite file in the state folder,
//! holding each instance's status, its completed steps and its events.

use std::sync::Arc;

use futures::future::BoxFuture;
use rusqlite::{OptionalExtension, params};
use serde_json::{Value, json};

use crate::alarms::now_ms;
use crate::protocol::BindingError;
use crate::store::Database;

/// The op of the internal binding (`contract::WORKFLOW_BINDING`) a running
/// instance stores a step's record through.
pub const STEPS_OP: &str = "step";

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

/// What one run of an instance starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub id: String,
    pub params: Value,
    pub created_ms: i64,
    /// Step name → its stored record.
    pub steps: serde_json::Map<String, Value>,
    /// Events not consumed yet: `[{seq, type, payload}]`.
    pub events: Vec<Value>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    Complete(Value),
    Errored(Value),
    /// Suspended until a time (ms since the epoch) or an event (then `None`
    /// and no timeout).
    Waiting(Option<i64>),
    /// The run could not be made (the worker is gone, the sandbox crashed):
    /// try again at this time.
    RetryAt(i64),
}

/// A user's change to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Terminate,
    Restart,
}

pub struct WorkflowStore {
    db: Database,
}

impl WorkflowStore {
    /// Open as the process that runs the instances: leases a dead process
    /// held are released (those runs are replayed).
    pub fn open(db: Database) -> anyhow::Result<Arc<Self>> {
        db.with_blocking(|conn| {
            conn.execute_batch(SCHEMA)?;
            conn.execute("UPDATE instances SET leased = 0 WHERE leased = 1", [])
        })?;
        Ok(Arc::new(Self { db }))
    }

    pub fn create(
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

    /// `{status, output, error}` of an instance, or None if there is none.
    pub fn status(
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
                    |row| {
                        let status: String = row.get(0)?;
                        let leased: bool = row.get(3)?;
                        let parse = |text: Option<String>| {
                            text.and_then(|t| serde_json::from_str::<Value>(&t).ok()).unwrap_or(Value::Null)
                        };
                        let status = if leased && status == "queued" { "running".into() } else { status };
                        Ok(json!({"status": status, "output": parse(row.get(1)?), "error": parse(row.get(2)?)}))
                    },
                )
                .optional()
            })
            .await
        })
    }

    /// Apply a user's change; false if the instance does not exist.
    pub fn control(
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
                        tx.execute(
                            "UPDATE instances SET status = 'queued', output = NULL, error = NULL, wake_ms = ?3
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

    /// Deliver an event; an instance waiting for one runs again now.
    pub fn send_event(
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

    /// Lease up to `max` instances due now, with what their runs start from.
    pub fn lease_due(
        &self,
        workflow: &str,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<RunState>, BindingError>> {
        let (db, workflow) = (self.db.clone(), workflow.to_string());
        Box::pin(async move {
            let now = now_ms();
            db.with(move |conn| {
                let tx = conn.transaction()?;
                let due: Vec<(String, String, i64)> = tx
                    .prepare(
                        "SELECT id, params, created_ms FROM instances
                         WHERE workflow = ?1 AND leased = 0 AND wake_ms <= ?2
                           AND status IN ('queued', 'running', 'waiting')
                         ORDER BY wake_ms LIMIT ?3",
                    )?
                    .query_map(params![workflow, now, max as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut states = Vec::new();
                for (id, params, created_ms) in due {
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

    /// Store a step's record (and mark the event it consumed), while the
    /// instance's run holds the lease.
    pub fn put_step(
        &self,
        workflow: &str,
        id: &str,
        name: &str,
        record: Value,
        consumed_event: Option<i64>,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, workflow, id, name) = (
            self.db.clone(),
            workflow.to_string(),
            id.to_string(),
            name.to_string(),
        );
        Box::pin(async move {
            db.with(move |conn| {
                let tx = conn.transaction()?;
                tx.execute(
                    "INSERT INTO steps (workflow, id, name, record) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (workflow, id, name) DO UPDATE SET record = excluded.record",
                    params![workflow, id, name, record.to_string()],
                )?;
                if let Some(seq) = consumed_event {
                    tx.execute("UPDATE events SET consumed = 1 WHERE seq = ?1", [seq])?;
                }
                tx.commit()
            })
            .await
        })
    }

    /// Record how a run ended and release the instance.
    pub fn finish(
        &self,
        workflow: &str,
        id: &str,
        end: RunEnd,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, workflow, id) = (self.db.clone(), workflow.to_string(), id.to_string());
        Box::pin(async move {
            db.with(move |conn| {
                // A pause or termination made while the run went on stays.
                let keep = "CASE WHEN status IN ('paused', 'terminated') THEN status ELSE ?3 END";
                match end {
                    RunEnd::Complete(output) => conn.execute(
                        &format!("UPDATE instances SET leased = 0, status = {keep}, output = ?4, wake_ms = NULL WHERE workflow = ?1 AND id = ?2"),
                        params![workflow, id, "complete", output.to_string()],
                    ),
                    RunEnd::Errored(error) => conn.execute(
                        &format!("UPDATE instances SET leased = 0, status = {keep}, error = ?4, wake_ms = NULL WHERE workflow = ?1 AND id = ?2"),
                        params![workflow, id, "errored", error.to_string()],
                    ),
                    RunEnd::Waiting(until) => conn.execute(
                        &format!("UPDATE instances SET leased = 0, status = {keep}, wake_ms = ?4 WHERE workflow = ?1 AND id = ?2"),
                        params![workflow, id, "waiting", until],
                    ),
                    RunEnd::RetryAt(at) => conn.execute(
                        &format!("UPDATE instances SET leased = 0, status = {keep}, wake_ms = ?4 WHERE workflow = ?1 AND id = ?2"),
                        params![workflow, id, "running", at],
                    ),
                }
                .map(drop)
            })
            .await
        })
    }

    /// When the next instance of `workflow` is due (ms since the epoch).
    pub fn next_due(
        &self,
        workflow: &str,
    ) -> BoxFuture<'static, Result<Option<i64>, BindingError>> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &std::path::Path) -> Arc<WorkflowStore> {
        WorkflowStore::open(Database::open(path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn an_instance_runs_waits_gets_its_event_and_completes() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("w.sqlite"));
        store.create("wf", "a", json!({"n": 1})).await.unwrap();
        assert!(
            store.create("wf", "a", json!({})).await.is_err(),
            "ids are unique"
        );
        let due = store.lease_due("wf", 10).await.unwrap();
        assert_eq!((due.len(), due[0].params.clone()), (1, json!({"n": 1})));
        assert!(
            store.lease_due("wf", 10).await.unwrap().is_empty(),
            "leased once"
        );
        assert_eq!(
            store.status("wf", "a").await.unwrap().unwrap()["status"],
            "running"
        );

        store
            .put_step("wf", "a", "do:x#1", json!({"value": 5}), None)
            .await
            .unwrap();
        store
            .finish("wf", "a", RunEnd::Waiting(None))
            .await
            .unwrap();
        assert!(
            store.lease_due("wf", 10).await.unwrap().is_empty(),
            "waits for its event"
        );
        assert!(
            store
                .send_event("wf", "a", "go", json!({"ok": true}))
                .await
                .unwrap()
        );
        let due = store.lease_due("wf", 10).await.unwrap();
        assert_eq!(due[0].steps["do:x#1"], json!({"value": 5}));
        let seq = due[0].events[0]["seq"].as_i64().unwrap();
        store
            .put_step("wf", "a", "event:go#1", json!({"value": 1}), Some(seq))
            .await
            .unwrap();
        store
            .finish("wf", "a", RunEnd::Complete(json!("done")))
            .await
            .unwrap();
        let status = store.status("wf", "a").await.unwrap().unwrap();
        assert_eq!(
            (status["status"].clone(), status["output"].clone()),
            (json!("complete"), json!("done"))
        );
        assert!(
            !store
                .send_event("wf", "missing", "go", Value::Null)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_restart_releases_the_lease_and_keeps_the_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sqlite");
        {
            let store = open(&path);
            store.create("wf", "a", json!({})).await.unwrap();
            store.lease_due("wf", 1).await.unwrap();
            store
                .put_step("wf", "a", "do:x#1", json!({"value": 1}), None)
                .await
                .unwrap();
        }
        let store = open(&path);
        let due = store.lease_due("wf", 1).await.unwrap();
        assert_eq!(due[0].steps["do:x#1"], json!({"value": 1}));
    }

    #[tokio::test]
    async fn pause_holds_an_instance_and_a_finished_run_keeps_the_pause() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir.path().join("w.sqlite"));
        store.create("wf", "a", json!({})).await.unwrap();
        store.lease_due("wf", 1).await.unwrap();
        assert!(store.control("wf", "a", Control::Pause).await.unwrap());
        store
            .finish("wf", "a", RunEnd::Waiting(Some(0)))
            .await
            .unwrap();
        assert_eq!(
            store.status("wf", "a").await.unwrap().unwrap()["status"],
            "paused"
        );
        assert!(store.lease_due("wf", 1).await.unwrap().is_empty());
        store.control("wf", "a", Control::Resume).await.unwrap();
        assert_eq!(store.lease_due("wf", 1).await.unwrap().len(), 1);
        store.control("wf", "a", Control::Terminate).await.unwrap();
        store
            .finish("wf", "a", RunEnd::Complete(Value::Null))
            .await
            .unwrap();
        assert_eq!(
            store.status("wf", "a").await.unwrap().unwrap()["status"],
            "terminated"
        );
        assert!(!store.control("wf", "nope", Control::Pause).await.unwrap());
    }
}
