//! Building a worker: Python source → pre-initialized WebAssembly component.
//!
//! The SDK and the worker's source tree are linked with CPython by the
//! componentize-py crate, which runs the worker's imports and snapshots the
//! interpreter's memory. Results are cached by content hash, so an unchanged
//! worker is never rebuilt.

pub mod base;
pub mod builder;
mod bytecode;
pub mod embedded;
pub mod source;

pub use builder::{BuildCaches, BuildError, BuildOptions, BuildOutcome, build};
pub use embedded::{PythonFiles, python_files};
pub use taipan_guest::{Artifact, CacheDirs, Mount, artifact, contract};
pub use taipan_packages::SourceOptions;
