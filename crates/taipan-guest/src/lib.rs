//! The guest as the host sees it, with nothing of how it is built: a built
//! worker's layout on disk (its component and the folders its sandboxes
//! mount), where the caches live, and the host–guest contract. The runtime
//! depends on this crate, not on the builder, so it never links
//! componentize-py.

pub mod artifact;
pub mod cache;
pub mod contract;

pub use artifact::{Artifact, Mount, PythonFiles};
pub use cache::CacheDirs;
