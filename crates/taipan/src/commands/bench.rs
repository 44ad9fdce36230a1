//! `taipan bench [DIR]`: in-process timings of one worker, no network in the
//! way: build (cold or cached), compile, a fresh sandbox from the snapshot to
//! its first response, and warm requests. `bench/run` adds the HTTP
//! comparisons against peers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt, Full};
use taipan_runtime::engine::PoolSize;
use taipan_runtime::{Limits, NoHost, Worker, WorkerSettings};

#[derive(Args)]
pub struct BenchArgs {
    /// The worker's project folder, or its config file.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Fresh sandboxes to start (each serves one request).
    #[arg(long, default_value_t = 500)]
    fresh: usize,
    /// Requests to send to one warm sandbox.
    #[arg(long, default_value_t = 5000)]
    warm: usize,
    /// Path to request.
    #[arg(long, default_value = "/")]
    path: String,
    /// Request method [default: GET, or POST with --body].
    #[arg(long)]
    method: Option<http::Method>,
    /// A file whose bytes are every request's body.
    #[arg(long, value_name = "FILE")]
    body: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    env: super::EnvArgs,
    #[command(flatten)]
    packages: super::PackageArgs,
}

impl BenchArgs {
    pub fn run(self) -> Result<()> {
        if self.fresh == 0 || self.warm == 0 {
            bail!("--fresh and --warm must be at least 1");
        }
        let body = match &self.body {
            Some(path) => Bytes::from(
                std::fs::read(path)
                    .with_context(|| format!("reading --body \"{}\"", path.display()))?,
            ),
            None => Bytes::new(),
        };
        let method = self.method.clone().unwrap_or(if self.body.is_some() {
            http::Method::POST
        } else {
            http::Method::GET
        });
        let config = self.env.load(&self.dir)?;
        let builds = config.project_dir.join(".taipan").join("builds");
        let runtime = super::runtime(PoolSize::default())?;
        let started = Instant::now();
        let options = taipan_build::BuildOptions {
            packages: self.packages.sources(None)?,
            write_lock: true,
            standalone: false,
            caches: taipan_build::BuildCaches::new(
                runtime.compile_cache(),
                &runtime.python,
                &runtime.cache,
                runtime.bases_dir(),
            ),
        };
        let outcome =
            taipan_build::build(&config, &builds, &options).map_err(|e| anyhow!("{e}"))?;
        let build_time = started.elapsed();
        let component_bytes = own_bytes(&outcome.artifact);

        // The bench measures the sandbox itself: vars, no bindings.
        let settings = |reuse, standby| {
            WorkerSettings::new(&config.name, Limits::default())
                .env(config.vars_json(), "{}".into(), Arc::new(NoHost))
                .reuse_sandboxes(reuse)
                .standby(standby)
        };
        let started = Instant::now();
        let fresh_worker = Worker::load(&runtime, &outcome.artifact, settings(false, 0))?;
        let load_time = started.elapsed();
        let standby_worker = Worker::load(&runtime, &outcome.artifact, settings(false, 1))?;
        let warm_worker = Worker::load(&runtime, &outcome.artifact, settings(true, 0))?;

        let probe = &Probe {
            method,
            uri: format!("http://localhost{}", self.path),
            body,
        };
        let tokio = super::tokio()?;
        let (instantiate, fresh, standby, warm, sandbox_memory, faults) =
            tokio.block_on(async {
                let mut instantiate = Vec::with_capacity(self.fresh);
                for _ in 0..self.fresh {
                    let started = Instant::now();
                    let sandbox = fresh_worker
                        .fresh_sandbox()
                        .await
                        .map_err(anyhow::Error::from)?;
                    instantiate.push(started.elapsed());
                    drop(sandbox);
                }
                let mut fresh = Vec::with_capacity(self.fresh);
                for _ in 0..self.fresh {
                    fresh.push(timed_request(&fresh_worker, probe).await?);
                }
                // Fresh sandboxes from the standby: each request gets a sandbox
                // no request has used, instantiated and started ahead of time.
                standby_worker.start_standby();
                let mut standby = Vec::with_capacity(self.fresh);
                // Page faults a request takes (copy-on-write off the snapshot):
                // the main cost of a fresh sandbox's first response.
                let mut standby_faults = 0;
                for _ in 0..self.fresh {
                    while standby_worker.standby_count() == 0 {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    let faults = minor_faults();
                    standby.push(timed_request(&standby_worker, probe).await?);
                    standby_faults += minor_faults().saturating_sub(faults);
                }
                for _ in 0..20 {
                    timed_request(&warm_worker, probe).await?;
                }
                let mut warm = Vec::with_capacity(self.warm);
                let warm_faults = minor_faults();
                for _ in 0..self.warm {
                    warm.push(timed_request(&warm_worker, probe).await?);
                }
                let warm_faults = minor_faults().saturating_sub(warm_faults);
                let faults = (
                    standby_faults as f64 / self.fresh as f64,
                    warm_faults as f64 / self.warm as f64,
                );
                // Private memory per warm sandbox: pages a started sandbox has
                // written (copy-on-write faults off the snapshot image, heap,
                // stacks), measured as the process's growth while they live.
                let before = private_dirty_bytes()?;
                let mut held = Vec::with_capacity(MEMORY_SANDBOXES);
                for _ in 0..MEMORY_SANDBOXES {
                    held.push(warm_worker.warmed_sandbox().await?);
                }
                let after = private_dirty_bytes()?;
                drop(held);
                let per_sandbox = after.saturating_sub(before) / MEMORY_SANDBOXES as u64;
                anyhow::Ok((instantiate, fresh, standby, warm, per_sandbox, faults))
            })?;

        let report = Report {
            build: build_time,
            built: outcome.built,
            load: load_time,
            component_bytes,
            instantiate: Stats::of(instantiate),
            fresh: Stats::of(fresh),
            standby: Stats::of(standby),
            warm: Stats::of(warm),
            sandbox_memory,
            faults,
        };
        if self.json {
            report.print_json()
        } else {
            report.print_table()
        }
        Ok(())
    }
}

/// Sandboxes held at once to measure the memory each one costs.
const MEMORY_SANDBOXES: usize = 16;

/// The process's private dirty memory (Linux; 0 elsewhere).
fn private_dirty_bytes() -> Result<u64> {
    let Ok(rollup) = std::fs::read_to_string("/proc/self/smaps_rollup") else {
        return Ok(0);
    };
    let kib: u64 = rollup
        .lines()
        .filter_map(|line| line.strip_prefix("Private_Dirty:"))
        .filter_map(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .sum();
    Ok(kib * 1024)
}

/// The request every sample sends.
struct Probe {
    method: http::Method,
    uri: String,
    body: Bytes,
}

async fn timed_request(worker: &Arc<Worker>, probe: &Probe) -> Result<Duration> {
    let request = http::Request::builder()
        .method(probe.method.clone())
        .uri(&probe.uri)
        .header("host", "localhost")
        .body(Full::new(probe.body.clone()))?;
    let started = Instant::now();
    let response = worker.handle(request).await;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow!("{e:?}"))?
        .to_bytes();
    let elapsed = started.elapsed();
    if !status.is_success() {
        bail!(
            "the worker answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(elapsed)
}

struct Stats {
    p50: Duration,
    p99: Duration,
    mean: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        Self {
            p50: at(0.5),
            p99: at(0.99),
            mean,
        }
    }
}

struct Report {
    build: Duration,
    built: bool,
    load: Duration,
    component_bytes: u64,
    instantiate: Stats,
    fresh: Stats,
    standby: Stats,
    warm: Stats,
    sandbox_memory: u64,
    /// Minor page faults per request: (fresh from standby, warm).
    faults: (f64, f64),
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl Report {
    fn print_table(&self) {
        let kind = if self.built { "cold" } else { "cached" };
        println!(
            "build ({kind}):                      {:>10.1} ms",
            self.build.as_secs_f64() * 1e3
        );
        println!(
            "compile or load compiled:            {:>10.1} ms",
            self.load.as_secs_f64() * 1e3
        );
        println!(
            "worker's own component or snapshot:  {:>10.1} MB",
            self.component_bytes as f64 / 1e6
        );
        println!(
            "                                      {:>10} {:>10} {:>10}",
            "p50 µs", "p99 µs", "mean µs"
        );
        for (name, s) in [
            ("instantiate from snapshot", &self.instantiate),
            ("cold: instantiate → first response", &self.fresh),
            ("fresh sandbox from standby → resp.", &self.standby),
            ("warm sandbox → response", &self.warm),
        ] {
            println!(
                "{name:<37} {:>10.1} {:>10.1} {:>10.1}",
                us(s.p50),
                us(s.p99),
                us(s.mean)
            );
        }
        println!(
            "warm requests/s (one sandbox, serial): {:>9.0}",
            1.0 / self.warm.mean.as_secs_f64()
        );
        println!(
            "page faults per request: fresh {:.0}, warm {:.2}",
            self.faults.0, self.faults.1
        );
        println!(
            "private memory per started sandbox:   {:>9.2} MiB",
            self.sandbox_memory as f64 / (1 << 20) as f64
        );
    }

    fn print_json(&self) {
        let stats = |s: &Stats| serde_json::json!({"p50_us": us(s.p50), "p99_us": us(s.p99), "mean_us": us(s.mean)});
        let report = serde_json::json!({
            "build_ms": self.build.as_secs_f64() * 1e3,
            "build_kind": if self.built { "cold" } else { "cached" },
            "load_ms": self.load.as_secs_f64() * 1e3,
            "component_bytes": self.component_bytes,
            "instantiate": stats(&self.instantiate),
            "fresh_first_response": stats(&self.fresh),
            "standby_first_response": stats(&self.standby),
            "warm_response": stats(&self.warm),
            "sandbox_private_bytes": self.sandbox_memory,
            "faults_per_request": {"standby": self.faults.0, "warm": self.faults.1},
        });
        println!("{report}");
    }
}

/// The process's minor page faults so far (Linux; 0 elsewhere).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Field 10 (minflt); fields after the command name, which may hold spaces.
    let after_name = stat.rsplit(')').next().unwrap_or("");
    after_name
        .split_whitespace()
        .nth(7)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Disk the build takes of its own: its snapshot's memory image as stored
/// (compressed, or a sparse file: the blocks it holds) on a shared base, or
/// its own component.
fn own_bytes(artifact: &taipan_build::Artifact) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let path = match artifact.snapshot() {
        Some(snapshot) => match snapshot.meta() {
            Ok(meta) => snapshot.stored_image(&meta),
            Err(_) => return 0,
        },
        None => artifact.component(),
    };
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}
