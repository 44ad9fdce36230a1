//! Where Taipan keeps what it can rebuild: per user, shared by projects.

use std::path::PathBuf;

/// The shared cache: unpacked Python files and compiled machine code.
#[derive(Debug, Clone)]
pub struct CacheDirs {
    pub root: PathBuf,
}

impl CacheDirs {
    /// `$TAIPAN_CACHE_DIR`, else `$XDG_CACHE_HOME/taipan`, else `~/.cache/taipan`.
    pub fn from_env() -> Self {
        let root = std::env::var_os("TAIPAN_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("taipan")))
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/taipan")))
            .unwrap_or_else(|| std::env::temp_dir().join("taipan-cache"));
        Self { root }
    }

    /// Downloaded distributions and installed package sets.
    pub fn packages(&self) -> PathBuf {
        self.root.join("packages")
    }

    /// Bytecode of the SDK and the standard library, shared read-only by
    /// builds (taipan-build's `bytecode`).
    pub fn bytecode(&self) -> PathBuf {
        self.root.join("bytecode")
    }

    /// Compiled code shared by workers with the same libraries, one folder
    /// per base (see `snapshot`), and the build's instrumented components.
    pub fn bases(&self) -> PathBuf {
        self.root.join("bases")
    }

    /// Cranelift's per-function compilation cache, a SQLite file (see
    /// taipan-runtime's `compile_cache`).
    pub fn compile_cache(&self) -> PathBuf {
        self.root.join("compile.sqlite3")
    }

    /// Where versions before the SQLite file kept that cache, one file per
    /// function: removed when found.
    pub fn legacy_compile_cache(&self) -> PathBuf {
        self.root.join("compile")
    }
}
