//! Running workers: the wasmtime engine, sandboxes restored from a worker's
//! snapshot, and the pool that reuses warm ones.
//!
//! Lifetimes, as Spin names them: the [`Runtime`] lives as long as the process
//! (engine, epoch ticker, compile cache); a [`Worker`] lives as long as one
//! deployed build (compiled component, pre-linked instance, sandbox pool); a
//! request gets one sandbox for its duration.

pub mod body;
pub mod call;
mod compile_cache;
pub mod engine;
pub mod host;
pub mod limits;
pub mod log;
mod objects;
pub mod pinned;
pub mod pool;
mod respond;
pub mod sandbox;
mod settings;
mod tcp;
pub mod websocket;
mod whole_response;
pub mod worker;

pub use engine::Runtime;
pub use host::{HostLimits, NoHost, WorkerHost};
pub use limits::Limits;
pub use worker::{Worker, WorkerSettings};
