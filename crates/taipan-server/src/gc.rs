//! What a server's data dir keeps, and removing the rest.
//!
//! Each worker keeps its newest `ServeOptions::versions_kept` versions and
//! its serving one (the versions it can roll back to; Workers keeps 100).
//! Their builds, the assets they name, and the bases and reference images
//! those builds start from stay. Anything else under `artifacts/`, `bases/`
//! and `assets/` is removed after a deploy, a delete, at start-up and every
//! [`SWEEP_EVERY`], so deleting workers and redeploying them gives disk back.
//!
//! Nothing a version in service, or one still finishing requests, uses is
//! removed (`Registry::in_use`): a dormant worker links again from its
//! build's files and its base's reference image. On a cluster node the data
//! dir is a copy of object storage that other nodes' deploys add to: a sweep
//! excludes this node's fetching and loading (`ServeState::files`), and
//! spares what changed in the last [`CLUSTER_GRACE`] (a build is prefetched
//! before its version is published).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use taipan_guest::Artifact;
use taipan_guest::snapshot::SnapshotMeta;

use crate::store::DataDir;

/// On a cluster node, how long a build, base or assets folder stays after it
/// last changed even when no version names it yet.
pub const CLUSTER_GRACE: Duration = Duration::from_secs(3600);

/// Sweeps also run this often (and at start-up): a cluster node serves
/// versions other nodes deploy, forget and delete.
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// What the remaining versions name.
#[derive(Debug, Default)]
pub struct Keep {
    /// Build ids.
    pub artifacts: HashSet<String>,
    /// Assets ids (`DataDir::assets`).
    pub assets: HashSet<String>,
}

impl Keep {
    pub fn version(&mut self, record: &crate::store::VersionRecord) {
        self.artifacts.insert(record.artifact.clone());
        if let Some(assets) = &record.assets {
            self.assets.insert(assets.clone());
        }
    }
}

/// What a sweep removed, and which bases stay.
#[derive(Debug, Default)]
pub struct Swept {
    pub builds: usize,
    pub bases: usize,
    pub references: usize,
    pub assets: usize,
    /// Disk given back (allocated blocks, so sparse images count as stored).
    pub bytes: u64,
    /// The bases still in use: the runtime drops its copies of the others.
    /// `None` when a kept build could not be read, and no base was removed.
    pub kept_bases: Option<HashSet<String>>,
}

impl Swept {
    pub fn removed_any(&self) -> bool {
        self.builds + self.bases + self.references + self.assets > 0
    }
}

/// Remove what `keep` does not name from `data` and `bases` (the runtime's
/// bases folder), sparing anything changed less than `grace` ago. Blocking.
pub fn sweep(data: &DataDir, bases: &Path, keep: &Keep, grace: Duration) -> Swept {
    let mut swept = Swept::default();
    let recent = |path: &Path| {
        !grace.is_zero()
            && std::fs::metadata(path)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age < grace))
    };

    // Builds; what the kept ones start from.
    let mut starts_from: Option<Vec<SnapshotMeta>> = Some(Vec::new());
    for (name, path) in entries(&data.artifacts()) {
        if !keep.artifacts.contains(&name) && !recent(&path) {
            swept.bytes += remove(&path);
            swept.builds += 1;
            continue;
        }
        let meta = match Artifact::open(&path) {
            // Incomplete (being fetched), or a build of its own: no base.
            None => continue,
            Some(artifact) => match artifact.snapshot() {
                None => continue,
                Some(snapshot) => snapshot.meta(),
            },
        };
        match meta {
            Ok(meta) => {
                if let Some(metas) = &mut starts_from {
                    metas.push(meta);
                }
            }
            Err(e) => {
                tracing::warn!("not removing bases: a kept build is unreadable: {e:#}");
                starts_from = None;
            }
        }
    }

    // Bases, and the reference images in the kept ones.
    if let Some(metas) = starts_from {
        let kept: HashSet<String> = metas.iter().map(|m| m.base.clone()).collect();
        let references: HashSet<(&str, &str)> = metas
            .iter()
            .filter_map(|m| Some((m.base.as_str(), m.compressed()?.reference.as_str())))
            .collect();
        for (name, path) in entries(bases) {
            if !kept.contains(&name) {
                if !recent(&path) {
                    swept.bytes += remove(&path);
                    swept.bases += 1;
                }
                continue;
            }
            for (file, file_path) in entries(&path) {
                let digest = file
                    .strip_prefix("reference-")
                    .and_then(|rest| rest.strip_suffix(".img"));
                if let Some(digest) = digest
                    && !references.contains(&(name.as_str(), digest))
                    && !recent(&file_path)
                {
                    swept.bytes += remove(&file_path);
                    swept.references += 1;
                }
            }
        }
        swept.kept_bases = Some(kept);
    }

    for (name, path) in entries(&data.assets_root()) {
        if !keep.assets.contains(&name) && !recent(&path) {
            swept.bytes += remove(&path);
            swept.assets += 1;
        }
    }
    swept
}

/// The entries of `dir` by name, but those being written (dot names:
/// staging folders, temporary files).
fn entries(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            (!name.starts_with('.')).then(|| (name, e.path()))
        })
        .collect()
}

