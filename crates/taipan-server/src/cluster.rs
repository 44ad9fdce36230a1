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
use crate::serve::{ServeState, Start};
use crate::store::{DataDir, VersionRecord};

/// The `NOTIFY` channel of builds (then their machine code) put in object
/// storage by a deploy still under way (payload: the build id).
pub const PREFETCH: &str = "taipan_prefetch";

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
    /// Where this node keeps bases (`Runtime::bases_dir`): the compiled code
    /// builds with a snapshot start from.
    bases: std::path::PathBuf,
    /// The revision of each worker this node serves.
    loaded: tokio::sync::Mutex<HashMap<String, Revision>>,
    /// Revisions that failed to load here, and when.
    failed: std::sync::Mutex<HashMap<String, (Revision, Instant)>>,
}

impl ClusterNode {
    pub fn new(
        cluster: Arc<Cluster>,
        data: &DataDir,
        fingerprint: String,
        bases: std::path::PathBuf,
    ) -> Result<Arc<Self>> {
        Ok(Arc::new(Self {
            cluster,
            id: data.node_id()?,
            fingerprint,
            bases,
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
        // The base first: a build in object storage always finds its base.
        let code = self.code(data, &record.artifact)?;
        if let Some(key) = &code.wasm_key {
            self.share_file(&code.wasm, key)
                .await
                .context("sharing the build's base")?;
        }
        if let Some((path, key)) = &code.reference {
            self.share_file(path, key)
                .await
                .context("sharing the base's reference image")?;
        }
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

    /// Put `path` at `key`, compressed, unless something is there (the
    /// same bytes: keys name their content).
    async fn share_file(&self, path: &std::path::Path, key: &str) -> Result<()> {
        let objects = &self.cluster.objects;
        if objects.exists(key).await? {
            return Ok(());
        }
        let bytes = tokio::fs::read(path)
            .await
            .with_context(|| format!("reading \"{}\"", path.display()))?;
        let bytes = tokio::task::spawn_blocking(move || zstd::encode_all(&bytes[..], 3))
            .await
            .context("the compression task failed")??;
        objects.put_new(key, bytes).await.map(|_| ())
    }

    /// Share the machine code this node compiled for a build with nodes of
    /// the same fingerprint (CPU, engine settings, taipan version), so they
    /// load it instead of compiling for seconds.
    pub async fn share_compiled(&self, data: &DataDir, record: &VersionRecord) {
        let shared = async {
            let code = self.code(data, &record.artifact)?;
            let (path, key) = (code.compiled, code.compiled_key);
            if self.cluster.objects.exists(&key).await? {
                return Ok(());
            }
            let code = tokio::fs::read(&path).await?;
            // Compressed: a third to a quarter of the bytes to move, which is
            // most of the time a node takes to switch.
            let bytes = tokio::task::spawn_blocking(move || zstd::encode_all(&code[..], 3))
                .await
                .context("the compression task failed")??;
            let signature = self.cluster.secrets.sign(&bytes)?;
            // The signature first: a reader that finds the code finds it too.
            self.cluster
                .objects
                .put(&format!("{key}.sig"), signature)
                .await?;
            self.cluster.objects.put_new(&key, bytes).await.map(|_| ())
        };
        match shared.await {
            Ok(()) => self.announce(&record.artifact).await,
            Err(e) => tracing::warn!("could not share the compiled {}: {e:#}", record.artifact),
        }
    }

    /// Tell the other nodes a build (and later its machine code) is in
    /// object storage, so they fetch it while the deploying node compiles:
    /// when the version is published they only load it.
    pub async fn announce(&self, artifact: &str) {
        let announced = async {
            let client = self.cluster.db.client().await?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&PREFETCH, &artifact])
                .await?;
            anyhow::Ok(())
        };
        if let Err(e) = announced.await {
            tracing::debug!("could not announce the build {artifact}: {e:#}");
        }
    }

    /// Bring a build, and the machine code for this node if a node of the
    /// same fingerprint made it, into the data dir; false when the build is
    /// not in object storage.
    pub async fn fetch_artifact(&self, data: &DataDir, artifact: &str) -> Result<bool> {
        // A build id names a folder here: hex digits only, whoever sent it.
        if artifact.is_empty() || !artifact.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(anyhow!("{artifact:?} is not a build id"));
        }
        let objects = &self.cluster.objects;
        let dir = data.artifacts().join(artifact);
        if taipan_guest::artifact::Artifact::open(&dir).is_none()
            && !objects.get_tree(&artifact_key(artifact), &dir).await?
        {
            return Ok(false);
        }
        let code = self.code(data, artifact)?;
        if let Some(wasm_key) = &code.wasm_key
            && !code.wasm.exists()
        {
            let Some(bytes) = objects.get(wasm_key).await? else {
                return Err(anyhow!(
                    "the build {artifact} starts from {wasm_key}, which is not in the object storage"
                ));
            };
            let base_dir = code.wasm.parent().context("a base without a folder")?;
            tokio::fs::create_dir_all(base_dir).await?;
            let tmp = tempfile::Builder::new()
                .prefix(".fetched-")
                .tempfile_in(base_dir)?;
            let wasm = tokio::task::spawn_blocking(move || zstd::decode_all(&bytes[..]))
                .await
                .context("the decompression task failed")??;
            tokio::fs::write(tmp.path(), &wasm).await?;
            // A base a local build stored meanwhile (and the runtime may
            // have compiled) stays: both are the same code.
            if let Err(e) = tmp.persist_noclobber(&code.wasm)
                && !code.wasm.exists()
            {
                return Err(e.into());
            }
        }
        if let Some((path, key)) = &code.reference
            && !path.exists()
        {
            let Some(bytes) = objects.get(key).await? else {
                return Err(anyhow!(
                    "the build {artifact} needs {key}, which is not in the object storage"
                ));
            };
            let image = tokio::task::spawn_blocking(move || zstd::decode_all(&bytes[..]))
                .await
                .context("the decompression task failed")??;
            // Named by its digest: stored only if its bytes are that.
            let digest = taipan_guest::image::digest(&image);
            if !key.ends_with(&format!("reference-{digest}.img.zst")) {
                return Err(anyhow!(
                    "{key} in the object storage is damaged (its digest is {digest})"
                ));
            }
            let path = path.clone();
            tokio::task::spawn_blocking(move || taipan_guest::image::store(&path, &image))
                .await
                .context("the storing task failed")??;
        }
        let (compiled, key) = (code.compiled, code.compiled_key);
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
                let code = tokio::task::spawn_blocking(move || zstd::decode_all(&bytes[..]))
                    .await
                    .context("the decompression task failed")??;
                tokio::fs::write(tmp.path(), &code).await?;
                tmp.persist(&compiled)?;
            } else {
                tracing::warn!("{key} is not signed by this cluster's key: compiling here instead");
            }
        }
        Ok(true)
    }

    /// Bring a version's build and assets into this node's data dir, with
    /// machine code for this node when another node made it.
    pub async fn fetch_build(&self, data: &DataDir, record: &VersionRecord) -> Result<()> {
        let objects = &self.cluster.objects;
        if !self.fetch_artifact(data, &record.artifact).await? {
            return Err(anyhow!(
                "the build {} of {} {} is not in the object storage",
                record.artifact,
                record.worker,
                record.id
            ));
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

/// Where a build's WebAssembly and machine code are, here and in object
/// storage: its own component, or (a build with a snapshot) its base's.
struct Code {
    wasm: std::path::PathBuf,
    /// The base's component in object storage (a build's own travels in
    /// the build's folder).
    wasm_key: Option<String>,
    compiled: std::path::PathBuf,
    compiled_key: String,
    /// The base's reference image its memory image is compressed against
    /// (`taipan_guest::image`), here and in object storage.
    reference: Option<(std::path::PathBuf, String)>,
}

impl ClusterNode {
    fn code(&self, data: &DataDir, artifact: &str) -> Result<Code> {
        let dir = data.artifacts().join(artifact);
        let fingerprint = &self.fingerprint;
        let Some(snapshot) = taipan_guest::snapshot::Snapshot::open(&dir) else {
            let wasm = dir.join(taipan_guest::artifact::COMPONENT_FILE);
            return Ok(Code {
                compiled: wasm.with_extension("cwasm"),
                wasm,
                wasm_key: None,
                compiled_key: format!("compiled/{artifact}/{fingerprint}.cwasm.zst"),
                reference: None,
            });
        };
        // `meta` checks the base is a name (hex digits only), whoever wrote it.
        let meta = snapshot.meta()?;
        let base = &meta.base;
        let wasm = taipan_guest::snapshot::base_component(&self.bases, base);
        // Its digest is checked by `meta` to be a name, as the base is.
        let reference = meta.reference_image(&self.bases).zip(
            meta.compressed()
                .map(|c| format!("bases/{base}/reference-{}.img.zst", c.reference)),
        );
        Ok(Code {
            compiled: wasm.with_extension("cwasm"),
            wasm,
            wasm_key: Some(format!("bases/{base}.wasm.zst")),
            compiled_key: format!("compiled/base-{base}/{fingerprint}.cwasm.zst"),
            reference,
        })
    }
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

    async fn forget_old_versions(&self, worker: &str, keep: usize) -> Result<usize> {
        self.control().forget_old_versions(worker, keep).await
    }

    async fn kept(&self) -> Result<crate::gc::Keep> {
        let (artifacts, assets) = self.control().kept().await?;
        Ok(crate::gc::Keep {
            artifacts: artifacts.into_iter().collect(),
            assets: assets.into_iter().collect(),
        })
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
            listener = match node.cluster.db.listen(&[CHANNEL, PREFETCH]).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!("not listening for deploys (polling instead): {e:#}");
                    None
                }
            };
        }
        if let Err(e) = sync(&state, &node, Start::Linked).await {
            tracing::warn!("could not read the control plane: {e:#}");
        }
        // Wait for a change or the next poll; a build announced meanwhile is
        // fetched in the background, ready for when its version is published.
        let poll = tokio::time::sleep(POLL);
        tokio::pin!(poll);
        loop {
            let message = async {
                match &mut listener {
                    Some(l) => l.notifications.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                message = message => match message {
                    None => {
                        listener = None;
                        break;
                    }
                    Some((channel, artifact)) if channel == PREFETCH => {
                        let (state, node) = (state.clone(), node.clone());
                        tokio::spawn(async move {
                            if let Err(e) = prefetch(&state, &node, &artifact).await {
                                tracing::debug!("prefetching the build {artifact} failed: {e:#}");
                            }
                        });
                    }
                    Some(_) => break,
                },
                () = &mut poll => break,
            }
        }
    }
}

