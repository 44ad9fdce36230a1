//! One module per subcommand; helpers they share.

pub mod bench;
pub mod build;
pub mod client;
pub mod d1;
pub mod deploy;
pub mod dev;
pub mod runtimes;
pub mod secret;
pub mod serve;
pub mod versions;

use anyhow::Result;
use taipan_build::CacheDirs;
use taipan_runtime::Runtime;
use taipan_runtime::engine::PoolSize;

pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAIPAN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn,pubgrub=warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

pub fn runtime(pool: PoolSize) -> Result<Runtime> {
    Runtime::new(CacheDirs::from_env(), pool)
}

pub fn tokio() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Where a build finds the worker's packages (`requirements.txt`,
/// `pyproject.toml` dependencies).
#[derive(clap::Args, Debug, Clone)]
pub struct PackageArgs {
    /// The package index (PEP 691 JSON simple API).
    #[arg(long, env = "TAIPAN_INDEX_URL", default_value = taipan_packages::sources::DEFAULT_INDEX)]
    index_url: String,
    /// Use no package index: only --find-links folders (offline).
    #[arg(long, env = "TAIPAN_NO_INDEX")]
    no_index: bool,
    /// A folder of wheels and sdists to install from (repeatable).
    #[arg(long = "find-links", env = "TAIPAN_FIND_LINKS", value_delimiter = ',')]
    find_links: Vec<std::path::PathBuf>,
}

impl PackageArgs {
    /// Package sources, caching under `cache` (default: the user's cache dir).
    pub fn sources(
        &self,
        cache: Option<std::path::PathBuf>,
    ) -> Result<taipan_build::SourceOptions> {
        let find_links = self
            .find_links
            .iter()
            .map(|p| std::path::absolute(p).map_err(anyhow::Error::from))
            .collect::<Result<Vec<_>>>()?;
        Ok(taipan_build::SourceOptions {
            index_url: (!self.no_index).then(|| self.index_url.clone()),
            find_links,
            cache: cache.unwrap_or_else(|| CacheDirs::from_env().packages()),
        })
    }
}
