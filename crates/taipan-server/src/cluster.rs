//! A node of a cluster: the control plane in PostgreSQL, builds and assets
//! in object storage, and the loop that keeps this node serving what the
//! database says (a `NOTIFY` wakes it at once; it also polls every
//! [`POLL`], so a lost notification costs at most that).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use async_trait::async_trait;
use taipan_cluster::Cluster;
use taipan_cluster::control::{CHANNEL, Control, DeployLock};
use taipan_cluster::nodes::{self, NodeInfo};

use crate::control::{ControlPlane, Revision};
use crate::serve::ServeState;
use crate::store::{DataDir, VersionRecord};

/// How often a node checks the control plane without being notified.
pub const POLL: Duration = Duration::from_secs(1);
/// How long a version that failed to load here waits before another try.
const RETRY_FAILED: Duration = Duration::from_secs(10);

pub struct ClusterNode {
    pub cluster: Arc<Cluster>,
    /// This node's id (kept in the data dir, so a restart is the same node).
    pub id: String,
    /// Which machine code this node can load (see `Runtime::compiled_fingerprint`).
    fingerprint: String,
    /// The revision of each worker this node serves.
    loaded: tokio::sync::Mutex<HashMap<String, Revision>>,
    /// Revisions that failed to load here, and when.
    failed: std::sync::Mutex<HashMap<String, (Revision, Instant)>>,
}

impl ClusterNode {
    pub fn new(cluster: Arc<Cluster>, data: &DataDir, fingerprint: String) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            cluster,
            id: data.node_id()?,
            fingerprint,
            loaded: tokio::sync::Mutex::default(),
            failed: std::sync::Mutex::default(),
        }))
    }

    fn control(&self) -> Control<'_> {
        Control {
            db: &self.cluster.db,
            secrets: &self.cluster.secrets,
        }
    }

    /// Take the cluster-wide deploy lock of `worker`, or say who holds it.
    pub async fn lock_deploy(&self, worker: &str) -> Result<Option<DeployLock>> {
        self.control().lock_deploy(worker).await
    }

    /// Put a version's build and assets where every node finds them.
    pub async fn share_build(&self, data: &DataDir, record: &VersionRecord) -> Result<()> {
        let objects = &self.cluster.objects;
        objects
            .put_tree(
                &artifact_key(&record.artifact),
                &data.artifacts().join(&record.artifact),
            )
            .await
            .context("sharing the build")?;
        if let Some(assets) = &record.assets {
            objects
                .put_tree(&assets_key(assets), &data.assets(assets))
                .await
                .context("sharing the assets")?;
        }
        Ok(())
    }

    /// Share the machine code this node compiled for a build with nodes of
    /// the same fingerprint (CPU, engine settings, taipan version), so they
    /// load it instead of compiling for seconds.
    pub async fn share_compiled(&self, data: &DataDir, record: &VersionRecord) {
        let path = compiled_path(data, record);
        let key = compiled_key(&record.artifact, &self.fingerprint);
        let shared = async {
            if self.cluster.objects.exists(&key).await? {
                return Ok(());
            }
            let bytes = tokio::fs::read(&path).await?;
            let signature = self.cluster.secrets.sign(&bytes)?;
            // The signature first: a reader that finds the code finds it too.
            self.cluster
                .objects
                .put(&format!("{key}.sig"), signature)
                .await?;
            self.cluster.objects.put_new(&key, bytes).await.map(|_| ())
        };
        if let Err(e) = shared.await {
            tracing::warn!("could not share the compiled {}: {e:#}", record.artifact);
        }
    }

    /// Bring a version's build and assets into this node's data dir, with
    /// machine code for this node when another node made it.
    pub async fn fetch_build(&self, data: &DataDir, record: &VersionRecord) -> Result<()> {
        let objects = &self.cluster.objects;
        let dir = data.artifacts().join(&record.artifact);
        if taipan_guest::artifact::Artifact::open(&dir).is_none()
            && !objects
                .get_tree(&artifact_key(&record.artifact), &dir)
                .await?
        {
            return Err(anyhow!(
                "the build {} of {} {} is not in the object storage",
                record.artifact,
                record.worker,
                record.id
            ));
        }
        let compiled = compiled_path(data, record);
        let key = compiled_key(&record.artifact, &self.fingerprint);
        if !compiled.exists()
            && let Some(bytes) = objects.get(&key).await?
        {
            // Machine code runs natively: load only what a node of this
            // cluster signed (the bucket alone cannot make a node run code).
            let signature = objects.get(&format!("{key}.sig")).await?;
            if signature.is_some_and(|sig| self.cluster.secrets.verify(&bytes, &sig)) {
                let tmp = tempfile::Builder::new()
                    .prefix(".fetched-")
                    .tempfile_in(compiled.parent().context("an artifact without a folder")?)?;
                tokio::fs::write(tmp.path(), &bytes).await?;
                tmp.persist(&compiled)?;
            } else {
                tracing::warn!("{key} is not signed by this cluster's key: compiling here instead");
            }
        }
        if let Some(assets) = &record.assets
            && !data.assets(assets).is_dir()
            && !objects
                .get_tree(&assets_key(assets), &data.assets(assets))
                .await?
        {
            return Err(anyhow!(
                "the assets {assets} of {} {} are not in the object storage",
                record.worker,
                record.id
            ));
        }
        Ok(())
    }

    /// Note that this node serves `revision` of `worker`, unless it already
    /// serves a later one: false means `revision` is stale, do not install.
    pub async fn advance(&self, worker: &str, revision: Revision) -> bool {
        let mut loaded = self.loaded.lock().await;
        let at = loaded.entry(worker.to_string()).or_insert(Revision::MIN);
        if *at >= revision {
            return false;
        }
        *at = revision;
        true
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        nodes::list(&self.cluster.db).await
    }
}

