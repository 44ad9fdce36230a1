//! Cranelift's per-function compile cache, in one SQLite file.
//!
//! Every worker links the same CPython, so compiling a second component with
//! mostly the same functions (a base after the build's instrumented copy of
//! it, or a base for a new set of packages) mostly hits here.
//!
//! One file per function cost more than the compile it saved on a cold
//! build: CPython is ~15,000 functions, and creating that many files took a
//! third of a cold `taipan build`'s CPU time in ext4's inode allocator
//! (`perf`: `__ext4_new_inode` → `find_inode_bit` → `recently_deleted`).
//! SQLite appends them to one write-ahead log.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use rusqlite::{Connection, OptionalExtension, params};
use wasmtime::CacheStore;

/// How long a lookup or insert waits for another process's write (the
/// server and `taipan build` may compile at once) before it counts as a miss.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The cache: one connection, shared by Cranelift's compile threads.
#[derive(Debug)]
pub(crate) struct CompileCache {
    db: Mutex<Connection>,
    path: PathBuf,
}

impl CompileCache {
    /// Open (or create) the cache at `path`. A file that is not a cache (or
    /// not readable) is replaced: it holds nothing that cannot be compiled
    /// again.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating \"{}\"", dir.display()))?;
        }
        let db = match Self::connect(path) {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!(
                    "starting a new compile cache at \"{}\": {e:#}",
                    path.display()
                );
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Self::connect(path)?
            }
        };
        Ok(Self {
            db: Mutex::new(db),
            path: path.to_owned(),
        })
    }

    fn connect(path: &Path) -> Result<Connection> {
        let db = Connection::open(path)
            .with_context(|| format!("opening the compile cache \"{}\"", path.display()))?;
        db.busy_timeout(BUSY_TIMEOUT)?;
        // A cache: losing the last writes to a power cut costs a compile,
        // never a wrong answer (SQLite keeps the file consistent).
        db.pragma_update(None, "journal_mode", "wal")?;
        db.pragma_update(None, "synchronous", "normal")?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS functions (
                 key BLOB PRIMARY KEY,
                 value BLOB NOT NULL
             )",
        )
        .context("creating the compile cache's table")?;
        Ok(db)
    }

    fn key(key: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(key).into()
    }

    fn lookup(&self, key: &[u8]) -> rusqlite::Result<Option<Vec<u8>>> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.prepare_cached("SELECT value FROM functions WHERE key = ?1")?
            .query_row(params![Self::key(key)], |row| row.get(0))
            .optional()
    }

    fn store(&self, key: &[u8], value: &[u8]) -> rusqlite::Result<()> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        db.prepare_cached("INSERT OR IGNORE INTO functions (key, value) VALUES (?1, ?2)")?
            .execute(params![Self::key(key), value])?;
        Ok(())
    }
}

impl CacheStore for CompileCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        match self.lookup(key) {
            Ok(value) => value.map(Cow::Owned),
            Err(e) => {
                tracing::debug!("compile cache \"{}\": {e}", self.path.display());
                None
            }
        }
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        match self.store(key, &value) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("compile cache \"{}\": {e}", self.path.display());
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_values_across_connections_and_replaces_a_broken_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compile.sqlite3");
        let cache = CompileCache::open(&path).unwrap();
        assert!(cache.get(b"f").is_none());
        assert!(cache.insert(b"f", b"code".to_vec()));
        // A second insert of one key (two compile threads) keeps the first.
        assert!(cache.insert(b"f", b"other".to_vec()));
        drop(cache);

        let cache = CompileCache::open(&path).unwrap();
        assert_eq!(cache.get(b"f").as_deref(), Some(&b"code"[..]));
        assert!(cache.get(b"g").is_none());
        drop(cache);

        std::fs::write(&path, b"not a database").unwrap();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let cache = CompileCache::open(&path).unwrap();
        assert!(cache.get(b"f").is_none());
        assert!(cache.insert(b"f", b"code".to_vec()));
        assert_eq!(cache.get(b"f").as_deref(), Some(&b"code"[..]));
    }
}
