//! `taipan serve`: many workers, routed by host and path, deployed through
//! the admin API, each version served from its snapshot.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use hyper::body::Incoming;
use taipan_bindings::{Services, Stores};
use taipan_build::{Artifact, BuildError};
use taipan_config::RoutePattern;
use taipan_runtime::worker::{Body, text_response};
use taipan_runtime::{Limits, Runtime, Worker, WorkerSettings};
use tokio::net::TcpListener;
use tokio::sync::broadcast;

use crate::bundle::{self, BundleLimits};
use crate::cluster::ClusterNode;
use crate::control::{ControlPlane, Revision};
use crate::front::{self, Handler};
use crate::gc;
use crate::host::{EnvSource, WorkerEnv};
use crate::registry::{Deployed, Registry};
use crate::report::{Event, OutputEvents, Reporter};
use crate::store::{DataDir, VersionRecord};

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// None only with `insecure_local` on a loopback admin address.
    pub admin_token: Option<String>,
    pub base_domain: String,
    /// Defaults for every worker; a worker's `[limits]` overrides cpu and memory.
    pub limits: Limits,
    pub fresh_sandbox_per_request: bool,
    /// Fresh sandboxes each worker keeps warmed up ahead of demand.
    pub standby_sandboxes: usize,
    pub bundle_limits: BundleLimits,
    /// Where deployed workers' packages come from (cached in the data dir).
    pub packages: taipan_build::SourceOptions,
    /// After SIGTERM: how long `/readyz` says 503 before the listeners close.
    pub drain_delay: Duration,
    /// Cluster mode: where other nodes forward calls to what this node owns.
    pub internal_listen: Option<SocketAddr>,
    /// Cluster mode: the URL other nodes reach `internal_listen` at
    /// (default: `http://<internal_listen>`).
    pub internal_url: Option<String>,
    /// Versions each worker keeps to roll back to: its newest this many,
    /// and its serving one; older ones, and the files only they used, are
    /// removed (crate::gc).
    pub versions_kept: usize,
}

/// Process-lifetime state of the server.
pub struct ServeState {
    pub runtime: Runtime,
    /// This node's files: builds, assets, binding state (a cache of object
    /// storage in a cluster).
    pub data: DataDir,
    /// Versions, the serving pointers, secrets: the data dir, or PostgreSQL.
    pub control: Arc<dyn ControlPlane>,
    /// Set when this node is part of a cluster.
    pub cluster: Option<Arc<ClusterNode>>,
    pub registry: Registry,
    pub options: ServeOptions,
    /// Binding state (KV, D1), shared by every worker that binds the same id.
    pub stores: Arc<Stores>,
    logs: crate::tail::Logs,
    deploy_lock: tokio::sync::Mutex<()>,
    /// Held shared while a cluster node fetches and loads a version outside
    /// the deploy lock (`cluster::sync`, `prefetch`), exclusively by a
    /// sweep of the data dir (crate::gc): a sweep never removes files a
    /// version is being loaded from.
    pub(crate) files: tokio::sync::RwLock<()>,
    /// A sweep is waiting to run: deploys and deletes meanwhile need no other.
    sweep_pending: std::sync::atomic::AtomicBool,
    /// Where the operator's messages go (the CLI prints them).
    reporter: Arc<dyn Reporter>,
    /// What `/metrics` reports.
    pub metrics: crate::metrics::Metrics,
    /// Deployed workers restored, and not draining: `/readyz` says 200.
    ready: std::sync::atomic::AtomicBool,
}

/// A deploy or admin failure: an HTTP status and a message for the client.
#[derive(Debug)]
pub struct ApiError {
    pub status: http::StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: http::StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        Self::new(http::StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}"))
    }
}

use crate::api::DeployResult;

