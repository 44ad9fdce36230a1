//! Durable Object alarms: `ctx.storage.setAlarm(ms)` records when an object
//! wants its `alarm()` handler called, and a task per worker fires the due
//! ones in the object. A handler that fails is retried with exponential
//! backoff (1 s, 2 s, 4 s, …) up to [`MAX_RETRIES`] times, as Cloudflare
//! does.
//!
//! Where the schedule lives is an [`AlarmStore`]:
//!
//! - One node: one SQLite file per worker (`state/do/<worker>/_alarms.sqlite`),
//!   so alarms survive restarts ([`SqliteAlarms`]). A due alarm is taken off
//!   the schedule as it fires.
//! - A cluster: the cluster database's `alarms` table
//!   (`taipan_cluster::migrations`, version 5; [`PostgresAlarms`]), so an
//!   alarm set through any node fires once, whichever nodes live. Every
//!   node runs every worker's firing loop and looks at the table at least
//!   every [`CLUSTER_POLL`] (an alarm set through this node wakes it at
//!   once). A due alarm is *claimed* for one firing (rows taken
//!   `FOR UPDATE SKIP LOCKED`: two nodes never claim the same one) until
//!   [`CLAIM`] from now, a claim its node renews while the handler runs; the
//!   firing then deletes it, or reschedules it for a retry. A node that dies
//!   mid-fire stops renewing, and once the claim lapses another node claims
//!   the alarm again (the lost attempt counted as a retry). Due times are
//!   compared with the database's clock, the one clock every node shares.
//!
//! In a cluster the handler runs on the node holding the object's lease,
//! as every call to the object does (`durable::Namespace::call`): the node
//! that claimed the alarm forwards it there when it is not the owner.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt as _, Empty};
use rusqlite::OptionalExtension;
use taipan_cluster::Db;
use taipan_guest::contract::{AUTHORITY_DURABLE, HEADER_ALARM_RETRY, OP_ALARM};
use tokio::sync::Notify;

use crate::durable::lease_name;
use crate::placement::Place;
use crate::protocol::BindingError;
use crate::service::Services;
use crate::store::{Database, Stores};

/// Retries of a failing `alarm()` before the alarm is dropped.
pub const MAX_RETRIES: u32 = 6;
/// The longest the task sleeps without looking (a clock change, another
/// process writing the schedule).
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// Cluster mode: how often, at least, a node looks for alarms set through
/// other nodes (so at most this late).
pub const CLUSTER_POLL: Duration = Duration::from_secs(1);
/// Cluster mode: how long a claim lasts unless renewed, so how soon an
/// alarm whose node died mid-fire is fired again.
pub const CLAIM: Duration = Duration::from_secs(30);
/// Alarms claimed at once by one look at the schedule.
const CLAIM_BATCH: i64 = 100;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS alarms (
    class TEXT NOT NULL, id TEXT NOT NULL, at_ms INTEGER NOT NULL, retry INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (class, id)) WITHOUT ROWID";

/// A due alarm taken for one firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub class: String,
    pub id: String,
    /// Retries so far (what `alarm(alarmInfo)` sees as `retryCount`).
    pub retry: u32,
    /// The claim's token (cluster mode; the SQLite store deletes instead).
    claim: Option<String>,
}

/// The alarms a look at the schedule claimed, and in how many ms the next
/// one is due (none: no alarm left).
pub type Due = (Vec<Claimed>, Option<i64>);

