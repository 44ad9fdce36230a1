//! A build's output: the component plus the folders its sandboxes mount.

use std::path::{Path, PathBuf};

/// The standard library and componentize-py's helper modules, unpacked
/// once per Taipan version (by the builder) and shared by every worker.
#[derive(Debug, Clone)]
pub struct PythonFiles {
    pub stdlib: PathBuf,
    pub bundled: PathBuf,
}

/// A host folder a sandbox sees, read-only, as the WASI preopen `guest`
/// (e.g. "python", which the guest's libc resolves as "/python").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub guest: String,
    pub host: PathBuf,
}

/// A built worker: everything needed to run it, in one content-addressed folder.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The content hash of the build inputs; names `dir`.
    pub id: String,
    pub dir: PathBuf,
}

pub const COMPONENT_FILE: &str = "component.wasm";
/// Written last: a folder without it is an unfinished build.
pub const COMPLETE_FILE: &str = "complete";

/// The folders on the Python path while pre-initializing, in order. The
/// componentize-py crate mounts the i-th at "/i", so sandboxes must too.
/// "packages" holds the worker's installed requirements (maybe empty).
pub const PYTHON_PATH_DIRS: [&str; 4] = ["sdk", "gen", "src", "packages"];

impl Artifact {
    pub fn open(dir: &Path) -> Option<Self> {
        let complete = dir.join(COMPLETE_FILE).exists()
            && (dir.join(COMPONENT_FILE).exists()
                || crate::snapshot::Snapshot::open(dir).is_some());
        let id = dir.file_name()?.to_string_lossy().into_owned();
        complete.then(|| Self {
            id,
            dir: dir.to_path_buf(),
        })
    }

    /// The artifact's own component: builds before snapshots on a shared
    /// base had one (see `snapshot`).
    pub fn component(&self) -> PathBuf {
        self.dir.join(COMPONENT_FILE)
    }

    /// What the worker's sandboxes start from on top of its base, if the
    /// build kept a snapshot rather than a component of its own.
    pub fn snapshot(&self) -> Option<crate::snapshot::Snapshot> {
        crate::snapshot::Snapshot::open(&self.dir)
    }

    /// Every folder a sandbox of this worker mounts, read-only.
    pub fn mounts(&self, python: &PythonFiles) -> Vec<Mount> {
        let mut mounts = vec![
            Mount {
                guest: "python".into(),
                host: python.stdlib.clone(),
            },
            Mount {
                guest: "bundled".into(),
                host: python.bundled.clone(),
            },
        ];
        for (index, name) in PYTHON_PATH_DIRS.iter().enumerate() {
            mounts.push(Mount {
                guest: index.to_string(),
                host: self.dir.join(name),
            });
        }
        mounts
    }
}