impl ServeState {
    /// A server on its data dir alone, or (`cluster`) a node of a cluster.
    pub fn new(
        runtime: Runtime,
        options: ServeOptions,
        reporter: Arc<dyn Reporter>,
        cluster: Option<Arc<taipan_cluster::Cluster>>,
    ) -> Result<Arc<Self>> {
        let data = DataDir::open(&options.data_dir)?;
        // Deployed builds start from bases: keep those with the builds.
        let runtime = runtime.with_bases_dir(data.bases());
        let registry = Registry::new(&options.base_domain);
        let (stores, node, control): (_, _, Arc<dyn ControlPlane>) = match cluster {
            Some(cluster) => {
                let node = ClusterNode::new(
                    cluster.clone(),
                    &data,
                    runtime.compiled_fingerprint(),
                    runtime.bases_dir().to_path_buf(),
                )?;
                (
                    Stores::clustered(data.state(), cluster),
                    Some(node.clone()),
                    node,
                )
            }
            None => (Stores::new(data.state()), None, Arc::new(data.clone())),
        };
        Ok(Arc::new(Self {
            runtime,
            data,
            control,
            cluster: node,
            registry,
            options,
            stores,
            logs: crate::tail::Logs::new(Arc::new(OutputEvents(reporter.clone()))),
            deploy_lock: tokio::sync::Mutex::new(()),
            files: tokio::sync::RwLock::new(()),
            sweep_pending: std::sync::atomic::AtomicBool::new(false),
            reporter,
            metrics: crate::metrics::Metrics::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Whether this node should get traffic (`/readyz`).
    pub fn ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Serve every worker's current version again (after a restart): no
    /// rebuilds. A cluster node fetches what it lacks from object storage.
    pub async fn restore(self: &Arc<Self>) -> Result<usize> {
        if let Some(node) = &self.cluster {
            return crate::cluster::sync(self, node, Start::Dormant).await;
        }
        let mut count = 0;
        for name in self.control.worker_names().await? {
            let Some(record) = self.control.current(&name).await? else {
                continue;
            };
            // Dormant: thousands of workers come back without expanding
            // their images or starting standby sandboxes; each links on
            // its first request.
            match self.load_in_background(&record, Start::Dormant).await {
                Ok(deployed) => {
                    self.registry.insert(deployed);
                    count += 1;
                }
                Err(e) => {
                    tracing::error!("worker {name} {}: could not be loaded: {e:#}", record.id)
                }
            }
        }
        Ok(count)
    }

    /// Load a version with the worker's current secrets (compiling it if
    /// this node has not yet), off the async threads.
    pub async fn load_async(self: &Arc<Self>, record: &VersionRecord) -> Result<Deployed> {
        self.load_in_background(record, Start::Linked).await
    }

    pub(crate) async fn load_in_background(
        self: &Arc<Self>,
        record: &VersionRecord,
        start: Start,
    ) -> Result<Deployed> {
        let secrets = self.control.secrets(&record.worker).await?;
        let (state, record) = (self.clone(), record.clone());
        tokio::task::spawn_blocking(move || state.load(&record, &secrets, start))
            .await
            .map_err(|e| anyhow!("the loading task failed: {e}"))?
    }

    fn load(
        self: &Arc<Self>,
        record: &VersionRecord,
        secrets: &std::collections::BTreeMap<String, String>,
        start: Start,
    ) -> Result<Deployed> {
        let artifact =
            Artifact::open(&self.data.artifacts().join(&record.artifact)).with_context(|| {
                format!(
                    "the build {} of {} is missing from the data dir",
                    record.artifact, record.id
                )
            })?;
        let limits = crate::limits::with_overrides(&self.options.limits, &record.limits);
        let services: Arc<dyn Services> = Arc::new(RegistryServices(Arc::downgrade(self)));
        let assets_dir = record.assets.as_ref().map(|id| self.data.assets(id));
        let source = EnvSource {
            worker: &record.worker,
            vars_json: &record.vars_json,
            secrets,
            bindings: &record.bindings,
            assets_dir: assets_dir.as_deref(),
            dev: false,
            version: taipan_bindings::VersionMetadata {
                id: record.id.clone(),
                tag: String::new(),
                timestamp: record.created.clone(),
            },
        };
        let env = WorkerEnv::open(source, &self.stores, services)?;
        let settings = WorkerSettings::new(&record.worker, limits)
            .env(env.vars_json, env.bindings_json, env.host)
            .host_limits(crate::limits::host_limits(&record.limits))
            .reuse_sandboxes(!self.options.fresh_sandbox_per_request)
            .standby(self.options.standby_sandboxes)
            .log(self.logs.sink(&record.worker));
        let settings = match start {
            Start::Linked => settings,
            Start::Dormant => settings.start_dormant(),
        };
        let worker = Worker::load(&self.runtime, &artifact, settings)?;
        let routes = record
            .routes
            .iter()
            .map(|r| RoutePattern::parse(r).map_err(|e| anyhow!(e)))
            .collect::<Result<_>>()?;
        Ok(Deployed {
            version: record.clone(),
            worker,
            routes,
        })
    }

    pub fn url_of(&self, name: &str, routes: &[String]) -> String {
        match routes.first() {
            Some(route) => format!("http://{}", route.trim_end_matches('*')),
            None => format!(
                "http://{name}.{}:{}/",
                self.registry.base_domain(),
                self.options.listen.port()
            ),
        }
    }

    /// Upload → validate → build → compile → record → switch. Any failure
    /// leaves the previous version serving and nothing half-written visible.
    /// In a cluster, one deploy of a worker runs at a time across all nodes
    /// (a second gets 409), and the build reaches object storage before the
    /// version is recorded.
    pub async fn deploy(
        self: &Arc<Self>,
        upload: bytes::Bytes,
        env: Option<String>,
    ) -> Result<DeployResult, ApiError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        let state = self.clone();
        let (staging, config) =
            tokio::task::spawn_blocking(move || state.unpack(upload, env.as_deref()))
                .await
                .map_err(|e| ApiError::from(anyhow!("the deploy task failed: {e}")))??;
        let cluster_lock = self.lock_cluster_deploy(&config.name).await?;
        let result = self.deploy_config(config).await;
        drop(staging);
        if let Some(lock) = cluster_lock {
            lock.release().await;
        }
        // Also after a failed deploy: its build may be there, unused.
        self.collect_garbage_later();
        result
    }

    /// [`Self::collect_garbage`] once the deploy or delete that calls this
    /// has answered (it waits for the deploy lock). Calls while one waits
    /// to run share it: it reads the state after them.
    pub fn collect_garbage_later(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.sweep_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let state = self.clone();
        tokio::spawn(async move {
            if let Err(e) = state.collect_garbage().await {
                tracing::warn!("could not remove unused builds: {e:#}");
            }
        });
    }

    /// Remove the builds, bases, reference images and assets no kept
    /// version and no version still finishing requests needs (crate::gc).
    /// Holds the deploy lock (no build of this node is under way) and
    /// `files` (no version is being fetched or loaded).
    pub async fn collect_garbage(self: &Arc<Self>) -> Result<gc::Swept> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        let _no_loads = self.files.write().await;
        // A deploy or delete from here on needs a sweep of its own.
        self.sweep_pending
            .store(false, std::sync::atomic::Ordering::Release);
        let mut keep = self.control.kept().await?;
        for deployed in self.registry.in_use() {
            keep.version(&deployed.version);
        }
        let grace = match self.cluster {
            Some(_) => gc::CLUSTER_GRACE,
            None => Duration::ZERO,
        };
        let state = self.clone();
        let swept = tokio::task::spawn_blocking(move || {
            let swept = gc::sweep(&state.data, state.runtime.bases_dir(), &keep, grace);
            // Blocking: the runtime holds this lock while it compiles a base.
            if let Some(kept) = &swept.kept_bases {
                state.runtime.forget_bases(kept);
            }
            swept
        })
        .await
        .map_err(|e| anyhow!("the sweeping task failed: {e}"))?;
        if swept.removed_any() {
            tracing::info!(
                "freed {:.1} MB no kept version uses: {} builds, {} bases, {} reference images, {} assets folders",
                swept.bytes as f64 / 1e6,
                swept.builds,
                swept.bases,
                swept.references,
                swept.assets,
            );
        }
        Ok(swept)
    }

    /// In a cluster: the worker's deploy lock, or 409 when another node (or
    /// request) holds it.
    async fn lock_cluster_deploy(
        &self,
        name: &str,
    ) -> Result<Option<taipan_cluster::control::DeployLock>, ApiError> {
        let Some(node) = &self.cluster else {
            return Ok(None);
        };
        match node.lock_deploy(name).await? {
            Some(lock) => Ok(Some(lock)),
            None => Err(ApiError::new(
                http::StatusCode::CONFLICT,
                format!(
                    "another deploy, rollback or delete of {name:?} is in progress on a node of this cluster\n\
                     hint: try again when it finishes"
                ),
            )),
        }
    }

    fn unpack(
        &self,
        upload: bytes::Bytes,
        env: Option<&str>,
    ) -> Result<(tempfile::TempDir, taipan_config::WorkerConfig), ApiError> {
        let bad = |message: String| ApiError::new(http::StatusCode::BAD_REQUEST, message);
        let staging = tempfile::tempdir_in(self.data.staging()).map_err(anyhow::Error::from)?;
        bundle::unpack(&upload[..], staging.path(), self.options.bundle_limits)
            .map_err(|e| bad(format!("{e:#}")))?;
        let config = taipan_config::load(staging.path(), env).map_err(|e| {
            // Paths in the message are the server's staging folder: show them relative.
            bad(e
                .to_string()
                .replace(&format!("{}/", staging.path().display()), ""))
        })?;
        Ok((staging, config))
    }

    async fn deploy_config(
        self: &Arc<Self>,
        config: taipan_config::WorkerConfig,
    ) -> Result<DeployResult, ApiError> {
        let started = Instant::now();
        let state = self.clone();
        let config = Arc::new(config);
        let building = config.clone();
        let built = tokio::task::spawn_blocking(move || {
            let built = state.build(&building);
            // Give back what the build allocated (its captured memory, the
            // instrumented component): on a base no compile follows to do
            // it. On this blocking thread: the trim walks every arena.
            taipan_runtime::engine::release_freed_memory();
            built
        })
        .await;
        let (assets, outcome) =
            built.map_err(|e| ApiError::from(anyhow!("the build task failed: {e}")))??;
        let mut record = VersionRecord {
            id: self.control.next_version_id(&config.name).await?,
            worker: config.name.clone(),
            created: jiff::Timestamp::now().to_string(),
            artifact: outcome.artifact.id.clone(),
            build_ms: 0,
            reused_build: !outcome.built,
            vars_json: config.vars_json(),
            routes: config.routes.iter().map(ToString::to_string).collect(),
            limits: config.limits,
            runtime: config.runtime.id.to_string(),
            bindings: config.bindings.clone(),
            assets,
        };
        if let Some(node) = &self.cluster {
            node.share_build(&self.data, &record).await?;
            node.announce(&record.artifact).await;
        }
        let deployed = self
            .load_async(&record)
            .await
            .map_err(|e| ApiError::from(e.context("compiling the worker")))?;
        if let Some(node) = &self.cluster {
            node.share_compiled(&self.data, &record).await;
        }
        record.build_ms = started.elapsed().as_millis() as u64;
        let revision = self.control.publish(&record).await?;
        match self
            .control
            .forget_old_versions(&record.worker, self.options.versions_kept)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!("{}: forgot {n} old versions", record.worker),
            Err(e) => tracing::warn!("{}: could not forget old versions: {e:#}", record.worker),
        }
        let result = DeployResult {
            url: self.url_of(&record.worker, &record.routes),
            worker: record.worker.clone(),
            version: record.id.clone(),
            build_ms: record.build_ms,
            reused_build: record.reused_build,
            packages: outcome.packages.clone(),
        };
        self.install(
            Deployed {
                version: record,
                ..deployed
            },
            revision,
        )
        .await;
        tracing::info!(
            "deployed {} {} ({} ms)",
            result.worker,
            result.version,
            result.build_ms
        );
        Ok(result)
    }

    fn build(
        &self,
        config: &taipan_config::WorkerConfig,
    ) -> Result<(Option<String>, taipan_build::BuildOutcome), ApiError> {
        let bad = |message: String| ApiError::new(http::StatusCode::BAD_REQUEST, message);
        let assets = match &config.bindings.assets {
            Some(assets) => Some(
                self.data
                    .store_assets(&config.project_dir.join(&assets.directory))
                    .map_err(|e| ApiError::from(e.context("storing the worker's assets")))?,
            ),
            None => None,
        };
        let build_options = taipan_build::BuildOptions {
            packages: self.options.packages.clone(),
            write_lock: false,
            standalone: false,
            caches: taipan_build::BuildCaches::new(
                self.runtime.compile_cache(),
                &self.runtime.python,
                &self.runtime.cache,
                self.runtime.bases_dir(),
            ),
        };
        let outcome = taipan_build::build(config, &self.data.artifacts(), &build_options).map_err(
            |e| match e {
                BuildError::Worker(message) => {
                    bad(format!("the worker failed to build:\n{message}"))
                }
                BuildError::Internal(e) => ApiError::from(e),
            },
        )?;
        Ok((assets, outcome))
    }

    /// Put a loaded version in service (in a cluster, unless this node
    /// already serves a later revision of the worker).
    async fn install(&self, deployed: Deployed, revision: Revision) {
        if let Some(node) = &self.cluster
            && !node.advance(&deployed.version.worker, revision).await
        {
            return;
        }
        self.registry.insert(deployed);
    }

    pub async fn rollback(
        self: &Arc<Self>,
        name: &str,
        version: &str,
    ) -> Result<VersionRecord, ApiError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        let cluster_lock = self.lock_cluster_deploy(name).await?;
        let result = async {
            let record = self.control.version(name, version).await?.ok_or_else(|| {
                ApiError::new(
                    http::StatusCode::NOT_FOUND,
                    format!("worker {name:?} has no version {version:?}"),
                )
            })?;
            if let Some(node) = &self.cluster {
                node.fetch_build(&self.data, &record).await?;
            }
            let deployed = self.load_async(&record).await?;
            let revision = self
                .control
                .set_current(name, version)
                .await?
                .ok_or_else(|| anyhow!("worker {name:?} lost its version {version:?}"))?;
            self.install(deployed, revision).await;
            Ok(record)
        }
        .await;
        if let Some(lock) = cluster_lock {
            lock.release().await;
        }
        result
    }

    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        let cluster_lock = self.lock_cluster_deploy(name).await?;
        let deleted = self.control.delete_worker(name).await;
        if let Some(lock) = cluster_lock {
            lock.release().await;
        }
        if !deleted? {
            return Err(ApiError::new(
                http::StatusCode::NOT_FOUND,
                format!("no worker named {name:?}"),
            ));
        }
        self.registry.remove(name);
        self.collect_garbage_later();
        Ok(())
    }

    /// A D1 database of this server's state by its storage id
    /// (`database_id`, else `database_name`).
    pub fn d1_database(&self, id: &str) -> Result<taipan_bindings::store::Database, ApiError> {
        if self.cluster.is_some() {
            // The database lives on the node holding it, replicated: a
            // connection to this node's file would write where nothing
            // is kept.
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                "D1 through the admin API is not available in cluster mode yet\n\
                 hint: run the SQL or migrations from a worker bound to the database",
            ));
        }
        if id.is_empty() || id.len() > taipan_config::bindings::MAX_STORAGE_ID_BYTES {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                format!("{id:?} is not a D1 database id"),
            ));
        }
        Ok(self.stores.database(&self.stores.d1_path(id))?)
    }

    /// Set or remove a secret; the serving version picks it up at once.
    pub async fn set_secret(
        self: &Arc<Self>,
        name: &str,
        secret: &str,
        value: Option<&str>,
    ) -> Result<bool, ApiError> {
        if !valid_secret_name(secret) {
            return Err(ApiError::new(
                http::StatusCode::BAD_REQUEST,
                format!(
                    "{secret:?} is not a valid secret name; use letters, digits and underscores"
                ),
            ));
        }
        let _one_at_a_time = self.deploy_lock.lock().await;
        // A deploy reads the secrets it loads with before it publishes: a
        // secret changed in between would be missed, so secrets wait too.
        let cluster_lock = self.lock_cluster_deploy(name).await?;
        let result = async {
            let Some(revision) = self.control.set_secret(name, secret, value).await? else {
                return Ok(false);
            };
            if let Some(record) = self.control.current(name).await? {
                let deployed = self.load_async(&record).await?;
                self.install(deployed, revision).await;
            }
            Ok(true)
        }
        .await;
        if let Some(lock) = cluster_lock {
            lock.release().await;
        }
        result
    }

    pub fn subscribe_logs(&self, name: &str) -> broadcast::Receiver<String> {
        self.logs.subscribe(name)
    }

    pub(crate) fn log_request(&self, name: &str, line: &str, status: u16, elapsed: Duration) {
        self.logs.request(name, line, status, elapsed);
    }
}

