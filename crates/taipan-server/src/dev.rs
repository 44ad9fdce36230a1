//! `taipan dev`: one worker, built from a project folder, rebuilt on edits.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use hyper::body::Incoming;
use taipan_build::BuildError;
use taipan_config::WorkerConfig;
use taipan_runtime::log::TerminalSink;
use taipan_runtime::worker::Body;
use taipan_runtime::{Limits, Runtime, Worker, WorkerSettings};
use tokio::net::TcpListener;

use crate::front::{self, Handler};
use crate::watch::ProjectWatcher;

#[derive(Debug, Clone)]
pub struct DevOptions {
    /// The project folder, or its config file.
    pub project: PathBuf,
    pub ip: IpAddr,
    pub port: u16,
    pub watch: bool,
    pub limits: Limits,
    /// Print a line per request (the worker's own output is always shown).
    pub log_requests: bool,
}

/// Builds kept in `.taipan/builds` besides the one serving.
const KEEP_BUILDS: usize = 4;

struct DevServer {
    current: RwLock<Arc<Worker>>,
    log_requests: bool,
}

impl DevServer {
    fn worker(&self) -> Arc<Worker> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn swap(&self, worker: Arc<Worker>) {
        worker.start_standby();
        let old = std::mem::replace(
            &mut *self.current.write().unwrap_or_else(|e| e.into_inner()),
            worker,
        );
        // Requests in flight hold their own reference and finish on the old build.
        old.drain_idle();
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
        let worker = self.worker();
        let response = worker.handle(request).await;
        if !self.log_requests {
            return response;
        }
        println!(
            "[{}] {line} {} ({:.1}ms)",
            worker.name,
            response.status().as_u16(),
            started.elapsed().as_secs_f64() * 1e3
        );
        response
    }
}

/// Run the dev server until Ctrl-C. Errors here are for the user (exit non-zero).
pub async fn run_dev(options: DevOptions, runtime: Runtime) -> Result<()> {
    let config = load_config(&options.project)?;
    let project_dir = config.project_dir.clone();
    let started = Instant::now();
    let spinner =
        indicatif::ProgressBar::new_spinner().with_message(format!("Building {}...", config.name));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let built = build_and_load(&runtime, &config, &options.limits).await;
    spinner.finish_and_clear();
    let worker = built.map_err(|e| anyhow!("{e}"))?;
    worker.start_standby();
    println!("Built {} in {}", config.name, fmt(started.elapsed()));

    let address = SocketAddr::new(options.ip, options.port);
    let listener = TcpListener::bind(address).await.with_context(|| {
        format!("could not listen on {address}\nhint: is another server using the port? pass --port to pick another")
    })?;
    let address = listener.local_addr()?;
    let server = Arc::new(DevServer {
        current: RwLock::new(worker),
        log_requests: options.log_requests,
    });
    if options.watch {
        let watcher =
            ProjectWatcher::new(&project_dir).context("watching the project for changes")?;
        tokio::spawn(reload_loop(
            watcher,
            options.clone(),
            runtime.clone(),
            server.clone(),
        ));
    }
    println!("Ready on http://{address}");
    front::serve(listener, server, front::shutdown_signal()).await;
    println!("Stopped.");
    Ok(())
}

fn load_config(project: &Path) -> Result<WorkerConfig> {
    let config = taipan_config::load(project).map_err(|e| anyhow!("{e}"))?;
    for warning in &config.warnings {
        println!("warning: {warning}");
    }
    Ok(config)
}

/// Build (or find cached) and compile (or load compiled) on a blocking thread.
async fn build_and_load(
    runtime: &Runtime,
    config: &WorkerConfig,
    limits: &Limits,
) -> Result<Arc<Worker>, BuildError> {
    let runtime = runtime.clone();
    let config = config.clone();
    // The worker's own `[limits]` apply over the command line's defaults.
    let limits = limits.with_overrides(&config.limits);
    tokio::task::spawn_blocking(move || {
        let builds = config.project_dir.join(".taipan").join("builds");
        let outcome = taipan_build::build(&config, &builds)?;
        let settings = WorkerSettings {
            name: config.name.clone(),
            vars_json: config.vars_json(),
            dev: true,
            limits,
            reuse_sandboxes: true,
            standby_sandboxes: 1,
            log: Arc::new(TerminalSink),
        };
        let worker = Worker::load(&runtime, &outcome.artifact, settings)?;
        prune_builds(&builds, &outcome.artifact.id);
        Ok(worker)
    })
    .await
    .map_err(|e| BuildError::Internal(anyhow!("the build thread failed: {e}")))?
}

async fn reload_loop(
    mut watcher: ProjectWatcher,
    options: DevOptions,
    runtime: Runtime,
    server: Arc<DevServer>,
) {
    while let Some(path) = watcher.next_change().await {
        let started = Instant::now();
        println!("Change in {}; rebuilding...", path.display());
        let config = match load_config(&options.project) {
            Ok(config) => config,
            Err(e) => {
                println!("error: {e:#}\nThe previous build keeps serving.");
                continue;
            }
        };
        match build_and_load(&runtime, &config, &options.limits).await {
            Ok(worker) => {
                server.swap(worker);
                println!("Reloaded {} in {}", config.name, fmt(started.elapsed()));
            }
            Err(e) => println!("error: {e}\nThe previous build keeps serving."),
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

fn fmt(d: Duration) -> String {
    taipan_runtime::engine::fmt_duration(d)
}
