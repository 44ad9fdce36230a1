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

/// The cache: one connection, shared by Cranelift's compile threads; none
/// when the file could not be opened (then every lookup misses).
#[derive(Debug)]
pub(crate) struct CompileCache {
    db: Option<Mutex<Connection>>,
    path: PathBuf,
}

impl CompileCache {
    /// Open (or create) the cache at `path`. A file that is not a SQLite
    /// database is replaced: it holds nothing that cannot be compiled again.
    /// Any other failure (a locked or unreadable file) leaves this process
    /// without a cache, with a warning: compiling still works.
    pub(crate) fn open(path: &Path) -> Self {
        let db = match Self::connect(path) {
            Ok(db) => Some(db),
            Err(e) if is_not_a_database(&e) => {
                tracing::warn!(
                    "replacing the compile cache \"{}\", which is not a database: {e:#}",
                    path.display()
                );
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Self::connect(path)
                    .inspect_err(|e| Self::warn_without(path, e))
                    .ok()
            }
            Err(e) => {
                Self::warn_without(path, &e);
                None
            }
        };
        Self {
            db: db.map(Mutex::new),
            path: path.to_owned(),
        }
    }

    fn warn_without(path: &Path, e: &anyhow::Error) {
        tracing::warn!(
            "compiling without a cache: \"{}\": {e:#}\nhint: check that the cache folder is writable (TAIPAN_CACHE_DIR)",
            path.display()
        );
    }

    fn connect(path: &Path) -> Result<Connection> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating \"{}\"", dir.display()))?;
        }
        let db = Connection::open(path)
            .with_context(|| format!("opening the compile cache \"{}\"", path.display()))?;
        db.busy_timeout(BUSY_TIMEOUT)?;
        // WAL lets the server read while a build writes. Switching to it
        // takes a lock SQLite does not wait for, so two processes opening a
        // new file at once can see "database is locked": it is switched only
        // once per file, and a process that loses the race tries again.
        for attempt in 0.. {
            let mode: String = db.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
            if mode.eq_ignore_ascii_case("wal") {
                break;
            }
            match db.query_row("PRAGMA journal_mode = wal", [], |row| {
                row.get::<_, String>(0)
            }) {
                Ok(_) => {}
                Err(e) if attempt < 50 && is_busy(&e) => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
        // A cache: losing the last writes to a power cut costs a compile,
        // never a wrong answer (SQLite keeps the file consistent).
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
        let Some(db) = &self.db else { return Ok(None) };
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        db.prepare_cached("SELECT value FROM functions WHERE key = ?1")?
            .query_row(params![Self::key(key)], |row| row.get(0))
            .optional()
    }

    /// Replaces what the key held: Cranelift's keys do not name its version,
    /// so after an upgrade an old entry is found, refused by the new
    /// version, compiled again and must be overwritten, or it misses forever.
    fn store(&self, key: &[u8], value: &[u8]) -> rusqlite::Result<bool> {
        let Some(db) = &self.db else { return Ok(false) };
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        db.prepare_cached("INSERT OR REPLACE INTO functions (key, value) VALUES (?1, ?2)")?
            .execute(params![Self::key(key), value])?;
        Ok(true)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn is_not_a_database(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause.downcast_ref::<rusqlite::Error>().is_some_and(|e| {
            matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            )
        })
    })
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
            Ok(stored) => stored,
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
        let cache = CompileCache::open(&path);
        assert!(cache.get(b"f").is_none());
        assert!(cache.insert(b"f", b"old".to_vec()));
        // A later insert of a key replaces it (an upgraded Cranelift
        // compiling again what it refused).
        assert!(cache.insert(b"f", b"code".to_vec()));
        drop(cache);

        let cache = CompileCache::open(&path);
        assert_eq!(cache.get(b"f").as_deref(), Some(&b"code"[..]));
        assert!(cache.get(b"g").is_none());
        drop(cache);

        std::fs::write(&path, b"not a database").unwrap();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let cache = CompileCache::open(&path);
        assert!(cache.get(b"f").is_none());
        assert!(cache.insert(b"f", b"code".to_vec()));
        assert_eq!(cache.get(b"f").as_deref(), Some(&b"code"[..]));
    }

    #[test]
    fn a_cache_that_cannot_be_opened_only_misses() {
        let dir = tempfile::tempdir().unwrap();
        // A folder where the file should be: not a database, not replaceable.
        let path = dir.path().join("compile.sqlite3");
        std::fs::create_dir(&path).unwrap();
        let cache = CompileCache::open(&path);
        assert!(cache.get(b"f").is_none());
        assert!(!cache.insert(b"f", b"code".to_vec()));
        assert!(path.is_dir(), "left alone");
    }

    #[test]
    fn processes_opening_a_new_cache_at_once_all_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("compile.sqlite3");
        let opened: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let cache = CompileCache::open(&path);
                    cache.insert(format!("f{i}").as_bytes(), vec![i as u8])
                })
            })
            .collect();
        for thread in opened {
            assert!(thread.join().unwrap(), "every connection can write");
        }
        let cache = CompileCache::open(&path);
        for i in 0..8u8 {
            assert_eq!(
                cache.get(format!("f{i}").as_bytes()).as_deref(),
                Some(&[i][..])
            );
        }
    }
}
