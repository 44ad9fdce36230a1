//! The data dir of `taipan serve`: content-addressed builds and, per worker,
//! its versions and which one serves. Every write is atomic (write a temp
//! file, fsync, rename, fsync the folder), so a crash leaves the old state or
//! the new one, never half of either.
//!
//! ```text
//! DATA/artifacts/<build id>/          builds, shared by identical deploys
//! DATA/workers/<name>/versions/<v>.json
//! DATA/workers/<name>/current         the serving version's id
//! DATA/workers/<name>/secrets.json    its secrets (mode 0600; never listed)
//! DATA/assets/<content hash>/         `[assets]` folders, shared by identical deploys
//! DATA/state/                         binding state: kv/, d1/ (SQLite)
//! DATA/staging/                       uploads being unpacked (cleared on start)
//! DATA/node-id                        this node's id in a cluster
//! ```

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// What a version records: enough to serve it again after a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionRecord {
    pub id: String,
    pub worker: String,
    /// RFC 3339, UTC.
    pub created: String,
    pub artifact: String,
    pub build_ms: u64,
    /// True when an identical build already existed.
    pub reused_build: bool,
    pub vars_json: String,
    pub routes: Vec<String>,
    /// The worker's `[limits]` (stored flat: `cpu_ms`, `memory_mb`, …).
    #[serde(flatten)]
    pub limits: taipan_config::ConfigLimits,
    pub runtime: String,
    /// KV, D1, services, crons (absent in records from before bindings).
    #[serde(default)]
    pub bindings: taipan_config::Bindings,
    /// The `[assets]` folder's content id under `DATA/assets/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn open(root: &Path) -> Result<Self> {
        for dir in ["artifacts", "assets", "workers", "staging", "state"] {
            std::fs::create_dir_all(root.join(dir))
                .with_context(|| format!("creating \"{}\"", root.join(dir).display()))?;
        }
        // Uploads being unpacked, and builds being staged, when the server
        // stopped (or was killed) are garbage: they were never visible.
        if let Ok(entries) = std::fs::read_dir(root.join("staging")) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        if let Ok(entries) = std::fs::read_dir(root.join("artifacts")) {
            for entry in entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".staging-"))
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// This node's id in a cluster: made on first use, kept across restarts.
    pub fn node_id(&self) -> Result<String> {
        let path = self.root.join("node-id");
        if let Ok(id) = std::fs::read_to_string(&path)
            && !id.trim().is_empty()
        {
            return Ok(id.trim().to_string());
        }
        let id = format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        write_atomic(&path, id.as_bytes())?;
        Ok(id)
    }

    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// The compiled code builds start from (`taipan_guest::snapshot`): kept
    /// with the builds, not in the cache, so clearing the cache never stops
    /// a deployed worker.
    pub fn bases(&self) -> PathBuf {
        self.root.join("bases")
    }

    pub fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn assets(&self, id: &str) -> PathBuf {
        self.assets_root().join(id)
    }

    /// Where every assets folder is kept, by id.
    pub fn assets_root(&self) -> PathBuf {
        self.root.join("assets")
    }

    /// Keep a copy of an `[assets]` folder, by content: its id.
    pub fn store_assets(&self, folder: &Path) -> Result<String> {
        let files = taipan_build::source::files(folder)?;
        let mut hasher = sha2::Sha256::new();
        taipan_build::source::hash_into(&mut hasher, &files)?;
        let id: String = hasher.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let dest = self.assets(&id);
        if !dest.is_dir() {
            let staging = tempfile::tempdir_in(self.staging())?;
            taipan_build::source::copy_into(&files, staging.path())?;
            // Another deploy may have stored the same content meanwhile: fine.
            if std::fs::rename(staging.keep(), &dest).is_err() && !dest.is_dir() {
                bail!("could not store the assets in \"{}\"", dest.display());
            }
            sync_dir(&self.assets_root());
        }
        Ok(id)
    }

    /// A worker's secrets, by name.
    pub fn secrets(&self, name: &str) -> Result<BTreeMap<String, String>> {
        let path = self.worker_dir(name).join("secrets.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("reading \"{}\"", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).with_context(|| format!("reading \"{}\"", path.display())),
        }
    }

    /// Set (`Some`) or remove (`None`) one secret; true if something changed.
    pub fn set_secret(&self, name: &str, secret: &str, value: Option<&str>) -> Result<bool> {
        let mut secrets = self.secrets(name)?;
        let changed = match value {
            Some(v) => secrets.insert(secret.to_string(), v.to_string()).as_deref() != Some(v),
            None => secrets.remove(secret).is_some(),
        };
        let dir = self.worker_dir(name);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("secrets.json");
        write_atomic(&path, &serde_json::to_vec(&secrets)?)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(changed)
    }

    fn worker_dir(&self, name: &str) -> PathBuf {
        self.root.join("workers").join(name)
    }

    pub fn worker_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = std::fs::read_dir(self.root.join("workers"))?
            .flatten()
            .filter(|e| e.path().join("current").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        let dir = self.worker_dir(name).join("versions");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut versions = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let record: VersionRecord = serde_json::from_slice(&std::fs::read(&path)?)
                    .with_context(|| format!("reading \"{}\"", path.display()))?;
                versions.push(record);
            }
        }
        versions.sort_by_key(|v| version_number(&v.id));
        Ok(versions)
    }

    pub fn version(&self, name: &str, id: &str) -> Result<Option<VersionRecord>> {
        Ok(self.versions(name)?.into_iter().find(|v| v.id == id))
    }

    pub fn current(&self, name: &str) -> Result<Option<VersionRecord>> {
        let Ok(id) = std::fs::read_to_string(self.worker_dir(name).join("current")) else {
            return Ok(None);
        };
        self.version(name, id.trim())
    }

    /// The next version id of a worker: v1, v2, ...
    pub fn next_version_id(&self, name: &str) -> Result<String> {
        let last = self
            .versions(name)?
            .iter()
            .map(|v| version_number(&v.id))
            .max()
            .unwrap_or(0);
        Ok(format!("v{}", last + 1))
    }

    pub fn add_version(&self, record: &VersionRecord) -> Result<()> {
        let dir = self.worker_dir(&record.worker).join("versions");
        std::fs::create_dir_all(&dir)?;
        write_atomic(
            &dir.join(format!("{}.json", record.id)),
            &serde_json::to_vec_pretty(record)?,
        )
    }

    pub fn set_current(&self, name: &str, id: &str) -> Result<()> {
        if self.version(name, id)?.is_none() {
            bail!("worker {name:?} has no version {id:?}");
        }
        write_atomic(&self.worker_dir(name).join("current"), id.as_bytes())
    }

    /// Forget a worker's versions but its `keep` most recent and its
    /// serving one; how many were forgotten.
    pub fn forget_old_versions(&self, name: &str, keep: usize) -> Result<usize> {
        let versions = self.versions(name)?;
        let current =
            std::fs::read_to_string(self.worker_dir(name).join("current")).unwrap_or_default();
        let dir = self.worker_dir(name).join("versions");
        let old = versions.len().saturating_sub(keep);
        let mut forgotten = 0;
        for version in versions[..old].iter().filter(|v| v.id != current.trim()) {
            std::fs::remove_file(dir.join(format!("{}.json", version.id)))
                .with_context(|| format!("forgetting {name} {}", version.id))?;
            forgotten += 1;
        }
        if forgotten > 0 {
            sync_dir(&dir);
        }
        Ok(forgotten)
    }

    /// Every version of every worker (serving or not).
    pub fn all_versions(&self) -> Result<Vec<VersionRecord>> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.root.join("workers"))?.flatten() {
            if let Some(name) = entry.file_name().to_str() {
                all.extend(self.versions(name)?);
            }
        }
        Ok(all)
    }

    /// Remove a worker's records (its builds go with the next sweep,
    /// crate::gc, unless another worker's versions name them too).
    pub fn delete_worker(&self, name: &str) -> Result<bool> {
        let dir = self.worker_dir(name);
        if !dir.exists() {
            return Ok(false);
        }
        // Rename first, so a crash midway leaves no half-deleted worker behind.
        let trash = self
            .staging()
            .join(format!("deleted-{name}-{}", std::process::id()));
        std::fs::rename(&dir, &trash)?;
        sync_dir(&self.root.join("workers"));
        std::fs::remove_dir_all(&trash)?;
        Ok(true)
    }
}

