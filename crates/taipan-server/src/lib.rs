//! The HTTP front of Taipan and the servers built on it.

pub mod admin;
pub mod api;
pub mod bundle;
pub mod cluster;
pub mod control;
pub mod crons;
pub mod dev;
pub mod front;
pub mod gc;
pub mod host;
pub mod internal;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod report;
pub mod serve;
pub mod store;
pub mod tail;
pub mod watch;

pub use dev::{DevOptions, run_dev};
pub use serve::{ServeOptions, ServeState, run_serve};