/// How a loaded version starts: linked (a deploy: a failure to link fails
/// the deploy), or dormant (restoring every worker at start-up).
#[derive(Clone, Copy)]
pub(crate) enum Start {
    Linked,
    Dormant,
}

/// Service bindings in serve reach the workers deployed on this server.
struct RegistryServices(std::sync::Weak<ServeState>);

impl Services for RegistryServices {
    fn worker(&self, name: &str) -> Option<Arc<Worker>> {
        Some(self.0.upgrade()?.registry.get(name)?.worker.clone())
    }
}

fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// The public listener: route, then hand over to the worker.
struct PublicFront(Arc<ServeState>);

impl Handler for PublicFront {
    async fn handle(
        self: Arc<Self>,
        request: http::Request<Incoming>,
        _peer: SocketAddr,
    ) -> http::Response<Body> {
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_string();
        let Some(deployed) = self.0.registry.route(&host, request.uri().path()) else {
            return text_response(
                http::StatusCode::NOT_FOUND,
                "no worker is routed for this host and path\n",
            );
        };
        let line = format!(
            "{} {}",
            request.method(),
            request.uri().path_and_query().map_or("/", |p| p.as_str())
        );
        let started = Instant::now();
        let response = deployed.worker.handle(request).await;
        let (status, elapsed) = (response.status().as_u16(), started.elapsed());
        self.0
            .log_request(&deployed.version.worker, &line, status, elapsed);
        self.0
            .metrics
            .request(&deployed.version.worker, status, elapsed);
        response
    }
}