/// The schedule of one worker's alarms.
pub trait AlarmStore: Send + Sync + 'static {
    /// `setAlarm`: replaces the object's alarm (also one being fired: the
    /// firing then leaves the new one alone).
    fn set<'a>(
        &'a self,
        class: &'a str,
        id: &'a str,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<(), BindingError>>;
    /// `getAlarm` (an alarm being fired is not set any more).
    fn get<'a>(
        &'a self,
        class: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, BindingError>>;
    /// `deleteAlarm` (not of an alarm being fired: its retry stands).
    fn delete<'a>(&'a self, class: &'a str, id: &'a str)
    -> BoxFuture<'a, Result<(), BindingError>>;
    /// Take the due alarms (each by one caller only, whatever the number of
    /// stores on the schedule); and in how many ms the next one is due.
    fn claim_due(&self) -> BoxFuture<'_, Result<Due, BindingError>>;
    /// Keep a claim while its handler runs.
    fn renew<'a>(&'a self, alarm: &'a Claimed) -> BoxFuture<'a, Result<(), BindingError>>;
    /// The handler succeeded: the alarm is done.
    fn finish<'a>(&'a self, alarm: &'a Claimed) -> BoxFuture<'a, Result<(), BindingError>>;
    /// The handler failed: due again in `delay_ms`, one retry more (unless
    /// the handler set a new alarm before failing).
    fn retry<'a>(
        &'a self,
        alarm: &'a Claimed,
        delay_ms: i64,
    ) -> BoxFuture<'a, Result<(), BindingError>>;
    /// How long the firing loop may sleep without looking.
    fn poll_interval(&self) -> Duration;
    /// How often a firing renews its claim (if claims lapse).
    fn renew_every(&self) -> Option<Duration>;
    /// Whether there may be alarms to fire (the loop starts then).
    fn in_use(&self) -> bool;
}

/// One node: the worker's SQLite file, opened (and its table made) on first use.
pub struct SqliteAlarms {
    stores: Arc<Stores>,
    path: PathBuf,
    db: OnceLock<Database>,
}

impl SqliteAlarms {
    pub fn new(stores: &Arc<Stores>, script: &str) -> Self {
        Self {
            stores: stores.clone(),
            path: stores.alarms_path(script),
            db: OnceLock::new(),
        }
    }

    fn database(&self) -> Result<Database, BindingError> {
        if let Some(db) = self.db.get() {
            return Ok(db.clone());
        }
        let db = self
            .stores
            .database(&self.path)
            .map_err(|e| BindingError::error(format!("opening the alarm schedule: {e:#}")))?;
        db.with_blocking(|conn| conn.execute_batch(SCHEMA))
            .map_err(BindingError::from)?;
        Ok(self.db.get_or_init(|| db).clone())
    }
}

