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
        tracing_subscriber::EnvFilter::new("info,cranelift=warn,wasmtime=warn")
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