/// Run until SIGINT/SIGTERM, then stop accepting and let requests finish.
pub async fn run_serve(state: Arc<ServeState>) -> Result<()> {
    // A cluster node places Durable Objects before any worker loads.
    let renewing = match &state.cluster {
        Some(node) => {
            let placement =
                taipan_bindings::placement::Placement::new(node.cluster.clone(), &node.id).await?;
            state.stores.set_placement(placement.clone());
            Some(placement.start_renewing())
        }
        None => None,
    };
    let internal = match state.options.internal_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("could not listen on {addr} (internal)"))?,
        ),
        None => None,
    };
    let restored = state.restore().await?;
    // What earlier runs left unused (deleted workers, forgotten versions),
    // then every hour: a cluster node also serves what other nodes deploy
    // and delete.
    let sweeping = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(gc::SWEEP_EVERY);
            loop {
                every.tick().await;
                state.collect_garbage_later();
            }
        })
    };
    let public = TcpListener::bind(state.options.listen)
        .await
        .with_context(|| format!("could not listen on {}", state.options.listen))?;
    let admin = TcpListener::bind(state.options.admin_listen)
        .await
        .with_context(|| format!("could not listen on {} (admin)", state.options.admin_listen))?;
    let (public_addr, admin_addr) = (public.local_addr()?, admin.local_addr()?);
    let reporter = state.reporter.clone();
    reporter.report(Event::Serving {
        workers: restored,
        public: &format!("http://{}", public.local_addr()?),
        admin: &format!("http://{}", admin.local_addr()?),
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let public_task = tokio::spawn(front::serve(
        public,
        Arc::new(PublicFront(state.clone())),
        wait(stopped.clone()),
    ));
    let admin_task = tokio::spawn(front::serve(
        admin,
        Arc::new(crate::admin::AdminFront::new(state.clone())),
        wait(stopped.clone()),
    ));
    let crons = tokio::spawn(crate::crons::run(state.clone()));
    let internal_url = match &internal {
        Some(listener) => Some(
            state
                .options
                .internal_url
                .clone()
                .unwrap_or(format!("http://{}", listener.local_addr()?)),
        ),
        None => None,
    };
    let internal_task = internal.map(|listener| {
        tokio::spawn(front::serve(
            listener,
            Arc::new(crate::internal::InternalFront(state.clone())),
            wait(stopped.clone()),
        ))
    });
    let cluster_tasks = match &state.cluster {
        Some(node) => {
            crate::cluster::join(node, public_addr, admin_addr, internal_url).await?;
            vec![
                tokio::spawn(crate::cluster::follow(state.clone(), node.clone())),
                tokio::spawn(crate::cluster::heartbeat(state.clone(), node.clone())),
            ]
        }
        None => Vec::new(),
    };
    state
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    front::shutdown_signal().await;
    // Draining: the load balancer sees /readyz fail while requests still
    // get answers, then the listeners close and requests in flight finish.
    state
        .ready
        .store(false, std::sync::atomic::Ordering::Release);
    reporter.report(Event::ShuttingDown);
    tokio::time::sleep(state.options.drain_delay).await;
    crons.abort();
    sweeping.abort();
    let _ = stop.send(true);
    let _ = tokio::join!(public_task, admin_task);
    if let Some(task) = internal_task {
        let _ = task.await;
    }
    for task in cluster_tasks.into_iter().chain(renewing) {
        task.abort();
    }
    // What this node owned moves at once, not after its leases expire.
    if let Some(placement) = state.stores.placement() {
        placement.release_all().await;
    }
    if let Some(node) = &state.cluster {
        crate::cluster::leave(node).await;
    }
    reporter.report(Event::Stopped);
    Ok(())
}
