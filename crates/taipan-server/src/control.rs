//! The control plane: which versions each worker has, which one serves, and
//! its secrets. One trait, two homes: the data dir on a single node
//! ([`DataDir`]), PostgreSQL in a cluster (`crate::cluster`).

use std::collections::BTreeMap;

use anyhow::Result;
use async_trait::async_trait;

use crate::gc::Keep;
use crate::store::{DataDir, VersionRecord};

/// A change to what serves a worker: nodes serving it compare revisions to
/// tell whether they have loaded it (always 0 on a single node).
pub type Revision = i64;

#[async_trait]
pub trait ControlPlane: Send + Sync {
    /// Workers with a serving version, by name.
    async fn worker_names(&self) -> Result<Vec<String>>;
    async fn current(&self, worker: &str) -> Result<Option<VersionRecord>>;
    async fn versions(&self, worker: &str) -> Result<Vec<VersionRecord>>;
    async fn version(&self, worker: &str, id: &str) -> Result<Option<VersionRecord>> {
        Ok(self
            .versions(worker)
            .await?
            .into_iter()
            .find(|v| v.id == id))
    }
    /// The id the next version of `worker` gets: v1, v2, …
    async fn next_version_id(&self, worker: &str) -> Result<String>;
    /// Record a version and make it the serving one, at once.
    async fn publish(&self, record: &VersionRecord) -> Result<Revision>;
    /// Serve version `id` again; None when there is no such version.
    async fn set_current(&self, worker: &str, id: &str) -> Result<Option<Revision>>;
    /// Remove a worker's records and secrets; false if it had none.
    async fn delete_worker(&self, worker: &str) -> Result<bool>;
    /// Forget `worker`'s versions but its `keep` most recent and its serving
    /// one; how many were forgotten.
    async fn forget_old_versions(&self, worker: &str, keep: usize) -> Result<usize>;
    /// What every remaining version of every worker names (`crate::gc`).
    async fn kept(&self) -> Result<Keep>;
    async fn secrets(&self, worker: &str) -> Result<BTreeMap<String, String>>;
    /// Set (`Some`) or remove (`None`) a secret; the revision when it changed.
    async fn set_secret(
        &self,
        worker: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<Option<Revision>>;
}

/// A single node's control plane: files in the data dir (small, atomic
/// writes; cheap enough to do on the async thread).
#[async_trait]
impl ControlPlane for DataDir {
    async fn worker_names(&self) -> Result<Vec<String>> {
        DataDir::worker_names(self)
    }

    async fn current(&self, worker: &str) -> Result<Option<VersionRecord>> {
        DataDir::current(self, worker)
    }

    async fn versions(&self, worker: &str) -> Result<Vec<VersionRecord>> {
        DataDir::versions(self, worker)
    }

    async fn next_version_id(&self, worker: &str) -> Result<String> {
        DataDir::next_version_id(self, worker)
    }

    async fn publish(&self, record: &VersionRecord) -> Result<Revision> {
        self.add_version(record)?;
        DataDir::set_current(self, &record.worker, &record.id)?;
        Ok(0)
    }

    async fn set_current(&self, worker: &str, id: &str) -> Result<Option<Revision>> {
        if DataDir::version(self, worker, id)?.is_none() {
            return Ok(None);
        }
        DataDir::set_current(self, worker, id)?;
        Ok(Some(0))
    }

    async fn delete_worker(&self, worker: &str) -> Result<bool> {
        DataDir::delete_worker(self, worker)
    }

    async fn forget_old_versions(&self, worker: &str, keep: usize) -> Result<usize> {
        DataDir::forget_old_versions(self, worker, keep)
    }

    async fn kept(&self) -> Result<Keep> {
        // Every version file of every worker: off the async threads.
        let data = self.clone();
        let all = tokio::task::spawn_blocking(move || data.all_versions())
            .await
            .map_err(|e| anyhow::anyhow!("the reading task failed: {e}"))??;
        let mut keep = Keep::default();
        for record in &all {
            keep.version(record);
        }
        Ok(keep)
    }

    async fn secrets(&self, worker: &str) -> Result<BTreeMap<String, String>> {
        DataDir::secrets(self, worker)
    }

    async fn set_secret(
        &self,
        worker: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<Option<Revision>> {
        Ok(DataDir::set_secret(self, worker, name, value)?.then_some(0))
    }
}
