//! One module per subcommand; helpers they share.

pub mod bench;
pub mod build;
pub mod client;
pub mod d1;
pub mod deploy;
pub mod dev;
pub mod nodes;
pub mod printer;
pub mod queues;
pub mod runtimes;
pub mod secret;
pub mod serve;
pub mod versions;
pub mod wheels;

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

/// The process's runtime: one engine, the standard library unpacked once.
pub fn runtime(pool: PoolSize) -> Result<Runtime> {
    let cache = CacheDirs::from_env();
    let python = taipan_build::python_files(&cache.root)?;
    Runtime::new(cache, python, pool)
}

pub fn tokio() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// `--env NAME`: use the config's `[env.NAME]` section, as wrangler does.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EnvArgs {
    /// The config environment: an [env.NAME] section (its worker is named
    /// <name>-<NAME> unless the section sets `name`).
    #[arg(short = 'e', long = "env", env = "CLOUDFLARE_ENV", value_name = "NAME")]
    pub env: Option<String>,
}

impl EnvArgs {
    pub fn get(&self) -> Option<&str> {
        self.env.as_deref().filter(|e| !e.is_empty())
    }

    /// Load the worker's config from `dir` for this environment.
    pub fn load(&self, dir: &std::path::Path) -> Result<taipan_config::WorkerConfig> {
        taipan_config::load(dir, self.get()).map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// Where a build finds the worker's packages (`requirements.txt`,
/// `pyproject.toml` dependencies).
#[derive(clap::Args, Debug, Clone)]
pub struct PackageArgs {
    /// The package index (PEP 691 JSON simple API).
    #[arg(long, env = "TAIPAN_INDEX_URL", default_value = taipan_packages::sources::DEFAULT_INDEX)]
    index_url: String,
    /// Use no package index: only --find-links folders (offline).
    /// TAIPAN_NO_INDEX takes 1/0, true/false, yes/no, on/off, as uv's flags do.
    #[arg(long, env = "TAIPAN_NO_INDEX", value_parser = clap::builder::BoolishValueParser::new())]
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