impl AlarmStore for SqliteAlarms {
    fn set<'a>(
        &'a self,
        class: &'a str,
        id: &'a str,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<(), BindingError>> {
        let (class, id) = (class.to_string(), id.to_string());
        Box::pin(async move {
            self.database()?
                .with(move |conn| {
                    conn.execute(
                        "INSERT INTO alarms (class, id, at_ms, retry) VALUES (?1, ?2, ?3, 0)

                 ON CONFLICT(class, id) DO UPDATE SET at_ms = excluded.at_ms, retry = 0",
                        (class, id, at_ms),
                    )
                })
                .await?;
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        class: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, BindingError>> {
        let (class, id) = (class.to_string(), id.to_string());
        Box::pin(async move {
            self.database()?
                .with(move |conn| {
                    conn.query_row(
                        "SELECT at_ms FROM alarms WHERE class = ?1 AND id = ?2",
                        (class, id),
                        |r| r.get(0),
                    )
                    .optional()
                })
                .await
        })
    }

    fn delete<'a>(
        &'a self,
        class: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), BindingError>> {
        let (class, id) = (class.to_string(), id.to_string());
        Box::pin(async move {
            self.database()?
                .with(move |conn| {
                    conn.execute(
                        "DELETE FROM alarms WHERE class = ?1 AND id = ?2",
                        (class, id),
                    )
                })
                .await?;
            Ok(())
        })
    }

    fn claim_due(&self) -> BoxFuture<'_, Result<Due, BindingError>> {
        Box::pin(async move {
            let now = now_ms();
            self.database()?
                .with(move |conn| {
                    let tx = conn.transaction()?;
                    let due: Vec<Claimed> = tx
                        .prepare("SELECT class, id, retry FROM alarms WHERE at_ms <= ?1")?
                        .query_map([now], |r| {
                            Ok(Claimed {
                                class: r.get(0)?,
                                id: r.get(1)?,
                                retry: r.get(2)?,
                                claim: None,
                            })
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    // Taken off before it runs: a handler may set the next alarm.
                    tx.execute("DELETE FROM alarms WHERE at_ms <= ?1", [now])?;
                    let next: Option<i64> =
                        tx.query_row("SELECT min(at_ms) FROM alarms", [], |r| r.get(0))?;
                    tx.commit()?;
                    Ok((due, next.map(|next| next - now)))
                })
                .await
        })
    }

    fn renew<'a>(&'a self, _: &'a Claimed) -> BoxFuture<'a, Result<(), BindingError>> {
        Box::pin(async { Ok(()) })
    }

    fn finish<'a>(&'a self, _: &'a Claimed) -> BoxFuture<'a, Result<(), BindingError>> {
        // Off the schedule since it was taken.
        Box::pin(async { Ok(()) })
    }

    fn retry<'a>(
        &'a self,
        alarm: &'a Claimed,
        delay_ms: i64,
    ) -> BoxFuture<'a, Result<(), BindingError>> {
        let (class, id, retry) = (alarm.class.clone(), alarm.id.clone(), alarm.retry + 1);
        Box::pin(async move {
            let at = now_ms() + delay_ms;
            self.database()?
                .with(move |conn| {
                    // Unless the handler set a new alarm before it failed.
                    conn.execute(
                        "INSERT OR IGNORE INTO alarms (class, id, at_ms, retry) VALUES (?1, ?2, ?3, ?4)",
                        (class, id, at, retry),
                    )
                })
                .await?;
            Ok(())
        })
    }

    fn poll_interval(&self) -> Duration {
        MAX_SLEEP
    }

    fn renew_every(&self) -> Option<Duration> {
        None
    }

    fn in_use(&self) -> bool {
        self.path.exists()
    }
}

/// Now, by the database's clock, in ms since the epoch.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch FROM now()) * 1000)::bigint"
    };
}

