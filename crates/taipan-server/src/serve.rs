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
use crate::front::{self, Handler};
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
}

/// Process-lifetime state of the server.
pub struct ServeState {
    pub runtime: Runtime,
    pub data: DataDir,
    pub registry: Registry,
    pub options: ServeOptions,
    /// Binding state (KV, D1), shared by every worker that binds the same id.
    pub stores: Arc<Stores>,
    logs: crate::tail::Logs,
    deploy_lock: tokio::sync::Mutex<()>,
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
    pub fn new(
        runtime: Runtime,
        options: ServeOptions,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Arc<Self>> {
        let data = DataDir::open(&options.data_dir)?;
        let registry = Registry::new(&options.base_domain);
        let stores = Stores::new(data.state());
        Ok(Arc::new(Self {
            runtime,
            data,
            registry,
            options,
            stores,
            logs: crate::tail::Logs::new(Arc::new(OutputEvents(reporter.clone()))),
            deploy_lock: tokio::sync::Mutex::new(()),
            reporter,
            metrics: crate::metrics::Metrics::default(),
            ready: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Whether this node should get traffic (`/readyz`).
    pub fn ready(&self) -> bool {
        self.ready.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Serve every worker's current version again (after a restart): no rebuilds.
    pub fn restore(self: &Arc<Self>) -> Result<usize> {
        let mut count = 0;
        for name in self.data.worker_names()? {
            let Some(record) = self.data.current(&name)? else {
                continue;
            };
            match self.load(&record) {
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

    fn load(self: &Arc<Self>, record: &VersionRecord) -> Result<Deployed> {
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
            secrets: &self.data.secrets(&record.worker)?,
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
    pub async fn deploy(
        self: &Arc<Self>,
        upload: bytes::Bytes,
        env: Option<String>,
    ) -> Result<DeployResult, ApiError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        let state = self.clone();
        tokio::task::spawn_blocking(move || state.deploy_blocking(upload, env.as_deref()))
            .await
            .map_err(|e| ApiError::from(anyhow!("the deploy task failed: {e}")))?
    }

    fn deploy_blocking(
        self: &Arc<Self>,
        upload: bytes::Bytes,
        env: Option<&str>,
    ) -> Result<DeployResult, ApiError> {
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
        let started = Instant::now();
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
        };
        let outcome = taipan_build::build(&config, &self.data.artifacts(), &build_options)
            .map_err(|e| match e {
                BuildError::Worker(message) => {
                    bad(format!("the worker failed to build:\n{message}"))
                }
                BuildError::Internal(e) => ApiError::from(e),
            })?;
        let record = VersionRecord {
            id: self.data.next_version_id(&config.name)?,
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
        let mut deployed = self
            .load(&record)
            .map_err(|e| ApiError::from(e.context("compiling the worker")))?;
        deployed.version.build_ms = started.elapsed().as_millis() as u64;
        self.data.add_version(&deployed.version)?;
        self.data.set_current(&record.worker, &record.id)?;
        let result = DeployResult {
            url: self.url_of(&record.worker, &record.routes),
            worker: record.worker.clone(),
            version: record.id.clone(),
            build_ms: deployed.version.build_ms,
            reused_build: record.reused_build,
            packages: outcome.packages.clone(),
        };
        self.registry.insert(deployed);
        tracing::info!(
            "deployed {} {} ({} ms)",
            result.worker,
            result.version,
            result.build_ms
        );
        Ok(result)
    }

    pub async fn rollback(
        self: &Arc<Self>,
        name: &str,
        version: &str,
    ) -> Result<VersionRecord, ApiError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        let record = self.data.version(name, version)?.ok_or_else(|| {
            ApiError::new(
                http::StatusCode::NOT_FOUND,
                format!("worker {name:?} has no version {version:?}"),
            )
        })?;
        let state = self.clone();
        let to_load = record.clone();
        let deployed = tokio::task::spawn_blocking(move || state.load(&to_load))
            .await
            .map_err(|e| anyhow!("{e}"))??;
        self.data.set_current(name, version)?;
        self.registry.insert(deployed);
        Ok(record)
    }

    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), ApiError> {
        let _one_at_a_time = self.deploy_lock.lock().await;
        if !self.data.delete_worker(name)? {
            return Err(ApiError::new(
                http::StatusCode::NOT_FOUND,
                format!("no worker named {name:?}"),
            ));
        }
        self.registry.remove(name);
        Ok(())
    }

    /// A D1 database of this server's state by its storage id
    /// (`database_id`, else `database_name`).
    pub fn d1_database(&self, id: &str) -> Result<taipan_bindings::store::Database, ApiError> {
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
        let changed = self.data.set_secret(name, secret, value)?;
        if changed && let Some(record) = self.data.current(name)? {
            let state = self.clone();
            let deployed = tokio::task::spawn_blocking(move || state.load(&record))
                .await
                .map_err(|e| anyhow!("{e}"))??;
            self.registry.insert(deployed);
        }
        Ok(changed)
    }

    pub fn subscribe_logs(&self, name: &str) -> broadcast::Receiver<String> {
        self.logs.subscribe(name)
    }

    pub(crate) fn log_request(&self, name: &str, line: &str, status: u16, elapsed: Duration) {
        self.logs.request(name, line, status, elapsed);
    }
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
    let restored = state.restore()?;
    let public = TcpListener::bind(state.options.listen)
        .await
        .with_context(|| format!("could not listen on {}", state.options.listen))?;
    let admin = TcpListener::bind(state.options.admin_listen)
        .await
        .with_context(|| format!("could not listen on {} (admin)", state.options.admin_listen))?;
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
        wait(stopped),
    ));
    let crons = tokio::spawn(crate::crons::run(state.clone()));
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
    let _ = stop.send(true);
    let _ = tokio::join!(public_task, admin_task);
    reporter.report(Event::Stopped);
    Ok(())
}
