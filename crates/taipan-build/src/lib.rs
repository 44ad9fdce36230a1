//! Building a worker: Python source → pre-initialized WebAssembly component.
//!
//! The SDK and the worker's source tree are linked with CPython by the
//! componentize-py crate, which runs the worker's imports and snapshots the
//! interpreter's memory. Results are cached by content hash, so an unchanged
//! worker is never rebuilt.

pub mod artifact;
pub mod builder;
pub mod cache;
pub mod embedded;
pub mod source;

pub use artifact::{Artifact, Mount};
pub use builder::{BuildError, BuildOptions, BuildOutcome, build};
pub use cache::CacheDirs;
pub use embedded::{PythonFiles, python_files};
pub use taipan_packages::SourceOptions;