/// Claim up to `$3` due alarms of script `$1` with token `$2` until `$4` ms
/// from now: unclaimed ones whose time came, and ones whose claim lapsed
/// (the lost firing counted as a retry). Rows another node is claiming are
/// skipped, not waited for; a row it claimed meanwhile is re-checked
/// (`FOR UPDATE` reads the newest version) and left out.
const CLAIM_SQL: &str = concat!(
    "WITH due AS (
        SELECT class, id FROM alarms

                 WHERE script = $1 AND ((claim IS NULL AND at <= ",
    db_now_ms!(),
    ") OR claim_until <= ",
    db_now_ms!(),
    ")
        ORDER BY at
        LIMIT $3
        FOR UPDATE SKIP LOCKED)
     UPDATE alarms a
     SET claim = $2, claim_until = ",
    db_now_ms!(),
    " + $4,
         retry = CASE WHEN a.claim IS NULL THEN a.retry ELSE a.retry + 1 END
     FROM due
     WHERE a.script = $1 AND a.class = due.class AND a.id = due.id
     RETURNING a.class, a.id, a.retry"
);

/// In how many ms the next alarm of `$1` is due (or its claim lapses).
const NEXT_SQL: &str = concat!(
    "SELECT min(CASE WHEN claim IS NULL THEN at ELSE claim_until END) - ",
    db_now_ms!(),
    " FROM alarms WHERE script = $1"
);

const RETRY_SQL: &str = concat!(
    "UPDATE alarms SET at = ",
    db_now_ms!(),
    " + $5, retry = retry + 1, claim = NULL, claim_until = NULL

                 WHERE script = $1 AND class = $2 AND id = $3 AND claim = $4"
);

const RENEW_SQL: &str = concat!(
    "UPDATE alarms SET claim_until = ",
    db_now_ms!(),
    " + $5 WHERE script = $1 AND class = $2 AND id = $3 AND claim = $4"
);

/// A cluster: the `alarms` table of the cluster database.
pub struct PostgresAlarms {
    db: Db,
    script: String,
    /// How long a claim lasts unless renewed ([`CLAIM`]; shorter in tests).
    claim_ms: i64,
}

impl PostgresAlarms {
    pub fn new(db: Db, script: &str) -> Self {
        Self::with_claim(db, script, CLAIM)
    }

    pub fn with_claim(db: Db, script: &str, claim: Duration) -> Self {
        Self {
            db,
            script: script.to_string(),
            claim_ms: claim.as_millis() as i64,
        }
    }
}

/// Run one statement on a pooled connection.
macro_rules! execute {
    ($self:ident, $sql:expr, $($param:expr),*) => {{
        let client = $self.db.client().await.map_err(db_error)?;
        client
            .execute($sql, &[$($param),*])
            .await
            .map_err(db_error)?
    }};
}

fn db_error(e: impl std::fmt::Display) -> BindingError {
    BindingError::error(format!("the cluster database failed: {e:#}"))
}

impl AlarmStore for PostgresAlarms {
    fn set<'a>(
        &'a self,
        class: &'a str,
        id: &'a str,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<(), BindingError>> {
        Box::pin(async move {
            execute!(
                self,
                "INSERT INTO alarms (script, class, id, at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (script, class, id) DO UPDATE
                 SET at = excluded.at, retry = 0, claim = NULL, claim_until = NULL",
                &self.script,
                &class,
                &id,
                &at_ms
            );
            Ok(())
        })
    }

    fn get<'a>(
        &'a self,
        class: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, BindingError>> {
        Box::pin(async move {
            let client = self.db.client().await.map_err(db_error)?;
            let row = client
                .query_opt(
                    "SELECT at FROM alarms
                 WHERE script = $1 AND class = $2 AND id = $3 AND claim IS NULL",
                    &[&self.script, &class, &id],
                )
                .await
                .map_err(db_error)?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn delete<'a>(
        &'a self,
        class: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<(), BindingError>> {
        Box::pin(async move {
            execute!(
                self,
                "DELETE FROM alarms
                 WHERE script = $1 AND class = $2 AND id = $3 AND claim IS NULL",
                &self.script,
                &class,
                &id
            );
            Ok(())
        })
    }

    fn claim_due(&self) -> BoxFuture<'_, Result<Due, BindingError>> {
        Box::pin(async move {
            let token = uuid::Uuid::new_v4().simple().to_string();
            let client = self.db.client().await.map_err(db_error)?;
            let rows = client
                .query(
                    CLAIM_SQL,
                    &[&self.script, &token, &CLAIM_BATCH, &self.claim_ms],
                )
                .await
                .map_err(db_error)?;
            let due = rows
                .iter()
                .map(|row| Claimed {
                    class: row.get(0),
                    id: row.get(1),
                    retry: row.get::<_, i32>(2).max(0) as u32,
                    claim: Some(token.clone()),
                })
                .collect();
            let next: Option<i64> = client
                .query_one(NEXT_SQL, &[&self.script])
                .await
                .map_err(db_error)?
                .get(0);
            Ok((due, next))
        })
    }

    fn renew<'a>(&'a self, alarm: &'a Claimed) -> BoxFuture<'a, Result<(), BindingError>> {
        Box::pin(async move {
            execute!(
                self,
                RENEW_SQL,
                &self.script,
                &alarm.class,
                &alarm.id,
                &alarm.claim,
                &self.claim_ms
            );
            Ok(())
        })
    }

    fn finish<'a>(&'a self, alarm: &'a Claimed) -> BoxFuture<'a, Result<(), BindingError>> {
        Box::pin(async move {
            // Only while the claim is this firing's: a new alarm set by the
            // handler stays.
            execute!(
                self,
                "DELETE FROM alarms WHERE script = $1 AND class = $2 AND id = $3 AND claim = $4",
                &self.script,
                &alarm.class,
                &alarm.id,
                &alarm.claim
            );
            Ok(())
        })
    }

    fn retry<'a>(
        &'a self,
        alarm: &'a Claimed,
        delay_ms: i64,
    ) -> BoxFuture<'a, Result<(), BindingError>> {
        Box::pin(async move {
            execute!(
                self,
                RETRY_SQL,
                &self.script,
                &alarm.class,
                &alarm.id,
                &alarm.claim,
                &delay_ms
            );
            Ok(())
        })
    }

    fn poll_interval(&self) -> Duration {
        CLUSTER_POLL
    }

    fn renew_every(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.claim_ms as u64 / 3))
    }

    fn in_use(&self) -> bool {
        // Any node may have set one.
        true
    }
}

