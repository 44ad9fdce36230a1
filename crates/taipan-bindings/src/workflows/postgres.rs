//! Cluster mode's workflow store: every instance, its steps and its events
//! in the cluster database (`workflow_instances`, `workflow_steps`,
//! `workflow_events`: `taipan_cluster::migrations`, version 6), so an
//! instance created through any node is run by any node.
//!
//! The semantics are the SQLite store's ([`super::sqlite`]). What several
//! nodes change:
//!
//! - Every node runs the engine of every workflow its workers define, so a
//!   lease takes its rows `FOR UPDATE SKIP LOCKED`: nodes leasing at once
//!   get different instances, never the same one.
//! - A lease lasts until `leased_until` ([`LEASE`] from when it was taken,
//!   by the database's clock, the one clock every node shares), and the
//!   engine running the instance renews it every third of that while the
//!   run goes on (as alarm claims are). A node that dies stops renewing;
//!   once the lease lapses another node leases the instance again and
//!   replays it from its stored steps. (The SQLite store releases its
//!   leases when its one process restarts; here a restarting node cannot
//!   tell its old leases from another node's runs under way.)
//! - Taking over a lapsed lease bumps the instance's generation, as a
//!   restart does: a run that only stalled (and comes back) stores no step
//!   and records no end, since `put_step` and `finish` are fenced by
//!   generation.
//! - Wake times (`wake_ms`) are by the nodes' clocks, as the runs that set
//!   them compute them; each node compares them with its own clock.
//! - What must not interleave takes the instance's row lock first: a step
//!   stored by an old generation never survives a restart, and an event
//!   sent while a run ends always wakes the instance (events of one
//!   instance are numbered in the order they commit).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use taipan_cluster::Db;

use super::store::{Control, RunEnd, RunState, WorkflowStore, status_json};
use crate::alarms::now_ms;
use crate::protocol::BindingError;

/// How long a lease lasts without being renewed: how soon the instances a
/// dead node was running are run again by another node.
pub const LEASE: Duration = Duration::from_secs(30);
/// How often an engine looks at its instances: how late, at most, it finds
/// an instance created (or an event sent, or a resume) through another
/// node; one through this node wakes it at once.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Now, by the database's clock, in ms since the epoch.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch FROM now()) * 1000)::bigint"
    };
}

/// Lease up to `$3` instances of workflow `$1` for `$4` ms: unleased ones
/// whose wake time came (`$2`: now by this node's clock), and ones whose
/// lease lapsed (then the generation is bumped: that run stores nothing
/// more). Rows another node is leasing are skipped, not waited for; a row
/// it leased meanwhile is re-checked (`FOR UPDATE` reads the newest
/// version) and left out.
const LEASE_SQL: &str = concat!(
    "WITH due AS (
        SELECT id FROM workflow_instances
        WHERE workflow = $1 AND status IN ('queued', 'running', 'waiting')
          AND ((leased_until IS NULL AND wake_ms <= $2::bigint) OR leased_until <= ",
    db_now_ms!(),
    ")
        ORDER BY wake_ms
        LIMIT $3
        FOR UPDATE SKIP LOCKED)
     UPDATE workflow_instances i
     SET status = 'running', leased_until = ",
    db_now_ms!(),
    " + $4::bigint,
         generation = CASE WHEN i.leased_until IS NULL THEN i.generation ELSE i.generation + 1 END
     FROM due
     WHERE i.workflow = $1 AND i.id = due.id
     RETURNING i.id, i.params, i.created_ms, i.generation, i.wake_ms"
);

const RENEW_SQL: &str = concat!(
    "UPDATE workflow_instances SET leased_until = ",
    db_now_ms!(),
    " + $4::bigint
     WHERE workflow = $1 AND id = $2 AND generation = $3 AND leased_until IS NOT NULL"
);

