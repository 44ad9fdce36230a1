//! The HTTP front of Taipan and the servers built on it.

pub mod dev;
pub mod front;
pub mod watch;

pub use dev::{DevOptions, run_dev};