/// Worker-lifetime: the alarm schedule of one worker's objects, and the task
/// that fires it (started with the first alarm, at once in a cluster;
/// stopped when dropped).
pub struct Alarms {
    stores: Arc<Stores>,
    script: String,
    services: Arc<dyn Services>,
    store: Arc<dyn AlarmStore>,
    wake: Arc<Notify>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Alarms {
    /// The schedule of `script`: the cluster's in cluster mode, else the
    /// worker's SQLite file.
    pub fn open(stores: &Arc<Stores>, script: &str, services: Arc<dyn Services>) -> Arc<Self> {
        let store: Arc<dyn AlarmStore> = match stores.cluster() {
            Some(cluster) => Arc::new(PostgresAlarms::new(cluster.db.clone(), script)),
            None => Arc::new(SqliteAlarms::new(stores, script)),
        };
        Self::with_store(stores, script, services, store)
    }

    pub fn with_store(
        stores: &Arc<Stores>,
        script: &str,
        services: Arc<dyn Services>,
        store: Arc<dyn AlarmStore>,
    ) -> Arc<Self> {
        let alarms = Arc::new(Self {
            stores: stores.clone(),
            script: script.to_string(),
            services,
            store,
            wake: Arc::new(Notify::new()),
            task: Mutex::new(None),
        });
        if alarms.store.in_use() {
            alarms.start();
        }
        alarms
    }

    /// `setAlarm`: replaces the object's alarm.
    pub async fn set(
        self: &Arc<Self>,
        class: &str,
        id: &str,
        at_ms: i64,
    ) -> Result<(), BindingError> {
        self.store.set(class, id, at_ms).await?;
        self.start();
        self.wake.notify_one();
        Ok(())
    }

    /// `getAlarm`: the time in ms since the epoch, if one is set.
    pub async fn get(&self, class: &str, id: &str) -> Result<Option<i64>, BindingError> {
        self.store.get(class, id).await
    }

    /// `deleteAlarm`.
    pub async fn delete(&self, class: &str, id: &str) -> Result<(), BindingError> {
        self.store.delete(class, id).await
    }

    /// Start the firing task, once (needs a tokio runtime; the CLI has none
    /// and fires nothing).
    fn start(self: &Arc<Self>) {
        let mut task = self.task.lock().unwrap_or_else(|e| e.into_inner());
        if task.is_some() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let handle = runtime.spawn(run(Arc::downgrade(self), self.wake.clone()));
        *task = Some(handle.abort_handle());
    }

    /// Claim every due alarm and fire it in a task of its own; in how many
    /// ms the next one is due.
    async fn fire_due(self: &Arc<Self>) -> Result<Option<i64>, BindingError> {
        let (due, next) = self.store.claim_due().await?;
        for alarm in due {
            let alarms = self.clone();
            tokio::spawn(async move { alarms.fire(alarm).await });
        }
        Ok(next)
    }

    async fn fire(self: Arc<Self>, alarm: Claimed) {
        // The claim is kept while the handler runs (a cluster: else another
        // node would fire it again).
        let outcome = {
            let deliver = self.deliver(&alarm);
            tokio::pin!(deliver);
            let every = self.store.renew_every();
            loop {
                tokio::select! {
                    outcome = &mut deliver => break outcome,
                    _ = tokio::time::sleep(every.unwrap_or(MAX_SLEEP)), if every.is_some() => {
                        if let Err(e) = self.store.renew(&alarm).await {
                            tracing::warn!(worker = %self.script, "renewing an alarm's claim failed: {}", e.message);
                        }
                    }
                }
            }
        };
        let (class, id, retry) = (&alarm.class, &alarm.id, alarm.retry);
        let settled = match outcome {
            Ok(()) => self.store.finish(&alarm).await,
            Err(why) if retry >= MAX_RETRIES => {
                tracing::warn!(worker = %self.script, "{class} {id}: alarm dropped after {MAX_RETRIES} retries: {why}");
                self.store.finish(&alarm).await
            }
            Err(why) => {
                tracing::info!(worker = %self.script, "{class} {id}: alarm failed ({why}); retrying");
                let retried = self.store.retry(&alarm, 1000 * (1i64 << retry)).await;
                self.wake.notify_one();
                retried
            }
        };
        if let Err(e) = settled {
            tracing::warn!(worker = %self.script, "{class} {id}: settling an alarm failed: {}", e.message);
        }
    }

    /// Run the object's `alarm()`: here, or (a cluster) on the node that
    /// holds the object's lease.
    async fn deliver(&self, alarm: &Claimed) -> Result<(), String> {
        let (class, id) = (&alarm.class, &alarm.id);
        let Some(worker) = self.services.worker(&self.script) else {
            return Err("the worker is not running".to_string());
        };
        let (parts, ()) = http::Request::post(format!(
            "http://{AUTHORITY_DURABLE}/{class}/{id}/{OP_ALARM}"
        ))
        .header(http::header::HOST, AUTHORITY_DURABLE)
        // the retry count the object's `alarm(alarm_info)` sees
        .header(HEADER_ALARM_RETRY, alarm.retry)
        .body(())
        .map_err(|e| e.to_string())?
        .into_parts();
        let key = format!("{class}/{id}");
        if let Some(placement) = self.stores.placement() {
            match placement
                .place(&lease_name(&self.script, class, id))
                .await
                .map_err(|e| e.message)?
            {
                Place::Here { fresh, .. } => {
                    if fresh {
                        worker.forget_object(&key);
                    }
                }
                Place::There(url) => {
                    let body = Empty::<Bytes>::new()
                        .map_err(|never| match never {})
                        .boxed_unsync();
                    let path = format!("/do/{}/{class}/{id}/{OP_ALARM}", self.script);
                    let response = placement
                        .forward(&url, &path, parts, body)
                        .await
                        .map_err(|e| e.message)?;
                    return answered(response.status());
                }
            }
        }
        let response = worker
            .durable_object(
                &key,
                http::Request::from_parts(parts, Empty::<Bytes>::new()),
            )
            .await;
        answered(response.status())
    }
}

fn answered(status: http::StatusCode) -> Result<(), String> {
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("alarm() answered {status}"))
    }
}

