//! `taipan serve`: the multi-tenant runtime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use taipan_runtime::Limits;
use taipan_runtime::engine::PoolSize;
use taipan_server::ServeOptions;
use taipan_server::bundle::BundleLimits;

#[derive(Args)]
pub struct ServeArgs {
    /// Where deployed versions and their builds are kept.
    #[arg(long, default_value = "taipan-data")]
    data_dir: PathBuf,
    /// Address for the workers' traffic.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address for the admin API.
    #[arg(long, default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    /// Bearer token the admin API requires.
    #[arg(long, env = "TAIPAN_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Run the admin API without a token (only on a loopback address).
    #[arg(long)]
    insecure_local: bool,
    /// Workers without routes answer at <name>.<base-domain>.
    #[arg(long, default_value = "localhost")]
    base_domain: String,
    /// Give every request a new sandbox from the snapshot (strictest isolation).
    #[arg(long)]
    fresh_sandbox_per_request: bool,
    /// Fresh sandboxes each worker keeps instantiated and warmed up ahead of
    /// demand (their start-up then costs a request nothing).
    #[arg(long, default_value_t = 2)]
    standby: usize,
    /// Default time limit per request, in ms (a worker's `limits.cpu_ms` overrides it).
    #[arg(long, default_value_t = 30_000)]
    cpu_ms: u64,
    /// Default memory per sandbox, in MiB (a worker's `limits.memory_mb` overrides it).
    #[arg(long, default_value_t = 128)]
    memory_mb: usize,
    /// Sandboxes one worker may run at once.
    #[arg(long, default_value_t = 16)]
    max_sandboxes: usize,
    /// Requests that may wait for a busy worker's sandbox before getting 503.
    #[arg(long, default_value_t = 256)]
    max_queue: usize,
    /// Largest upload accepted by `deploy`, in MB.
    #[arg(long, default_value_t = 100)]
    max_bundle_mb: u64,
    /// A worker with no request for this many seconds gives its sandboxes
    /// (warm and standby) and their memory back; its next request starts a
    /// fresh sandbox from the snapshot. Warm sandboxes unused this long are
    /// dropped even while the worker is busy.
    #[arg(long, default_value_t = 60)]
    idle_seconds: u64,
    /// Versions each worker keeps to roll back to: its newest N (the
    /// serving one among them, or kept besides them after a rollback);
    /// older versions, and the builds only they used, are removed.
    #[arg(long, default_value_t = 100)]
    versions_kept: usize,
    /// On SIGTERM, answer `/readyz` 503 for this many seconds while still
    /// serving (a load balancer stops sending), then stop accepting and let
    /// requests in flight finish.
    #[arg(long, default_value_t = 0)]
    drain_seconds: u64,
    /// Cluster mode: the PostgreSQL database the nodes share
    /// (postgres://user:password@host/db). Needs --objects and --secrets-key.
    #[arg(long, env = "TAIPAN_DATABASE_URL", hide_env_values = true)]
    database: Option<String>,
    /// Cluster mode: where builds and assets are kept (s3://bucket[/prefix],
    /// credentials from the AWS_* variables; or file:///shared/dir).
    #[arg(long, env = "TAIPAN_OBJECTS_URL")]
    objects: Option<String>,
    /// Cluster mode: the key secrets are sealed with in the database, 64
    /// hex digits, the same on every node (`openssl rand -hex 32`).
    #[arg(long, env = "TAIPAN_SECRETS_KEY", hide_env_values = true)]
    secrets_key: Option<String>,
    /// Cluster mode: where other nodes forward calls to the Durable Objects
    /// this node runs (e.g. 10.0.0.5:8082; keep it off the public network).
    #[arg(long, env = "TAIPAN_INTERNAL_LISTEN")]
    internal_listen: Option<SocketAddr>,
    /// Cluster mode: the URL other nodes reach --internal-listen at, when
    /// it is not the listen address itself (a wildcard address, NAT).
    #[arg(long, env = "TAIPAN_INTERNAL_URL")]
    internal_url: Option<String>,
    #[command(flatten)]
    packages: super::PackageArgs,
}

/// The largest memory any sandbox may have (pool slots are sized for it).
const MAX_MEMORY_MB: usize = 1024;