/// Get a build announced by a deploy still under way ready here: fetch it
/// and compile it for this node (unless another node's machine code for
/// this node is already there), in parallel with the deploying node's own
/// compile, so that when the version is published this node only loads it.
async fn prefetch(state: &Arc<ServeState>, node: &Arc<ClusterNode>, artifact: &str) -> Result<()> {
    // No sweep removes what this fetches while it compiles it.
    let _loading = state.files.read().await;
    if !node.fetch_artifact(&state.data, artifact).await? {
        return Ok(());
    }
    let dir = state.data.artifacts().join(artifact);
    let compiled = node.code(&state.data, artifact)?.compiled;
    // One compile per build at a time on this node (announced twice: build, then code).
    static COMPILING: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let claim = |add: bool| {
        let mut compiling = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
        let busy = compiling.iter().any(|a| a == artifact);
        if add && !busy {
            compiling.push(artifact.to_string());
        } else if !add {
            compiling.retain(|a| a != artifact);
        }
        busy
    };
    if compiled.exists() || claim(true) {
        return Ok(());
    }
    let state = state.clone();
    let compiled_here = tokio::task::spawn_blocking(move || {
        let artifact =
            taipan_guest::Artifact::open(&dir).context("the fetched build is incomplete")?;
        state.runtime.load_artifact(&artifact).map(|_| ())
    })
    .await;
    claim(false);
    compiled_here.context("the compile task failed")?
}

/// Load every worker whose revision changed, drop the deleted ones.
/// Returns how many workers serve. `start`: dormant when the node starts
/// (`ServeState::restore`), linked when it follows a deploy.
pub(crate) async fn sync(
    state: &Arc<ServeState>,
    node: &Arc<ClusterNode>,
    start: Start,
) -> Result<usize> {
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
    for name in &gone {
        state.registry.remove(name);
        tracing::info!("{name}: deleted");
    }
    if !gone.is_empty() {
        state.collect_garbage_later();
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
            // No sweep removes what this fetches before it serves.
            let _loading = state.files.read().await;
            let started = Instant::now();
            let record = record_of(worker.record.clone())?;
            node.fetch_build(&state.data, &record).await?;
            let fetched = started.elapsed();
            let deployed = state.load_in_background(&record, start).await?;
            let loaded = started.elapsed();
            node.share_compiled(&state.data, &record).await;
            if node.advance(&worker.name, worker.generation).await {
                state.registry.insert(deployed);
                tracing::info!(
                    "{}: serving {} (build fetched in {} ms, loaded in {} ms)",
                    worker.name,
                    record.id,
                    fetched.as_millis(),
                    (loaded - fetched).as_millis()
                );
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