impl Drop for Alarms {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// The firing loop: fire what is due, sleep until the next alarm (or a
/// wake-up from `setAlarm`, or the store's poll interval), while the
/// worker's bindings live.
async fn run(alarms: Weak<Alarms>, wake: Arc<Notify>) {
    loop {
        let Some(this) = alarms.upgrade() else { return };
        let most = this.store.poll_interval();
        let sleep = match this.fire_due().await {
            Ok(Some(next)) => Duration::from_millis(next.clamp(0, i64::MAX) as u64).min(most),
            Ok(None) => most,
            Err(e) => {
                tracing::warn!(worker = %this.script, "reading the alarm schedule failed: {}", e.message);
                most
            }
        };
        drop(this);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {}
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::NoServices;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[tokio::test(flavor = "multi_thread")]
    async fn set_replace_delete_and_retry_when_the_handler_cannot_run() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::new(dir.path());
        let alarms = Alarms::open(&stores, "w", Arc::new(NoServices));
        assert_eq!(alarms.get("Room", ID).await.unwrap(), None);
        let later = now_ms() + 3_600_000;
        alarms.set("Room", ID, later).await.unwrap();
        alarms.set("Room", ID, later + 1).await.unwrap();
        assert_eq!(alarms.get("Room", ID).await.unwrap(), Some(later + 1));
        alarms.delete("Room", ID).await.unwrap();
        assert_eq!(alarms.get("Room", ID).await.unwrap(), None);

        // Due now, but no worker runs the handler: taken off, then put back
        // for a retry about a second later.
        alarms.set("Room", ID, 0).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let retry_at = loop {
            if let Some(at) = alarms.get("Room", ID).await.unwrap()
                && at > 0
            {
                break at;
            }
            assert!(std::time::Instant::now() < deadline, "never retried");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(retry_at > now_ms() - 1000 && retry_at <= now_ms() + 1000);
        let retry: u32 = stores
            .database(&stores.alarms_path("w"))
            .unwrap()
            .with_blocking(|c| {
                c.query_row("SELECT retry FROM alarms", [], |r| r.get(0))
                    .unwrap()
            });
        assert_eq!(retry, 1);

        // Reopened (a restart), the schedule is still there.
        drop(alarms);
        let alarms = Alarms::open(&stores, "w", Arc::new(NoServices));
        assert!(alarms.get("Room", ID).await.unwrap().is_some());
    }

    /// What either store does: set/get/delete, claiming what is due (and
    /// hiding it while it fires), finishing, retrying unless re-set.
    async fn store_semantics(store: &dyn AlarmStore) {
        let later = now_ms() + 3_600_000;
        assert_eq!(store.get("Room", ID).await.unwrap(), None);
        store.set("Room", ID, later).await.unwrap();
        store.set("Room", ID, later + 1).await.unwrap();
        assert_eq!(store.get("Room", ID).await.unwrap(), Some(later + 1));
        let (due, next) = store.claim_due().await.unwrap();
        assert!(due.is_empty());
        let next = next.unwrap();
        assert!(next > 3_500_000 && next <= 3_600_001, "{next}");
        store.delete("Room", ID).await.unwrap();
        assert_eq!(store.get("Room", ID).await.unwrap(), None);
        assert_eq!(store.claim_due().await.unwrap(), (vec![], None));

        // Due: claimed once, invisible while it fires, gone when finished.
        store.set("Room", ID, 1).await.unwrap();
        let (due, _) = store.claim_due().await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].class.as_str(), due[0].id.as_str(), due[0].retry),
            ("Room", ID, 0)
        );
        assert!(store.claim_due().await.unwrap().0.is_empty());
        assert_eq!(store.get("Room", ID).await.unwrap(), None);
        store.finish(&due[0]).await.unwrap();
        assert_eq!(store.get("Room", ID).await.unwrap(), None);
        assert_eq!(store.claim_due().await.unwrap(), (vec![], None));