impl ServeArgs {
    pub fn run(self) -> Result<()> {
        let admin_token = self.admin_token.filter(|t| !t.is_empty());
        if admin_token.is_none() {
            if !self.insecure_local {
                bail!(
                    "the admin API needs a token\nhint: pass --admin-token or set TAIPAN_ADMIN_TOKEN; \
                     for a local test server, --insecure-local with a loopback --admin-listen"
                );
            }
            if !self.admin_listen.ip().is_loopback() {
                bail!(
                    "--insecure-local needs a loopback --admin-listen, not {}",
                    self.admin_listen
                );
            }
        }
        if admin_token.as_ref().is_some_and(|t| t.len() < 16) {
            bail!("the admin token is too short: use at least 16 characters");
        }
        if !(32..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            bail!("--memory-mb must be from 32 to {MAX_MEMORY_MB}");
        }
        if self.cpu_ms == 0 || self.max_sandboxes == 0 || self.max_bundle_mb == 0 {
            bail!("--cpu-ms, --max-sandboxes and --max-bundle-mb must be at least 1");
        }
        if !(1..=86_400).contains(&self.idle_seconds) {
            bail!(
                "--idle-seconds {} is out of range\nhint: give 1 to 86400 seconds",
                self.idle_seconds
            );
        }
        if !(1..=10_000).contains(&self.versions_kept) {
            bail!(
                "--versions-kept {} is out of range\nhint: give 1 to 10000 versions",
                self.versions_kept
            );
        }
        if self.drain_seconds > 3600 {
            bail!("--drain-seconds must be at most 3600");
        }
        if self.listen == self.admin_listen && self.listen.port() != 0 {
            bail!("--listen and --admin-listen must differ");
        }
        let cluster = match (self.database, self.objects) {
            (None, None) => None,
            (Some(database_url), Some(objects_url)) => {
                let Some(key) = self.secrets_key.as_deref() else {
                    bail!(
                        "cluster mode needs --secrets-key (or TAIPAN_SECRETS_KEY): secrets are sealed with it in the database\n\
                         hint: make one with `openssl rand -hex 32` and give every node the same"
                    );
                };
                Some(taipan_cluster::ClusterOptions {
                    database_url,
                    objects_url,
                    secrets_key: taipan_cluster::secrets::parse_key(key)?,
                })
            }
            (Some(_), None) => bail!(
                "--database needs --objects too: builds and assets live in object storage\n\
                 hint: --objects s3://bucket, or file:///dir on a mount every node shares"
            ),
            (None, Some(_)) => bail!(
                "--objects needs --database too (cluster mode)\nhint: --database postgres://user:password@host/db"
            ),
        };
        if cluster.is_some() && self.internal_listen.is_none() {
            bail!(
                "cluster mode needs --internal-listen: other nodes forward calls to the Durable \
                 Objects and D1 databases this node runs there\n\
                 hint: --internal-listen <a private address of this node>:8082"
            );
        }
        if cluster.is_none() && (self.internal_listen.is_some() || self.internal_url.is_some()) {
            bail!(
                "--internal-listen and --internal-url are for cluster mode: add --database and --objects"
            );
        }
        if let Some(addr) = self.internal_listen
            && addr.ip().is_unspecified()
            && self.internal_url.is_none()
        {
            bail!(
                "--internal-listen {addr} is a wildcard address other nodes cannot dial\n\
                 hint: add --internal-url http://<this node's address>:{}",
                addr.port()
            );
        }
        if let Some(url) = &self.internal_url
            && !url.starts_with("http://")
        {
            bail!("--internal-url must be an http:// URL, not {url:?}");
        }
        let limits = Limits {
            memory_bytes: self.memory_mb << 20,
            cpu_time: Duration::from_millis(self.cpu_ms),
            max_sandboxes: self.max_sandboxes,
            max_queue: self.max_queue,
            idle_timeout: Duration::from_secs(self.idle_seconds),
            ..Limits::default()
        };
        let packages = self
            .packages
            .sources(Some(self.data_dir.join("packages")))?;
        let options = ServeOptions {
            packages,
            data_dir: self.data_dir,
            listen: self.listen,
            admin_listen: self.admin_listen,
            admin_token,
            base_domain: self.base_domain,
            limits,
            fresh_sandbox_per_request: self.fresh_sandbox_per_request,
            standby_sandboxes: self.standby,
            drain_delay: Duration::from_secs(self.drain_seconds),
            internal_listen: self.internal_listen,
            internal_url: self.internal_url,
            versions_kept: self.versions_kept,
            bundle_limits: BundleLimits {
                max_bytes: self.max_bundle_mb * 1_000_000,
                ..BundleLimits::default()
            },
        };
        let pool = PoolSize {
            sandboxes: 256,
            max_memory: MAX_MEMORY_MB << 20,
        };
        let runtime = super::runtime(pool)?;
        let printer = std::sync::Arc::new(super::printer::Printer::default());
        super::tokio()?.block_on(async move {
            let cluster = match &cluster {
                Some(options) => Some(taipan_cluster::Cluster::connect(options).await?),
                None => None,
            };
            let state = taipan_server::ServeState::new(runtime, options, printer, cluster)?;
            taipan_server::run_serve(state).await
        })
    }
}
