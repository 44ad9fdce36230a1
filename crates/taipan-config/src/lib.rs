//! The worker's configuration: `wrangler.toml` / `wrangler.json` / `wrangler.jsonc`.
//!
//! Parsed twice, like ripgrep's `LowArgs`/`HiArgs`: [`raw`] keeps exactly what
//! the user wrote (with line numbers for errors), [`resolve`] turns it into a
//! validated [`WorkerConfig`] the rest of Taipan can trust. [`load()`] finds
//! the file and runs both.

pub mod assets;
pub mod bindings;
pub mod cron;
pub mod environments;
pub mod error;
#[cfg(test)]
mod fixtures;
pub mod hyperdrive;
mod keys;
pub mod limits;
pub mod load;
pub mod queues;
pub mod ratelimits;
pub mod raw;
pub mod resolve;
pub mod routes;
pub mod runtimes;
mod version_metadata;
pub mod workflows;

pub use assets::AssetsConfig;
pub use bindings::Bindings;
pub use error::ConfigError;
pub use limits::ConfigLimits;
pub use load::{load, load_at, load_env_at};
pub use resolve::{SnapshotMode, WorkerConfig};
pub use routes::RoutePattern;
pub use runtimes::{PythonRuntime, RUNTIMES, RuntimeChoice};

/// The config file names looked for in a project folder, in order.
pub const CONFIG_FILE_NAMES: [&str; 3] = ["wrangler.toml", "wrangler.jsonc", "wrangler.json"];
