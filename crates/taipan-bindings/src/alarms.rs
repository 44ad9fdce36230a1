//! Durable Object alarms: `ctx.storage.setAlarm(ms)` records when an object
//! wants its `alarm()` handler called, and a task per worker fires the due
//! ones through `Worker::durable_object`. A handler that fails is retried
//! with exponential backoff (1 s, 2 s, 4 s, …) up to [`MAX_RETRIES`] times,
//! as Cloudflare does. The schedule is one SQLite file per worker
//! (`state/do/<worker>/_alarms.sqlite`), so alarms survive restarts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Empty;
use rusqlite::OptionalExtension;
use taipan_guest::contract::{AUTHORITY_DURABLE, HEADER_ALARM_RETRY, OP_ALARM};
use tokio::sync::Notify;

use crate::protocol::BindingError;
use crate::service::Services;
use crate::store::{Database, Stores};

/// Retries of a failing `alarm()` before the alarm is dropped.
pub const MAX_RETRIES: u32 = 6;
/// The longest the task sleeps without looking (a clock change, another
/// process writing the schedule).
const MAX_SLEEP: Duration = Duration::from_secs(30);

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS alarms (
    class TEXT NOT NULL, id TEXT NOT NULL, at_ms INTEGER NOT NULL, retry INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (class, id)) WITHOUT ROWID";

/// Worker-lifetime: the alarm schedule of one worker's objects, and the task
/// that fires it (started with the first alarm; stopped when dropped).
pub struct Alarms {
    stores: Arc<Stores>,
    path: PathBuf,
    script: String,
    services: Arc<dyn Services>,
    /// The schedule, opened (and its table made) on first use.
    db: OnceLock<Database>,
    wake: Arc<Notify>,
    task: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Alarms {
    pub fn open(stores: &Arc<Stores>, script: &str, services: Arc<dyn Services>) -> Arc<Self> {
        let alarms = Arc::new(Self {
            stores: stores.clone(),
            path: stores.alarms_path(script),
            script: script.to_string(),
            services,
            db: OnceLock::new(),
            wake: Arc::new(Notify::new()),
            task: Mutex::new(None),
        });
        if alarms.path.exists() {
            alarms.start();
        }
        alarms
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

    /// `setAlarm`: replaces the object's alarm.
    pub async fn set(
        self: &Arc<Self>,
        class: &str,
        id: &str,
        at_ms: i64,
    ) -> Result<(), BindingError> {
        let (class, id) = (class.to_string(), id.to_string());
        self.database()?
            .with(move |conn| {
                conn.execute(
                    "INSERT INTO alarms (class, id, at_ms, retry) VALUES (?1, ?2, ?3, 0)
                     ON CONFLICT(class, id) DO UPDATE SET at_ms = excluded.at_ms, retry = 0",
                    (class, id, at_ms),
                )
            })
            .await?;
        self.start();
        self.wake.notify_one();
        Ok(())
    }

    /// `getAlarm`: the time in ms since the epoch, if one is set.
    pub async fn get(&self, class: &str, id: &str) -> Result<Option<i64>, BindingError> {
        let (class, id) = (class.to_string(), id.to_string());
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
    }

    /// `deleteAlarm`.
    pub async fn delete(&self, class: &str, id: &str) -> Result<(), BindingError> {
        let (class, id) = (class.to_string(), id.to_string());
        self.database()?
            .with(move |conn| {
                conn.execute(
                    "DELETE FROM alarms WHERE class = ?1 AND id = ?2",
                    (class, id),
                )
            })
            .await?;
        Ok(())
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

    /// Take every due alarm off the schedule and fire it in a task of its
    /// own; the time of the next one.
    async fn fire_due(self: &Arc<Self>) -> Result<Option<i64>, BindingError> {
        let now = now_ms();
        let db = self.database()?;
        let (due, next) = db
            .with(move |conn| {
                let tx = conn.transaction()?;
                let due: Vec<(String, String, u32)> = tx
                    .prepare("SELECT class, id, retry FROM alarms WHERE at_ms <= ?1")?
                    .query_map([now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                // Taken off before it runs: a handler may set the next alarm.
                tx.execute("DELETE FROM alarms WHERE at_ms <= ?1", [now])?;
                let next: Option<i64> =
                    tx.query_row("SELECT min(at_ms) FROM alarms", [], |r| r.get(0))?;
                tx.commit()?;
                Ok((due, next))
            })
            .await?;
        for (class, id, retry) in due {
            let alarms = self.clone();
            tokio::spawn(async move { alarms.fire(class, id, retry).await });
        }
        Ok(next)
    }

    async fn fire(self: Arc<Self>, class: String, id: String, retry: u32) {
        let outcome = match self.services.worker(&self.script) {
            None => Err("the worker is not running".to_string()),
            Some(worker) => {
                let request = http::Request::post(format!(
                    "http://{AUTHORITY_DURABLE}/{class}/{id}/{OP_ALARM}"
                ))
                .header(http::header::HOST, AUTHORITY_DURABLE)
                // the retry count the object's `alarm(alarm_info)` sees
                .header(HEADER_ALARM_RETRY, retry)
                .body(Empty::<bytes::Bytes>::new());
                match request {
                    Ok(request) => {
                        let response = worker
                            .durable_object(&format!("{class}/{id}"), request)
                            .await;
                        if response.status().is_success() {
                            Ok(())
                        } else {
                            Err(format!("alarm() answered {}", response.status()))
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        let Err(why) = outcome else { return };
        if retry >= MAX_RETRIES {
            tracing::warn!(worker = %self.script, "{class} {id}: alarm dropped after {MAX_RETRIES} retries: {why}");
            return;
        }
        tracing::info!(worker = %self.script, "{class} {id}: alarm failed ({why}); retrying");
        let at = now_ms() + 1000 * (1i64 << retry);
        let retried = match self.database() {
            // Unless the handler set a new alarm before it failed.
            Ok(db) => db
                .with(move |conn| {
                    conn.execute(
                        "INSERT OR IGNORE INTO alarms (class, id, at_ms, retry) VALUES (?1, ?2, ?3, ?4)",
                        (class, id, at, retry + 1),
                    )
                })
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match retried {
            Ok(()) => self.wake.notify_one(),
            Err(e) => {
                tracing::warn!(worker = %self.script, "scheduling an alarm retry failed: {}", e.message)
            }
        }
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
/// wake-up from `setAlarm`), while the worker's bindings live.
async fn run(alarms: Weak<Alarms>, wake: Arc<Notify>) {
    loop {
        let Some(this) = alarms.upgrade() else { return };
        let sleep = match this.fire_due().await {
            Ok(Some(next)) => {
                Duration::from_millis((next - now_ms()).clamp(0, i64::MAX) as u64).min(MAX_SLEEP)
            }
            Ok(None) => MAX_SLEEP,
            Err(e) => {
                tracing::warn!(worker = %this.script, "reading the alarm schedule failed: {}", e.message);
                MAX_SLEEP
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
        let retry: u32 = alarms.database().unwrap().with_blocking(|c| {
            c.query_row("SELECT retry FROM alarms", [], |r| r.get(0))
                .unwrap()
        });
        assert_eq!(retry, 1);

        // Reopened (a restart), the schedule is still there.
        drop(alarms);
        let alarms = Alarms::open(&stores, "w", Arc::new(NoServices));
        assert!(alarms.get("Room", ID).await.unwrap().is_some());
    }
}