fn compiled_path(data: &DataDir, record: &VersionRecord) -> std::path::PathBuf {
    data.artifacts()
        .join(&record.artifact)
        .join(taipan_guest::artifact::COMPONENT_FILE)
        .with_extension("cwasm")
}

fn compiled_key(artifact: &str, fingerprint: &str) -> String {
    format!("compiled/{artifact}/{fingerprint}.cwasm")
}

fn artifact_key(id: &str) -> String {
    format!("artifacts/{id}.tar.zst")
}

fn assets_key(id: &str) -> String {
    format!("assets/{id}.tar.zst")
}

fn record_of(value: serde_json::Value) -> Result<VersionRecord> {
    serde_json::from_value(value).context("a version record in the database is unreadable")
}

fn number_of(id: &str) -> Option<i32> {
    id.strip_prefix('v')?.parse().ok()
}

#[async_trait]
impl ControlPlane for ClusterNode {
    async fn worker_names(&self) -> Result<Vec<String>> {
        Ok(self
            .control()
            .serving()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect())
    }

    async fn current(&self, worker: &str) -> Result<Option<VersionRecord>> {
        self.control()
            .current(worker)
            .await?
            .map(record_of)
            .transpose()
    }

    async fn versions(&self, worker: &str) -> Result<Vec<VersionRecord>> {
        self.control()
            .versions(worker)
            .await?
            .into_iter()
            .map(record_of)
            .collect()
    }

    async fn version(&self, worker: &str, id: &str) -> Result<Option<VersionRecord>> {
        let Some(number) = number_of(id) else {
            return Ok(None);
        };
        self.control()
            .version(worker, number)
            .await?
            .map(record_of)
            .transpose()
    }

    async fn next_version_id(&self, worker: &str) -> Result<String> {
        Ok(format!("v{}", self.control().next_number(worker).await?))
    }

    async fn publish(&self, record: &VersionRecord) -> Result<Revision> {
        let number = number_of(&record.id)
            .with_context(|| format!("{:?} is not a version id", record.id))?;
        self.control()
            .publish(&record.worker, number, &serde_json::to_value(record)?)
            .await
    }

    async fn set_current(&self, worker: &str, id: &str) -> Result<Option<Revision>> {
        let Some(number) = number_of(id) else {
            return Ok(None);
        };
        self.control().set_current(worker, number).await
    }

    async fn delete_worker(&self, worker: &str) -> Result<bool> {
        self.control().delete(worker).await
    }

