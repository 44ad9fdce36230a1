//! Where binding state lives: a state folder (`.taipan/state` in dev, the
//! data dir's `state` in serve) holding one SQLite file per KV namespace and
//! D1 database, and per R2 bucket an index (SQLite) and a folder of objects.
//!
//! A process opens each database file once ([`Stores`]), so every worker
//! version and request bound to it shares one connection and its writes are
//! serialized; WAL mode lets the `taipan d1` CLI read and write alongside.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rusqlite::Connection;
use sha2::Digest;

use crate::protocol::BindingError;
use crate::queues::postgres::PostgresQueueStore;
use crate::queues::sqlite::SqliteQueueStore;
use crate::queues::{QueueStore, Queues};
use crate::ratelimit::Counters;
use crate::workflows::postgres::PostgresWorkflowStore;
use crate::workflows::sqlite::SqliteWorkflowStore;
use crate::workflows::store::WorkflowStore;

/// Restores made by this process (names their files).
static RESTORES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long a write waits for another process holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One SQLite database, shared by everything in the process that binds it.
#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Handle>>,
    /// A replicated database that failed refuses all work: it must be
    /// restored again. Kept outside the lock, which a write holds while it
    /// waits for PostgreSQL (async threads must never wait for it).
    poisoned: Arc<std::sync::atomic::AtomicBool>,
}

enum Handle {
    /// A file of this node's.
    Plain(Connection),
    /// Cluster mode: a single-owner database (a Durable Object's storage,
    /// a D1 database) whose commits reach the cluster before `with` returns.
    Replicated(Replica),
}

/// A replicated database in a file of its own (one per restore: an old
/// handle closing never touches a newer one's WAL), removed when the last
/// user lets go.
struct Replica(Option<Box<taipan_cluster::replica::ReplicatedDb>>);

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(replica) = self.0.take() {
            replica.close();
        }
    }
}

/// The setup a replicated database gets after each restore.
fn prepare(conn: &mut Connection, schema: &str) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.execute_batch(schema)
}

impl Database {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating \"{}\"", parent.display()))?;
        }
        let conn = Connection::open(path)
            .with_context(|| format!("opening the database \"{}\"", path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(Self {
            conn: Arc::new(Mutex::new(Handle::Plain(conn))),
            poisoned: Arc::default(),
        })
    }

    /// Run `f` on the connection on a blocking thread. In a cluster, a
    /// write `f` committed has reached the cluster when this returns Ok.
    pub async fn with<T, F>(&self, f: F) -> Result<T, BindingError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (conn, poisoned) = (self.conn.clone(), self.poisoned.clone());
        tokio::task::spawn_blocking(move || {
            let mut handle = conn.lock().unwrap_or_else(|e| e.into_inner());
            match &mut *handle {
                Handle::Plain(conn) => f(conn).map_err(BindingError::from),
                Handle::Replicated(Replica(Some(replica))) => match replica.with(f) {
                    Ok(result) => result.map_err(BindingError::from),
                    Err(e) => {
                        poisoned.store(true, std::sync::atomic::Ordering::Release);
                        Err(replica_error(replica.name(), e))
                    }
                },
                Handle::Replicated(Replica(None)) => {
                    Err(BindingError::error("the database was closed: retry"))
                }
            }
        })
        .await
        .map_err(|e| BindingError::error(format!("the storage task failed: {e}")))?
    }

    /// Run `f` on the connection here (setup, CLI: files of this node; a
    /// replicated database is only ever used through [`Database::with`]).
    pub fn with_blocking<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut handle = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *handle {
            Handle::Plain(conn) => f(conn),
            Handle::Replicated(_) => {
                panic!(
                    "a replicated database is used through Database::with, which ships its writes"
                )
            }
        }
    }

    /// Whether the replicated database refuses work after a failure (it
    /// must be restored again).
    fn poisoned(&self) -> bool {
        self.poisoned.load(std::sync::atomic::Ordering::Acquire)
    }
}