fn version_number(id: &str) -> u64 {
    id.trim_start_matches('v').parse().unwrap_or(0)
}

/// Write, fsync, rename over the target, fsync the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a file path without a folder")?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("writing \"{}\"", path.display()))?;
    sync_dir(dir);
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(worker: &str, id: &str) -> VersionRecord {
        VersionRecord {
            id: id.into(),
            worker: worker.into(),
            created: "2026-01-01T00:00:00Z".into(),
            artifact: "abc".into(),
            build_ms: 1,
            reused_build: false,
            vars_json: "{}".into(),
            routes: vec![],
            limits: Default::default(),
            runtime: "cpython-3.14".into(),
            bindings: Default::default(),
            assets: None,
        }
    }

    #[test]
    fn versions_current_and_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        assert_eq!(data.next_version_id("w").unwrap(), "v1");
        data.add_version(&record("w", "v1")).unwrap();
        data.add_version(&record("w", "v2")).unwrap();
        assert!(data.worker_names().unwrap().is_empty(), "no current yet");
        data.set_current("w", "v2").unwrap();
        assert_eq!(data.current("w").unwrap().unwrap().id, "v2");
        assert_eq!(data.next_version_id("w").unwrap(), "v3");
        assert!(data.set_current("w", "v9").is_err());
        data.set_current("w", "v1").unwrap();
        let reopened = DataDir::open(tmp.path()).unwrap();
        assert_eq!(reopened.current("w").unwrap().unwrap().id, "v1");
        assert_eq!(reopened.worker_names().unwrap(), ["w"]);
        assert!(reopened.delete_worker("w").unwrap());
        assert!(reopened.worker_names().unwrap().is_empty());
        assert!(!reopened.delete_worker("w").unwrap());
    }

    #[test]
    fn old_versions_are_forgotten_but_the_serving_one() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        for id in ["v1", "v2", "v3", "v4", "v5"] {
            data.add_version(&record("w", id)).unwrap();
        }
        data.add_version(&record("other", "v1")).unwrap();
        // Rolled back to v2.
        data.set_current("w", "v2").unwrap();
        assert_eq!(data.forget_old_versions("w", 2).unwrap(), 2);
        let ids = |name| -> Vec<String> {
            data.versions(name)
                .unwrap()
                .into_iter()
                .map(|v| v.id)
                .collect()
        };
        assert_eq!(ids("w"), ["v2", "v4", "v5"]);
        assert_eq!(data.next_version_id("w").unwrap(), "v6");
        assert_eq!(data.forget_old_versions("w", 2).unwrap(), 0);
        assert_eq!(ids("other"), ["v1"]);
        assert_eq!(data.all_versions().unwrap().len(), 4);
    }

    #[test]
    fn secrets_are_kept_per_worker() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        assert!(data.secrets("w").unwrap().is_empty());
        assert!(data.set_secret("w", "KEY", Some("v1")).unwrap());
        assert!(!data.set_secret("w", "KEY", Some("v1")).unwrap());
        assert_eq!(data.secrets("w").unwrap()["KEY"], "v1");
        assert!(data.secrets("other").unwrap().is_empty());
        assert!(data.set_secret("w", "KEY", None).unwrap());
        assert!(data.secrets("w").unwrap().is_empty());
    }
}
