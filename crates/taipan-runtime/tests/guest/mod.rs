//! Workers whose component is `handler.wat` with a chosen `handle` body:
//! compiled by Cranelift in milliseconds, no CPython, no build.

use std::sync::Arc;

use taipan_guest::{Artifact, CacheDirs, PythonFiles, artifact};
use taipan_runtime::engine::PoolSize;
use taipan_runtime::{Limits, Runtime, Worker, WorkerSettings};

const HANDLER: &str = include_str!("handler.wat");

pub struct Guest {
    pub runtime: Runtime,
    dir: tempfile::TempDir,
}

impl Guest {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let python = PythonFiles {
            stdlib: dir.path().join("python"),
            bundled: dir.path().join("bundled"),
        };
        std::fs::create_dir_all(&python.stdlib).unwrap();
        std::fs::create_dir_all(&python.bundled).unwrap();
        let cache = CacheDirs {
            root: dir.path().join("cache"),
        };
        let pool = PoolSize {
            sandboxes: 8,
            max_memory: 64 << 20,
        };
        let runtime = Runtime::new(cache, python, pool).unwrap();
        Self { runtime, dir }
    }

    /// A worker whose `handle` runs `body` (WAT instructions; `$request` and
    /// `$out` are in scope; see the helpers in handler.wat).
    pub fn worker(&self, body: &str, settings: WorkerSettings) -> Arc<Worker> {
        let wat = HANDLER.replace(";; <handle body>", body);
        assert_ne!(wat, HANDLER, "handler.wat lost its marker line");
        let wasm = wat::parse_str(&wat).unwrap();
        let id = format!("{:x}", md5ish(&wasm));
        let dir = self.dir.path().join("artifacts").join(&id);
        for sub in artifact::PYTHON_PATH_DIRS {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        std::fs::write(dir.join(artifact::COMPONENT_FILE), &wasm).unwrap();
        std::fs::write(dir.join(artifact::COMPLETE_FILE), "").unwrap();
        let artifact = Artifact::open(&dir).unwrap();
        Worker::load(&self.runtime, &artifact, settings).unwrap()
    }
}

/// Small limits, so the tests reach them quickly.
pub fn limits() -> Limits {
    Limits {
        memory_bytes: 4 << 20,
        cpu_time: std::time::Duration::from_millis(300),
        max_sandboxes: 1,
        max_queue: 0,
        ..Limits::default()
    }
}

pub fn settings() -> WorkerSettings {
    WorkerSettings::new("test", limits())
}

/// Names each variant's artifact folder.
fn md5ish(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}