fn replica_error(name: &str, e: taipan_cluster::replica::ReplicaError) -> BindingError {
    match e {
        taipan_cluster::replica::ReplicaError::LostLease { .. } => BindingError::error(format!(
            "{name} moved to another node of the cluster during the call; nothing was saved: retry"
        )),
        taipan_cluster::replica::ReplicaError::Failed(e) => BindingError::error(format!(
            "the write to {name} could not be made durable ({e:#}); nothing was acknowledged: retry"
        )),
    }
}

/// The file name (without extension) that holds the storage `id` of a KV
/// namespace, D1 database or R2 bucket.
///
/// Config ids are whatever the user wrote, placeholders such as
/// `<YOUR_KV_NAMESPACE_ID>` included (wrangler accepts any id for local
/// state). A plain id (letters, digits, `-`, `_`, `.`; not starting with `.`
/// nor ending in `.sqlite`, whose name an R2 bucket's index takes; up to 128
/// bytes) is its own name, so existing state keeps its files. Any other id
/// becomes `~<its plain characters>-<sha256 prefix>`: `~` never appears in a
/// plain id and the hash tells ids apart that share their plain characters,
/// so no two ids share a file.
pub fn file_stem(id: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && !id.ends_with(".sqlite")
        && id.chars().all(plain)
    {
        return id.to_string();
    }
    let kept: String = id.chars().filter(|&c| plain(c)).take(48).collect();
    let digest = sha2::Sha256::digest(id.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("~{}-{hex}", kept.trim_start_matches('.'))
}

/// Process-lifetime: the state folder and the databases opened in it.
pub struct Stores {
    root: PathBuf,
    open: Mutex<HashMap<PathBuf, Database>>,
    shared: Arc<Shared>,
}

/// What every worker of the process reaches by name alone, whichever state
/// folder it has: queues and rate-limit counters.
struct Shared {
    /// Where the queue store lives (the first state folder's).
    queues_path: PathBuf,
    queues: Mutex<Option<Arc<Queues>>>,
    workflows: Mutex<Option<Arc<dyn WorkflowStore>>>,
    /// Wakes each workflow's engine, by workflow name.
    workflow_wakers: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    counters: Mutex<HashMap<String, Arc<Counters>>>,
    /// Cluster mode: the shared state every node of the cluster sees.
    cluster: Option<Arc<taipan_cluster::Cluster>>,
    /// Cluster mode: where single-owner things run (set once the node
    /// knows its id and the nodes' secret).
    placement: std::sync::OnceLock<Arc<crate::placement::Placement>>,
    /// Cluster mode: the single-owner databases this node restored, by
    /// lease name, with the lease token they were restored under.
    replicated: Mutex<HashMap<String, (i64, Database)>>,
    /// One restore at a time (two would share the local file).
    restoring: tokio::sync::Mutex<()>,
}

impl Stores {
    pub fn new(root: impl Into<PathBuf>) -> Arc<Self> {
        Self::with(root.into(), None)
    }

    /// The stores of a node of a cluster: what the cluster shares (KV
    /// namespaces) lives in its database, the rest in `root` as usual.
    pub fn clustered(root: impl Into<PathBuf>, cluster: Arc<taipan_cluster::Cluster>) -> Arc<Self> {
        Self::with(root.into(), Some(cluster))
    }

    fn with(root: PathBuf, cluster: Option<Arc<taipan_cluster::Cluster>>) -> Arc<Self> {
        let shared = Arc::new(Shared {
            queues_path: root.join("queues.sqlite"),
            queues: Mutex::default(),
            workflows: Mutex::default(),
            workflow_wakers: Mutex::default(),
            counters: Mutex::default(),
            cluster,
            placement: std::sync::OnceLock::new(),
            replicated: Mutex::default(),
            restoring: tokio::sync::Mutex::new(()),
        });
        Arc::new(Self {
            root,
            open: Mutex::default(),
            shared,
        })
    }

    /// Another state folder whose workers share `other`'s queues and
    /// rate-limit counters (dev serving several projects).
    pub fn sharing(root: impl Into<PathBuf>, other: &Stores) -> Arc<Self> {
        Arc::new(Self {
            root: root.into(),
            open: Mutex::default(),
            shared: other.shared.clone(),
        })
    }

    /// The cluster this node belongs to, in cluster mode.
    pub fn cluster(&self) -> Option<&Arc<taipan_cluster::Cluster>> {
        self.shared.cluster.as_ref()
    }

    /// Cluster mode: where Durable Objects and D1 databases run.
    pub fn placement(&self) -> Option<&Arc<crate::placement::Placement>> {
        self.shared.placement.get()
    }

    /// Set where single-owner things run (once, before workers load).
    pub fn set_placement(&self, placement: Arc<crate::placement::Placement>) {
        let shared = Arc::downgrade(&self.shared);
        // A lost lease's database is not ours to use any more.
        placement.on_lost(move |name| {
            if let Some(shared) = shared.upgrade() {
                shared
                    .replicated
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
            }
        });
        let _ = self.shared.placement.set(placement);
    }

    /// Cluster mode: the database of the single-owner thing `name` (whose
    /// lease this node holds), kept at `path`: restored from the cluster
    /// when this node took the lease, then `schema` run on it.
    pub async fn replicated(
        &self,
        name: &str,
        path: PathBuf,
        schema: &'static str,
    ) -> Result<Database, BindingError> {
        let placement = self
            .placement()
            .ok_or_else(|| BindingError::error("not a node of a cluster"))?;
        let lease = placement.held(name).ok_or_else(|| {
            BindingError::error(format!(
                "{name} moved to another node of the cluster: retry"
            ))
        })?;
        let cached = |shared: &Shared| {
            let mut open = shared.replicated.lock().unwrap_or_else(|e| e.into_inner());
            match open.get(name) {
                Some((token, db)) if *token == lease.token && !db.poisoned() => Some(db.clone()),
                Some(_) => {
                    open.remove(name);
                    None
                }
                None => None,
            }
        };
        if let Some(db) = cached(&self.shared) {
            return Ok(db);
        }
        let _one_at_a_time = self.shared.restoring.lock().await;
        if let Some(db) = cached(&self.shared) {
            return Ok(db);
        }
        let cluster = placement.cluster().clone();
        // A file of its own per restore (see `Replica`).
        let restore = RESTORES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = path.with_extension(format!("t{}-{restore}.sqlite", lease.token));
        let fence = taipan_cluster::replica::Fence {
            lease: name.to_string(),
            owner: lease.owner.clone(),
            token: lease.token,
        };
        let replica = taipan_cluster::replica::ReplicatedDb::restore(
            &cluster.db,
            &cluster.objects,
            name,
            &path,
            fence,
        )
        .await
        .map_err(|e| replica_error(name, e))?;
        let db = Database {
            conn: Arc::new(Mutex::new(Handle::Replicated(Replica(Some(Box::new(
                replica,
            )))))),
            poisoned: Arc::default(),
        };
        db.with(move |conn| prepare(conn, schema)).await?;
        self.shared
            .replicated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), (lease.token, db.clone()));
        Ok(db)
    }

    /// Where the queue store is.
    pub fn queues_path(&self) -> &Path {
        &self.shared.queues_path
    }

    /// The process's queues (opened on first use, by the process that
    /// delivers them): in the cluster's database on a node of a cluster,
    /// every node sending and delivering; else in the state folder.
    pub fn queues(&self) -> anyhow::Result<Arc<Queues>> {
        let mut queues = self.shared.queues.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queues) = &*queues {
            return Ok(queues.clone());
        }
        let store: Arc<dyn QueueStore> = match self.cluster() {
            Some(cluster) => PostgresQueueStore::new(cluster.db.clone()),
            None => SqliteQueueStore::open(self.database(&self.shared.queues_path)?)?,
        };
        let opened = Queues::new(store);
        *queues = Some(opened.clone());
        Ok(opened)
    }

    /// The process's workflow instances (opened on first use, by the
    /// process that runs them): in the cluster's database on a node of a
    /// cluster, every node creating and running them; else in the state
    /// folder.
    pub fn workflows(&self) -> anyhow::Result<Arc<dyn WorkflowStore>> {
        let mut workflows = self
            .shared
            .workflows
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &*workflows {
            return Ok(store.clone());
        }
        let store: Arc<dyn WorkflowStore> = match self.cluster() {
            Some(cluster) => PostgresWorkflowStore::new(cluster.db.clone()),
            None => {
                let path = self.shared.queues_path.with_file_name("workflows.sqlite");
                SqliteWorkflowStore::open(self.database(&path)?)?
            }
        };
        *workflows = Some(store.clone());
        Ok(store)
    }

    /// What wakes the engine of workflow `name`.
    pub fn workflow_waker(&self, name: &str) -> Arc<tokio::sync::Notify> {
        let mut wakers = self
            .shared
            .workflow_wakers
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        wakers.entry(name.to_string()).or_default().clone()
    }

    /// The counters of the rate-limit namespace `id`.
    pub fn rate_limit_counters(&self, id: &str) -> Arc<Counters> {
        let mut counters = self
            .shared
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counters.entry(id.to_string()).or_default().clone()
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn kv_path(&self, id: &str) -> PathBuf {
        self.root
            .join("kv")
            .join(format!("{}.sqlite", file_stem(id)))
    }

    pub fn d1_path(&self, id: &str) -> PathBuf {
        self.root
            .join("d1")
            .join(format!("{}.sqlite", file_stem(id)))
    }

    pub fn r2_index(&self, bucket: &str) -> PathBuf {
        self.root
            .join("r2")
            .join(format!("{}.sqlite", file_stem(bucket)))
    }

    pub fn r2_blobs(&self, bucket: &str) -> PathBuf {
        self.root.join("r2").join(file_stem(bucket))
    }

    /// A Durable Object's storage: one file per object.
    pub fn object_path(&self, script: &str, class: &str, id: &str) -> PathBuf {
        self.root
            .join("do")
            .join(script)
            .join(class)
            .join(format!("{id}.sqlite"))
    }

    /// The alarm schedule of a worker's Durable Objects.
    pub fn alarms_path(&self, script: &str) -> PathBuf {
        self.root.join("do").join(script).join("_alarms.sqlite")
    }

    pub fn database(&self, path: &Path) -> anyhow::Result<Database> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = open.get(path) {
            return Ok(db.clone());
        }
        let db = Database::open(path)?;
        open.insert(path.to_path_buf(), db.clone());
        Ok(db)
    }
}

#[cfg(test)]
mod tests {
    use super::file_stem;

    #[test]
    fn plain_ids_keep_their_names_and_others_get_safe_distinct_ones() {
        assert_eq!(file_stem("notes-db_1.v2"), "notes-db_1.v2");
        let ids = [
            "<YOUR_KV_NAMESPACE_ID>",
            "YOUR_KV_NAMESPACE_ID",
            "<YOUR_KV_NAMESPACE_ID >",
            "../../etc/passwd",
            ".hidden",
            "a/b",
            "a\\b",
            "ünïcode",
            "bucket.sqlite",
            &"x".repeat(300),
        ];
        let stems: Vec<String> = ids.iter().map(|id| file_stem(id)).collect();
        for (id, stem) in ids.iter().zip(&stems) {
            assert!(
                stem.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)),
                "{id:?} -> {stem:?}"
            );
            assert!(!stem.starts_with('.') && stem.len() <= 128, "{stem:?}");
        }
        let mut unique = stems.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), stems.len(), "{stems:?}");
        assert!(
            stems[0].starts_with("~YOUR_KV_NAMESPACE_ID-"),
            "{}",
            stems[0]
        );
    }
}