    async fn secrets(&self, worker: &str) -> Result<BTreeMap<String, String>> {
        self.control().secrets(worker).await
    }

    async fn set_secret(
        &self,
        worker: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<Option<Revision>> {
        self.control().set_secret(worker, name, value).await
    }
}

/// Serve what the control plane says, until the process ends: at once, then
/// on every notification and every [`POLL`].
pub async fn follow(state: Arc<ServeState>, node: Arc<ClusterNode>) {
    let mut listener = None;
    loop {
        if listener.is_none() {
            listener = match node.cluster.db.listen(CHANNEL).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!("not listening for deploys (polling instead): {e:#}");
                    None
                }
            };
        }
        if let Err(e) = sync(&state, &node).await {
            tracing::warn!("could not read the control plane: {e:#}");
        }
        let notified = async {
            match &mut listener {
                Some(l) => l.notifications.recv().await.is_some(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            alive = notified => if !alive { listener = None },
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Load every worker whose revision changed, drop the deleted ones.
/// Returns how many workers serve.
pub async fn sync(state: &Arc<ServeState>, node: &Arc<ClusterNode>) -> Result<usize> {
    // Read under the lock a local deploy takes to record what it installed,
    // so a worker deployed here meanwhile is not taken for deleted.
    let (serving, gone) = {
        let mut loaded = node.loaded.lock().await;
        let serving = node.control().serving().await?;
        let seen: std::collections::HashSet<&str> =
            serving.iter().map(|s| s.name.as_str()).collect();
        let gone: Vec<String> = loaded
            .keys()
            .filter(|name| !seen.contains(name.as_str()))
            .cloned()
            .collect();
        for name in &gone {
            loaded.remove(name);
        }
        (serving, gone)
    };
    for name in gone {
        state.registry.remove(&name);
        tracing::info!("{name}: deleted");
    }
    for worker in &serving {
        let stale = node
            .loaded
            .lock()
            .await
            .get(&worker.name)
            .is_none_or(|at| *at < worker.generation);
        let retry_later = node
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&worker.name)
            .is_some_and(|(rev, at)| *rev == worker.generation && at.elapsed() < RETRY_FAILED);
        if !stale || retry_later {
            continue;
        }
        let switch = async {
            let record = record_of(worker.record.clone())?;
            node.fetch_build(&state.data, &record).await?;
            let deployed = state.load_async(&record).await?;
            node.share_compiled(&state.data, &record).await;
            if node.advance(&worker.name, worker.generation).await {
                state.registry.insert(deployed);
                tracing::info!("{}: serving {}", worker.name, record.id);
            }
            anyhow::Ok(())
        };
        if let Err(e) = switch.await {
            tracing::error!(
                "{}: could not switch to the deployed version (the previous one keeps serving): {e:#}",
                worker.name
            );
            node.failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(worker.name.clone(), (worker.generation, Instant::now()));
        }
    }
    Ok(serving.len())
}

/// Beat every [`nodes::HEARTBEAT`] until the process ends.
pub async fn heartbeat(state: Arc<ServeState>, node: Arc<ClusterNode>) {
    loop {
        tokio::time::sleep(nodes::HEARTBEAT).await;
        if let Err(e) = nodes::heartbeat(&node.cluster.db, &node.id, !state.ready()).await {
            tracing::warn!("heartbeat failed: {e:#}");
        }
    }
}

/// Tell the cluster this node is up, and where.
pub async fn join(
    node: &ClusterNode,
    public: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    internal_url: Option<String>,
) -> Result<()> {
    nodes::join(
        &node.cluster.db,
        &nodes::Joining {
            id: node.id.clone(),
            public_addr: public.to_string(),
            admin_addr: admin.to_string(),
            internal_url,
            taipan_version: env!("CARGO_PKG_VERSION").to_string(),
        },
    )
    .await
    .context("joining the cluster")
}

/// A clean stop: the other nodes need not wait for this one's heartbeat to age.
pub async fn leave(node: &ClusterNode) {
    if let Err(e) = nodes::leave(&node.cluster.db, &node.id).await {
        tracing::warn!("could not tell the cluster this node stops: {e:#}");
    }
}