/// When the next instance of `$1` is due by this node's clock (`$2`: its
/// now): an unleased one at its wake time, a leased one when its lease
/// lapses.
const NEXT_DUE_SQL: &str = concat!(
    "SELECT min(CASE WHEN leased_until IS NULL THEN wake_ms
                     ELSE $2::bigint + (leased_until - ",
    db_now_ms!(),
    ") END)
     FROM workflow_instances
     WHERE workflow = $1 AND status IN ('queued', 'running', 'waiting')"
);

pub struct PostgresWorkflowStore {
    db: Db,
    /// How long a lease lasts unless renewed ([`LEASE`]; shorter in tests).
    lease: Duration,
}

impl PostgresWorkflowStore {
    /// The workflows of the cluster whose database is `db` (migrated).
    pub fn new(db: Db) -> Arc<Self> {
        Self::with_lease(db, LEASE)
    }

    pub fn with_lease(db: Db, lease: Duration) -> Arc<Self> {
        Arc::new(Self { db, lease })
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// A failed operation as the worker (or the log) reads it.
fn failed<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> BindingError {
    move |e| {
        BindingError::error(format!(
            "Workflow {op} failed: the cluster database: {e}; retry"
        ))
    }
}

/// Stored JSON text as a value (Null if absent or unreadable).
fn parse(text: Option<String>) -> Value {
    text.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null)
}

/// Whether the instance exists (after a change that matched no row).
async fn exists(db: &Db, workflow: &str, id: &str) -> Result<bool, BindingError> {
    let client = db.client().await.map_err(failed("read"))?;
    let row = client
        .query_opt(
            "SELECT 1 FROM workflow_instances WHERE workflow = $1 AND id = $2",
            &[&workflow, &id],
        )
        .await
        .map_err(failed("read"))?;
    Ok(row.is_some())
}

impl WorkflowStore for PostgresWorkflowStore {
    fn create(
        &self,
        workflow: &str,
        id: &str,
        params: Value,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, workflow, id) = (self.db.clone(), workflow.to_string(), id.to_string());
        Box::pin(async move {
            let client = db.client().await.map_err(failed("create"))?;
            let created = client
                .execute(
                    "INSERT INTO workflow_instances (workflow, id, params, created_ms, status, wake_ms)
                     VALUES ($1, $2, $3, $4, 'queued', $4)
                     ON CONFLICT (workflow, id) DO NOTHING",
                    &[&workflow, &id, &params.to_string(), &now_ms()],
                )
                .await
                .map_err(failed("create"))?;
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
            let client = db.client().await.map_err(failed("read"))?;
            let row = client
                .query_opt(
                    "SELECT status, output, error, leased_until IS NOT NULL
                     FROM workflow_instances WHERE workflow = $1 AND id = $2",
                    &[&workflow, &id],
                )
                .await
                .map_err(failed("read"))?;
            Ok(row.map(|row| status_json(row.get(0), row.get(3), row.get(1), row.get(2))))
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
            let mut client = db.client().await.map_err(failed("control"))?;
            let changed = match control {
                // Finished instances stay as they are.
                Control::Pause => client
                    .execute(
                        "UPDATE workflow_instances SET status = 'paused'
                         WHERE workflow = $1 AND id = $2 AND status IN ('queued', 'running', 'waiting')",
                        &[&workflow, &id],
                    )
                    .await
                    .map_err(failed("pause"))?,
                Control::Resume => client
                    .execute(
                        "UPDATE workflow_instances SET status = 'running', wake_ms = $3
                         WHERE workflow = $1 AND id = $2 AND status = 'paused'",
                        &[&workflow, &id, &now_ms()],
                    )
                    .await
                    .map_err(failed("resume"))?,
                Control::Terminate => client
                    .execute(
                        "UPDATE workflow_instances SET status = 'terminated', wake_ms = NULL
                         WHERE workflow = $1 AND id = $2 AND status NOT IN ('complete', 'errored')",
                        &[&workflow, &id],
                    )
                    .await
                    .map_err(failed("terminate"))?,
                Control::Restart => {
                    let tx = client.transaction().await.map_err(failed("restart"))?;
                    // The row first: a `put_step` of the old generation
                    // holding it commits before the steps are deleted, one
                    // waiting for it finds the generation moved on.
                    let restarted = tx
                        .execute(
                            "UPDATE workflow_instances
                             SET status = 'queued', output = NULL, error = NULL, wake_ms = $3,
                                 leased_until = NULL, generation = generation + 1
                             WHERE workflow = $1 AND id = $2",
                            &[&workflow, &id, &now_ms()],
                        )
                        .await
                        .map_err(failed("restart"))?;
                    if restarted == 0 {
                        return Ok(false);
                    }
                    for table in ["workflow_steps", "workflow_events"] {
                        tx.execute(
                            &format!("DELETE FROM {table} WHERE workflow = $1 AND id = $2"),
                            &[&workflow, &id],
                        )
                        .await
                        .map_err(failed("restart"))?;
                    }
                    tx.commit().await.map_err(failed("restart"))?;
                    return Ok(true);
                }
            };
            drop(client);
            Ok(changed > 0 || exists(&db, &workflow, &id).await?)
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
            let mut client = db.client().await.map_err(failed("sendEvent"))?;
            let tx = client.transaction().await.map_err(failed("sendEvent"))?;
            // Holding the row: a run ending now either sees this event or
            // is seen waiting (see `finish`).
            let Some(row) = tx
                .query_opt(
                    "SELECT status FROM workflow_instances WHERE workflow = $1 AND id = $2 FOR UPDATE",
                    &[&workflow, &id],
                )
                .await
                .map_err(failed("sendEvent"))?
            else {
                return Ok(false);
            };
            tx.execute(
                "INSERT INTO workflow_events (workflow, id, type, payload) VALUES ($1, $2, $3, $4)",
                &[&workflow, &id, &kind, &payload.to_string()],
            )
            .await
            .map_err(failed("sendEvent"))?;
            if row.get::<_, String>(0) == "waiting" {
                tx.execute(
                    "UPDATE workflow_instances SET wake_ms = $3 WHERE workflow = $1 AND id = $2",
                    &[&workflow, &id, &now_ms()],
                )
                .await
                .map_err(failed("sendEvent"))?;
            }
            tx.commit().await.map_err(failed("sendEvent"))?;
            Ok(true)
        })
    }

    fn lease_due(
        &self,
        workflow: &str,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<RunState>, BindingError>> {
        let (db, workflow, lease_ms) = (self.db.clone(), workflow.to_string(), self.lease_ms());
        Box::pin(async move {
            let max = i64::try_from(max).unwrap_or(i64::MAX);
            let mut client = db.client().await.map_err(failed("lease"))?;
            let tx = client.transaction().await.map_err(failed("lease"))?;
            let rows = tx
                .query(LEASE_SQL, &[&workflow, &now_ms(), &max, &lease_ms])
                .await
                .map_err(failed("lease"))?;
            if rows.is_empty() {
                return Ok(Vec::new());
            }
            let mut leased: Vec<(Option<i64>, RunState)> = rows
                .iter()
                .map(|row| {
                    let state = RunState {
                        id: row.get(0),
                        generation: row.get(3),
                        params: parse(row.get(1)),
                        created_ms: row.get(2),
                        steps: serde_json::Map::new(),
                        events: Vec::new(),
                    };
                    (row.get(4), state)
                })
                .collect();
            let ids: Vec<String> = leased.iter().map(|(_, s)| s.id.clone()).collect();
            let at: HashMap<String, usize> = ids.iter().cloned().zip(0..).collect();
            let steps = tx
                .query(
                    "SELECT id, name, record FROM workflow_steps WHERE workflow = $1 AND id = ANY($2)",
                    &[&workflow, &ids],
                )
                .await
                .map_err(failed("lease"))?;
            for row in steps {
                let state = &mut leased[at[row.get::<_, &str>(0)]].1;
                state.steps.insert(row.get(1), parse(row.get(2)));
            }
            let events = tx
                .query(
                    "SELECT id, seq, type, payload FROM workflow_events
                     WHERE workflow = $1 AND id = ANY($2) AND NOT consumed ORDER BY seq",
                    &[&workflow, &ids],
                )
                .await
                .map_err(failed("lease"))?;
            for row in events {
                let state = &mut leased[at[row.get::<_, &str>(0)]].1;
                state.events.push(json!({
                    "seq": row.get::<_, i64>(1),
                    "type": row.get::<_, String>(2),
                    "payload": parse(row.get(3)),
                }));
            }
            tx.commit().await.map_err(failed("lease"))?;
            // `RETURNING` keeps no order: the longest due first.
            leased.sort_by_key(|(wake_ms, _)| *wake_ms);
            Ok(leased.into_iter().map(|(_, state)| state).collect())
        })
    }

    fn renew(
        &self,
        workflow: &str,
        state: &RunState,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, workflow, id) = (self.db.clone(), workflow.to_string(), state.id.clone());
        let (generation, lease_ms) = (state.generation, self.lease_ms());
        Box::pin(async move {
            let client = db.client().await.map_err(failed("lease renewal"))?;
            client
                .execute(RENEW_SQL, &[&workflow, &id, &generation, &lease_ms])
                .await
                .map_err(failed("lease renewal"))?;
            Ok(())
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
            let mut client = db.client().await.map_err(failed("step"))?;
            let tx = client.transaction().await.map_err(failed("step"))?;
            // Holding the row until the step is in: a restart waits for it
            // (and then deletes it), or is seen as another generation.
            let status: Option<String> = tx
                .query_opt(
                    "SELECT status FROM workflow_instances
                     WHERE workflow = $1 AND id = $2 AND generation = $3 FOR UPDATE",
                    &[&workflow, &id, &generation],
                )
                .await
                .map_err(failed("step"))?
                .map(|row| row.get(0));
            let (store, go_on) = match status.as_deref() {
                None | Some("terminated") => (false, false),
                Some("paused") => (true, false),
                Some(_) => (true, true),
            };
            if !store {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO workflow_steps (workflow, id, name, record) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (workflow, id, name) DO UPDATE SET record = excluded.record",
                &[&workflow, &id, &name, &record.to_string()],
            )
            .await
            .map_err(failed("step"))?;
            if let Some(seq) = consumed_event {
                tx.execute(
                    "UPDATE workflow_events SET consumed = true
                     WHERE seq = $1 AND workflow = $2 AND id = $3",
                    &[&seq, &workflow, &id],
                )
                .await
                .map_err(failed("step"))?;
            }
            tx.commit().await.map_err(failed("step"))?;
            Ok(go_on)
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
            let mut client = db.client().await.map_err(failed("finish"))?;
            let tx = client.transaction().await.map_err(failed("finish"))?;
            // The row first, then the update in a statement of its own: it
            // sees every event sent before the lock was ours (`send_event`
            // holds the row while it inserts one).
            let current = tx
                .query_opt(
                    "SELECT 1 FROM workflow_instances
                     WHERE workflow = $1 AND id = $2 AND generation = $3 FOR UPDATE",
                    &[&workflow, &id, &generation],
                )
                .await
                .map_err(failed("finish"))?;
            if current.is_none() {
                // A run of an older generation: it records nothing.
                return Ok(());
            }
            // A pause or termination made while the run went on stays.
            let keep = "CASE WHEN status IN ('paused', 'terminated') THEN status ELSE $3::text END";
            let this = "workflow = $1 AND id = $2 AND generation = $5";
            match end {
                RunEnd::Complete(output) => {
                    tx.execute(
                        &format!(
                            "UPDATE workflow_instances SET leased_until = NULL, status = {keep},
                            output = $4, wake_ms = NULL WHERE {this}"
                        ),
                        &[
                            &workflow,
                            &id,
                            &"complete",
                            &output.to_string(),
                            &generation,
                        ],
                    )
                    .await
                }
                RunEnd::Errored(error) => {
                    tx.execute(
                        &format!(
                            "UPDATE workflow_instances SET leased_until = NULL, status = {keep},
                            error = $4, wake_ms = NULL WHERE {this}"
                        ),
                        &[&workflow, &id, &"errored", &error.to_string(), &generation],
                    )
                    .await
                }
                RunEnd::Waiting(until) => {
                    tx.execute(
                        &format!(
                            "UPDATE workflow_instances SET leased_until = NULL, status = {keep},
                            wake_ms = CASE WHEN EXISTS (SELECT 1 FROM workflow_events e
                                              WHERE e.workflow = $1 AND e.id = $2
                                                AND NOT e.consumed AND e.seq > $6::bigint)
                                      THEN $7::bigint ELSE $4::bigint END
                         WHERE {this}"
                        ),
                        &[
                            &workflow,
                            &id,
                            &"waiting",
                            &until,
                            &generation,
                            &seen,
                            &now_ms(),
                        ],
                    )
                    .await
                }
                RunEnd::RetryAt(at) => {
                    tx.execute(
                        &format!(
                            "UPDATE workflow_instances SET leased_until = NULL, status = {keep},
                            wake_ms = $4 WHERE {this}"
                        ),
                        &[&workflow, &id, &"running", &at, &generation],
                    )
                    .await
                }
            }
            .map_err(failed("finish"))?;
            tx.commit().await.map_err(failed("finish"))?;
            Ok(())
        })
    }

    fn next_due(&self, workflow: &str) -> BoxFuture<'static, Result<Option<i64>, BindingError>> {
        let (db, workflow) = (self.db.clone(), workflow.to_string());
        Box::pin(async move {
            let client = db.client().await.map_err(failed("read"))?;
            let row = client
                .query_one(NEXT_DUE_SQL, &[&workflow, &now_ms()])
                .await
                .map_err(failed("read"))?;
            Ok(row.get(0))
        })
    }

    fn poll_interval(&self) -> Duration {
        POLL_INTERVAL
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(self.lease / 3)
    }
}
