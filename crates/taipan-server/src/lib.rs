//! The HTTP front of Taipan and the servers built on it.

pub mod admin;
pub mod bundle;
pub mod dev;
pub mod front;
pub mod host;
pub mod registry;
pub mod serve;
pub mod store;
pub mod watch;

pub use dev::{DevOptions, run_dev};
pub use serve::{ServeOptions, ServeState, run_serve};
