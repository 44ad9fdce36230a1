//! `taipan dev`: workers built from project folders, rebuilt on edits. The
//! first project is served; the others are reachable through its service
//! bindings (`taipan dev -c a/wrangler.toml -c b/wrangler.toml`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use hyper::body::Incoming;
use taipan_bindings::{Services, Stores};
use taipan_build::BuildError;
use taipan_config::WorkerConfig;
use taipan_runtime::worker::{Body, text_response};
use taipan_runtime::{Limits, Runtime, Worker, WorkerSettings};
use tokio::net::TcpListener;

use crate::front::{self, Handler};
use crate::host::{EnvSource, WorkerEnv, read_dev_vars};
use crate::report::{Event, OutputEvents, Reporter};
use crate::watch::ProjectWatcher;
use taipan_runtime::log::LogSink;

#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Project folders or config files; the first is the one served.
    pub projects: Vec<PathBuf>,
    pub ip: IpAddr,
    pub port: u16,
    pub watch: bool,
    pub limits: Limits,
    /// Print a line per request (the worker's own output is always shown).
    pub log_requests: bool,
    /// Serve `/__scheduled?cron=...` to fire the worker's scheduled handler.
    pub test_scheduled: bool,
    /// Where the workers' packages come from.
    pub packages: taipan_build::SourceOptions,
    /// The config environment (`--env`): an `[env.NAME]` section of each config.
    pub env: Option<String>,
}

/// Builds kept in `.taipan/builds` besides the one serving.
const KEEP_BUILDS: usize = 4;

struct DevServer {
    /// Every worker by name; `primary` is the one on the port.
    workers: RwLock<BTreeMap<String, Arc<Worker>>>,
    primary: String,
    log_requests: bool,
    test_scheduled: bool,
    /// Binding state per project, opened once: rebuilds reuse its connections.
    stores: std::sync::Mutex<BTreeMap<PathBuf, Arc<Stores>>>,
    reporter: Arc<dyn Reporter>,
}

impl DevServer {
    fn worker(&self, name: &str) -> Option<Arc<Worker>> {
        self.workers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn stores(&self, project_dir: &Path) -> Arc<Stores> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        let root = project_dir.join(".taipan").join("state");
        // Every project shares the first one's queues and rate-limit
        // counters, so a producer and its consumer may be two projects.
        let first = stores.values().next().cloned();
        stores
            .entry(project_dir.to_path_buf())
            .or_insert_with(|| match first {
                Some(first) => Stores::sharing(root, &first),
                None => Stores::new(root),
            })
            .clone()
    }

    fn swap(&self, worker: Arc<Worker>) {
        worker.start_standby();
        let old = self
            .workers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(worker.name.to_string(), worker);
        // Requests in flight hold their own reference and finish on the old build.
        if let Some(old) = old {
            old.drain_idle();
        }
    }
}

/// Service bindings in dev reach the other projects of the same `taipan dev`.
struct DevServices(Weak<DevServer>);

impl Services for DevServices {
    fn worker(&self, name: &str) -> Option<Arc<Worker>> {
        self.0.upgrade()?.worker(name)
    }
}

impl Handler for DevServer {
    async fn handle(
        self: Arc<Self>,
        request: http::Request<Incoming>,
        _peer: SocketAddr,
    ) -> http::Response<Body> {
        let started = Instant::now();
        let line = format!(
            "{} {}",
            request.method(),
            request.uri().path_and_query().map_or("/", |p| p.as_str())
        );
        let Some(worker) = self.worker(&self.primary) else {
            return text_response(http::StatusCode::SERVICE_UNAVAILABLE, "no worker\n");
        };
        let response = if self.test_scheduled && request.uri().path() == "/__scheduled" {
            scheduled(&worker, request.uri().query().unwrap_or("")).await
        } else {
            worker.handle(request).await
        };
        if self.log_requests {
            self.reporter.report(Event::Request {
                worker: &worker.name,
                line: &line,
                status: response.status().as_u16(),
                elapsed: started.elapsed(),
            });
        }
        response
    }
}

/// `/__scheduled?cron=...`, as wrangler's `--test-scheduled`.
async fn scheduled(worker: &Arc<Worker>, query: &str) -> http::Response<Body> {
    let cron = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "cron")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let now = jiff::Timestamp::now().as_millisecond();
    let response = worker.scheduled(&cron, now).await;
    if response.status().is_success() {
        text_response(http::StatusCode::OK, "Ran scheduled event\n")
    } else {
        response
    }
}