        // Failed: back with one retry more, after the delay; a deleteAlarm
        // during the firing does not cancel the retry.
        store.set("Room", ID, 1).await.unwrap();
        let (due, _) = store.claim_due().await.unwrap();
        store.delete("Room", ID).await.unwrap();
        store.retry(&due[0], 60_000).await.unwrap();
        let at = store.get("Room", ID).await.unwrap().unwrap();
        assert!((at - now_ms() - 60_000).abs() < 5_000, "{at}");
        store.set("Room", ID, 1).await.unwrap(); // due now, retry reset
        let (due, _) = store.claim_due().await.unwrap();
        assert_eq!(due[0].retry, 0);
        store.retry(&due[0], 0).await.unwrap();
        let (due, _) = store.claim_due().await.unwrap();
        assert_eq!(due[0].retry, 1);

        // The handler set a new alarm before failing (or finishing): it stays.
        store.set("Room", ID, later).await.unwrap();
        store.retry(&due[0], 0).await.unwrap();
        store.finish(&due[0]).await.unwrap();
        assert_eq!(store.get("Room", ID).await.unwrap(), Some(later));
        store.delete("Room", ID).await.unwrap();
    }

    #[tokio::test]
    async fn the_sqlite_store() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::new(dir.path());
        store_semantics(&SqliteAlarms::new(&stores, "w")).await;
    }

    #[tokio::test]
    async fn the_postgres_store() {
        let database = taipan_cluster::testing::TestDatabase::create().await;
        let db = database.connect().await;
        store_semantics(&PostgresAlarms::new(db.clone(), "w")).await;
        // Another worker's objects are another schedule.
        let other = PostgresAlarms::new(db, "other");
        other.set("Room", ID, 1).await.unwrap();
        let mine = PostgresAlarms::new(database.connect().await, "w");
        assert_eq!(mine.get("Room", ID).await.unwrap(), None);
        assert!(mine.claim_due().await.unwrap().0.is_empty());
        assert_eq!(other.claim_due().await.unwrap().0.len(), 1);
    }

    /// Nodes claiming at once: each due alarm is claimed by exactly one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_claims_never_share_an_alarm() {
        let database = taipan_cluster::testing::TestDatabase::create().await;
        let db = database.connect().await;
        const ALARMS: usize = 300;
        let setter = PostgresAlarms::new(db.clone(), "w");
        for n in 0..ALARMS {
            setter.set("Room", &format!("{n:064x}"), 1).await.unwrap();
        }
        let nodes: Vec<Arc<PostgresAlarms>> = (0..4)
            .map(|_| Arc::new(PostgresAlarms::new(db.clone(), "w")))
            .collect();
        let claimers = nodes.iter().map(|node| {
            let node = node.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                for _ in 0..10 {
                    mine.extend(node.claim_due().await.unwrap().0);
                }
                mine
            })
        });
        let mut ids: Vec<String> = Vec::new();
        for claimer in claimers {
            ids.extend(claimer.await.unwrap().into_iter().map(|c| c.id));
        }
        let claimed = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), claimed, "an alarm was claimed twice");
        assert_eq!(claimed, ALARMS);
    }

    /// A node that dies mid-fire: its claim lapses and another node fires
    /// the alarm again (a retry); the dead firing cannot settle it after.
    #[tokio::test]
    async fn a_lapsed_claim_is_claimed_again() {
        let database = taipan_cluster::testing::TestDatabase::create().await;
        let db = database.connect().await;
        let claim = Duration::from_millis(300);
        let a = PostgresAlarms::with_claim(db.clone(), "w", claim);
        let b = PostgresAlarms::with_claim(db, "w", claim);
        a.set("Room", ID, 1).await.unwrap();
        let (dead, _) = a.claim_due().await.unwrap();
        assert_eq!(dead.len(), 1);
        let (none, next) = b.claim_due().await.unwrap();
        assert!(none.is_empty());
        assert!(next.unwrap() <= 300, "{next:?}");
        // Renewed, it stays claimed past the first lapse.
        tokio::time::sleep(Duration::from_millis(200)).await;
        a.renew(&dead[0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(b.claim_due().await.unwrap().0.is_empty());
        // Not renewed any more.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let (again, _) = b.claim_due().await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].retry, 1);
        a.finish(&dead[0]).await.unwrap();
        a.retry(&dead[0], 0).await.unwrap();
        assert!(a.claim_due().await.unwrap().0.is_empty(), "still b's");
        b.finish(&again[0]).await.unwrap();
        assert_eq!(b.claim_due().await.unwrap(), (vec![], None));
    }
}
