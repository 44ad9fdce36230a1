//! `taipan dev [DIR]`: serve one worker on 127.0.0.1:8787, rebuilding on edits.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use taipan_runtime::Limits;
use taipan_runtime::engine::PoolSize;
use taipan_server::DevOptions;

#[derive(Args)]
pub struct DevArgs {
    /// The worker's project folder (holding wrangler.toml), or its config file.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Config file to use instead of the folder's wrangler.toml/json/jsonc.
    /// Repeat it to run several workers: the first is served, the others are
    /// reachable through its service bindings.
    #[arg(short = 'c', long = "config")]
    config: Vec<PathBuf>,
    /// Serve /__scheduled?cron=... to fire the worker's scheduled handler.
    #[arg(long)]
    test_scheduled: bool,
    #[arg(long, default_value = "127.0.0.1")]
    ip: IpAddr,
    /// Port to listen on; 0 picks a free one (printed in the Ready line).
    #[arg(long, default_value_t = 8787)]
    port: u16,
    /// Don't rebuild when files change.
    #[arg(long)]
    no_watch: bool,
    /// Don't print a line per request (the worker's own output still shows).
    #[arg(long)]
    quiet: bool,
    /// Memory limit per sandbox, in MiB.
    #[arg(long, default_value_t = 512)]
    memory_mb: usize,
    /// Time limit per request, in milliseconds of running guest code.
    #[arg(long, default_value_t = 30_000)]
    cpu_ms: u64,
    #[command(flatten)]
    env: super::EnvArgs,
    #[command(flatten)]
    packages: super::PackageArgs,
}

impl DevArgs {
    pub fn run(self) -> Result<()> {
        if self.memory_mb < 32 {
            bail!(
                "--memory-mb {} is too small: the Python interpreter needs at least 32 MiB",
                self.memory_mb
            );
        }
        if self.cpu_ms == 0 {
            bail!("--cpu-ms must be at least 1");
        }
        let limits = Limits {
            memory_bytes: self.memory_mb << 20,
            cpu_time: Duration::from_millis(self.cpu_ms),
            ..Limits::dev()
        };
        let options = DevOptions {
            projects: if self.config.is_empty() {
                vec![self.dir]
            } else {
                self.config
            },
            test_scheduled: self.test_scheduled,
            ip: self.ip,
            port: self.port,
            watch: !self.no_watch,
            limits,
            log_requests: !self.quiet,
            packages: self.packages.sources(None)?,
            env: self.env.get().map(str::to_string),
        };
        let pool = PoolSize {
            max_memory: options.limits.memory_bytes,
            ..PoolSize::default()
        };
        let runtime = super::runtime(pool)?;
        let printer = std::sync::Arc::new(super::printer::Printer::default());
        super::tokio()?.block_on(taipan_server::run_dev(options, runtime, printer))
    }
}