/// Run the dev server until Ctrl-C. Errors here are for the user (exit non-zero).
pub async fn run_dev(
    options: DevOptions,
    runtime: Runtime,
    reporter: Arc<dyn Reporter>,
) -> Result<()> {
    let configs = options
        .projects
        .iter()
        .map(|p| load_config(p, options.env.as_deref(), &*reporter))
        .collect::<Result<Vec<_>>>()?;
    let primary = configs
        .first()
        .map(|c| c.name.clone())
        .context("no project to serve")?;
    let server = Arc::new(DevServer {
        workers: RwLock::default(),
        primary,
        log_requests: options.log_requests,
        test_scheduled: options.test_scheduled,
        stores: Default::default(),
        reporter: reporter.clone(),
    });
    let services: Arc<dyn Services> = Arc::new(DevServices(Arc::downgrade(&server)));
    for config in &configs {
        let started = Instant::now();
        reporter.report(Event::Building {
            worker: &config.name,
        });
        let stores = server.stores(&config.project_dir);
        let built = build_and_load(&runtime, config, &options, &services, stores, &reporter).await;
        let (worker, packages) = built.map_err(|e| {
            reporter.report(Event::BuildFailed);
            anyhow!("{e}")
        })?;
        server.swap(worker);
        reporter.report(Event::Built {
            worker: &config.name,
            elapsed: started.elapsed(),
            packages: &packages,
        });
    }

    let address = SocketAddr::new(options.ip, options.port);
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!("could not listen on {address}\nhint: is another server using the port? pass --port to pick another")
    })?;
    let address = listener.local_addr()?;
    if options.watch {
        for (project, config) in options.projects.iter().zip(&configs) {
            let live = config
                .bindings
                .assets
                .iter()
                .map(|a| config.project_dir.join(&a.directory))
                .collect();
            let watcher = ProjectWatcher::new(&config.project_dir, live)
                .context("watching the project for changes")?;
            tokio::spawn(reload_loop(
                watcher,
                project.clone(),
                options.clone(),
                runtime.clone(),
                server.clone(),
                services.clone(),
            ));
        }
    }
    let url = format!("http://{address}");
    let scheduled = format!("{url}/__scheduled?cron=*+*+*+*+*");
    reporter.report(Event::Ready {
        url: &url,
        scheduled: options.test_scheduled.then_some(scheduled.as_str()),
    });
    front::serve(listener, server, front::shutdown_signal()).await;
    reporter.report(Event::Stopped);
    Ok(())
}

fn load_config(project: &Path, env: Option<&str>, reporter: &dyn Reporter) -> Result<WorkerConfig> {
    let config = taipan_config::load(project, env).map_err(|e| anyhow!("{e}"))?;
    for warning in &config.warnings {
        reporter.report(Event::Warning(warning));
    }
    Ok(config)
}

/// Build (or find cached) and compile (or load compiled) on a blocking thread.
async fn build_and_load(
    runtime: &Runtime,
    config: &WorkerConfig,
    options: &DevOptions,
    services: &Arc<dyn Services>,
    stores: Arc<Stores>,
    reporter: &Arc<dyn Reporter>,
) -> Result<(Arc<Worker>, Vec<String>), BuildError> {
    let output: Arc<dyn LogSink> = Arc::new(OutputEvents(reporter.clone()));
    let runtime = runtime.clone();
    let config = config.clone();
    let services = services.clone();
    // The worker's own `[limits]` apply over the command line's defaults.
    let limits = crate::limits::with_overrides(&options.limits, &config.limits);
    let build_options = taipan_build::BuildOptions {
        packages: options.packages.clone(),
        write_lock: true,
        standalone: false,
        caches: taipan_build::BuildCaches::new(
            runtime.compile_cache(),
            &runtime.python,
            &runtime.cache,
            runtime.bases_dir(),
        ),
    };
    let built = tokio::task::spawn_blocking(move || {
        let built = (move || {
            let dot = config.project_dir.join(".taipan");
            let builds = dot.join("builds");
            let secrets = read_dev_vars(&config.project_dir, config.env.as_deref())
                .map_err(BuildError::Internal)?;
            let assets_dir =
                (config.bindings.assets.as_ref()).map(|a| config.project_dir.join(&a.directory));
            let source = EnvSource {
                worker: &config.name,
                vars_json: &config.vars_json(),
                secrets: &secrets,
                bindings: &config.bindings,
                assets_dir: assets_dir.as_deref(),
                dev: true,
                version: taipan_bindings::VersionMetadata::dev(),
            };
            let env = WorkerEnv::open(source, &stores, services).map_err(BuildError::Internal)?;
            let outcome = taipan_build::build(&config, &builds, &build_options)?;
            let settings = WorkerSettings::new(&config.name, limits)
                .env(env.vars_json, env.bindings_json, env.host)
                .host_limits(crate::limits::host_limits(&config.limits))
                .dev()
                .standby(1)
                .log(output);
            let worker = Worker::load(&runtime, &outcome.artifact, settings)?;
            prune_builds(&builds, &outcome.artifact.id);
            Ok((worker, outcome.packages))
        })();
        // Give back what the build allocated (its captured memory, the
        // instrumented component): on a base no compile follows to do it.
        // On this blocking thread: the trim walks every arena.
        taipan_runtime::engine::release_freed_memory();
        built
    })
    .await;
    built.map_err(|e| BuildError::Internal(anyhow!("the build thread failed: {e}")))?
}

async fn reload_loop(
    mut watcher: ProjectWatcher,
    project: PathBuf,
    options: DevOptions,
    runtime: Runtime,
    server: Arc<DevServer>,
    services: Arc<dyn Services>,
) {
    while let Some(path) = watcher.next_change().await {
        let started = Instant::now();
        let reporter = &*server.reporter;
        reporter.report(Event::Changed(&path));
        let config = match load_config(&project, options.env.as_deref(), reporter) {
            Ok(config) => config,
            Err(e) => {
                reporter.report(Event::ReloadFailed(&format!("{e:#}")));
                continue;
            }
        };
        let stores = server.stores(&config.project_dir);
        match build_and_load(
            &runtime,
            &config,
            &options,
            &services,
            stores,
            &server.reporter,
        )
        .await
        {
            Ok((worker, _)) => {
                server.swap(worker);
                reporter.report(Event::Reloaded {
                    worker: &config.name,
                    elapsed: started.elapsed(),
                });
            }
            Err(e) => reporter.report(Event::ReloadFailed(&e.to_string())),
        }
    }
}

/// Remove old builds, keeping the newest few and `current`.
fn prune_builds(builds: &Path, current: &str) {
    let Ok(entries) = std::fs::read_dir(builds) else {
        return;
    };
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.') && e.file_name() != current)
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    for (_, dir) in dirs.into_iter().skip(KEEP_BUILDS) {
        let _ = std::fs::remove_dir_all(dir);
    }
}
