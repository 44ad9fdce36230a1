//! The guest as the host sees it, with nothing of how it is built: a built
//! worker's layout on disk (its component and the folders its sandboxes
//! mount), where the caches live, and the host–guest contract. The runtime
//! depends on this crate, not on the builder, so it never links
//! componentize-py.

pub mod artifact;
pub mod cache;
pub mod contract;
pub mod image;
pub mod snapshot;

pub use artifact::{Artifact, Mount, PythonFiles};
pub use cache::CacheDirs;

/// Lowercase hex of `bytes` (content hashes name builds and cache entries).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