/// Remove a file or folder; the bytes it held on disk.
fn remove(path: &Path) -> u64 {
    let bytes = allocated(path);
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Ok(()) => bytes,
        Err(e) => {
            tracing::warn!("could not remove \"{}\": {e}", path.display());
            0
        }
    }
}

fn allocated(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let inside: u64 = if meta.is_dir() {
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| allocated(&e.path()))
            .sum()
    } else {
        0
    };
    meta.blocks() * 512 + inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use taipan_guest::snapshot::{CompressedImage, MemoryMeta};

    /// A complete build on `base`, its image compressed against `reference`.
    fn build(data: &DataDir, id: &str, base: &str, reference: &str) {
        let dir = data.artifacts().join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = SnapshotMeta {
            base: base.into(),
            memory: Some(MemoryMeta {
                module: 0,
                pages: 1,
                compressed: Some(CompressedImage {
                    reference: reference.into(),
                    len: 65536,
                }),
            }),
            globals: vec![],
        };
        let snapshot = dir.join(taipan_guest::snapshot::SNAPSHOT_DIR);
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::write(
            snapshot.join("snapshot.json"),
            serde_json::to_vec(&meta).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join(taipan_guest::artifact::COMPLETE_FILE), id).unwrap();
        assert!(Artifact::open(&dir).and_then(|a| a.snapshot()).is_some());
    }

    fn base(bases: &Path, name: &str, references: &[&str]) {
        let dir = bases.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("component.cwasm"), vec![1u8; 10_000]).unwrap();
        for r in references {
            std::fs::write(dir.join(format!("reference-{r}.img")), b"image").unwrap();
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = entries(dir).into_iter().map(|(n, _)| n).collect();
        names.sort();
        names
    }

    #[test]
    fn keeps_what_kept_versions_start_from_and_removes_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        let bases = data.bases();
        build(&data, "aa01", "b1", "d1");
        build(&data, "aa02", "b2", "d2");
        build(&data, "aa03", "b1", "d1");
        base(&bases, "b1", &["d1", "d9"]);
        base(&bases, "b2", &["d2"]);
        std::fs::create_dir_all(data.assets("as1")).unwrap();
        std::fs::create_dir_all(data.assets("as2")).unwrap();
        // Being written: never touched.
        std::fs::create_dir_all(data.artifacts().join(".staging-x")).unwrap();
        std::fs::write(bases.join("b1").join(".storing-y"), b"").unwrap();

        let mut keep = Keep::default();
        keep.artifacts.insert("aa01".into());
        keep.assets.insert("as1".into());
        let swept = sweep(&data, &bases, &keep, Duration::ZERO);

        assert_eq!(names(&data.artifacts()), ["aa01"]);
        assert!(data.artifacts().join(".staging-x").is_dir());
        assert_eq!(names(&bases), ["b1"]);
        assert_eq!(
            names(&bases.join("b1")),
            ["component.cwasm", "reference-d1.img"]
        );
        assert!(bases.join("b1").join(".storing-y").is_file());
        assert_eq!(names(&data.assets_root()), ["as1"]);
        assert_eq!(
            (swept.builds, swept.bases, swept.references, swept.assets),
            (2, 1, 1, 1)
        );
        assert!(swept.bytes >= 10_000, "{swept:?}");
        assert_eq!(swept.kept_bases, Some(HashSet::from(["b1".to_string()])));

        // Nothing more to remove the second time.
        let again = sweep(&data, &bases, &keep, Duration::ZERO);
        assert!(!again.removed_any(), "{again:?}");
    }

    #[test]
    fn spares_what_changed_within_the_grace_period() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        let bases = data.bases();
        // Fetched for a version another node has not published yet.
        build(&data, "bb01", "b1", "d1");
        base(&bases, "b1", &["d1"]);
        let swept = sweep(&data, &bases, &Keep::default(), CLUSTER_GRACE);
        assert!(!swept.removed_any(), "{swept:?}");
        assert_eq!(names(&data.artifacts()), ["bb01"]);
        assert_eq!(names(&bases), ["b1"]);
        // Without it, nothing is kept.
        let swept = sweep(&data, &bases, &Keep::default(), Duration::ZERO);
        assert_eq!((swept.builds, swept.bases), (1, 1));
    }

    #[test]
    fn an_unreadable_kept_build_keeps_every_base() {
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        let bases = data.bases();
        build(&data, "cc01", "b1", "d1");
        base(&bases, "b1", &["d1"]);
        base(&bases, "b2", &[]);
        let meta = data
            .artifacts()
            .join("cc01")
            .join(taipan_guest::snapshot::SNAPSHOT_DIR)
            .join("snapshot.json");
        std::fs::write(&meta, b"{ not json").unwrap();
        let mut keep = Keep::default();
        keep.artifacts.insert("cc01".into());
        let swept = sweep(&data, &bases, &keep, Duration::ZERO);
        assert_eq!(names(&bases), ["b1", "b2"]);
        assert!(swept.kept_bases.is_none());
    }
}
