//! Files compiled into the binary: the Python SDK, the WIT world, and the
//! CPython standard library from componentize-py.

use std::io::{Cursor, Write as _};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

static PYTHON_LIB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/python-lib.tar.zst"));
static BUNDLED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/bundled.tar.zst"));

/// A digest of everything embedded that affects a build's output.
pub fn digest() -> String {
    let mut hasher = Sha256::new();
    for (name, files) in [("sdk", SDK_FILES), ("wit", WIT_FILES)] {
        hasher.update(name);
        for (path, bytes) in files {
            hasher.update((path.len() as u64).to_le_bytes());
            hasher.update(path);
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
    }
    hasher.update(PYTHON_LIB);
    hex(&hasher.finalize()[..16])
}

/// Write `files` under `dir`; with `mtime`, each file gets that
/// modification time.
pub fn write_files(
    files: &[(&str, &[u8])],
    dir: &Path,
    mtime: Option<std::time::SystemTime>,
) -> Result<()> {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&path)?;
            file.write_all(bytes)?;
            if let Some(mtime) = mtime {
                file.set_modified(mtime)?;
            }
            Ok(())
        };
        write().with_context(|| format!("writing \"{}\"", path.display()))?;
    }
    Ok(())
}

/// The modification time every staged SDK file gets. CPython checks cached
/// bytecode against its source's mtime and size, so the SDK's bytecode
/// (crate::bytecode, one folder per `digest`) stays valid across builds;
/// a changed SDK is a new digest, hence a new folder.
const SDK_MTIME: std::time::Duration = std::time::Duration::from_secs(1_700_000_000);

/// Stage the Python SDK into `dir`.
pub fn write_sdk(dir: &Path) -> Result<()> {
    write_files(SDK_FILES, dir, Some(std::time::UNIX_EPOCH + SDK_MTIME))
}

pub use taipan_guest::PythonFiles;

/// The standard library and componentize-py's helper modules, unpacked once
/// per Taipan version under the cache folder and shared by every worker.
pub fn python_files(cache_root: &Path) -> Result<PythonFiles> {
    let root = cache_root.join("python").join(digest());
    let files = PythonFiles {
        stdlib: root.join("lib"),
        bundled: root.join("bundled"),
    };
    if root.join("complete").exists() {
        return Ok(files);
    }
    std::fs::create_dir_all(cache_root.join("python"))?;
    let staging = tempfile::tempdir_in(cache_root.join("python"))?;
    for (archive, dest) in [(PYTHON_LIB, "lib"), (BUNDLED, "bundled")] {
        let decoder = zstd::Decoder::new(Cursor::new(archive))?;
        tar::Archive::new(decoder)
            .unpack(staging.path().join(dest))
            .with_context(|| format!("unpacking the embedded Python {dest}"))?;
    }
    std::fs::write(staging.path().join("complete"), b"")?;
    let staged = staging.keep();
    if std::fs::rename(&staged, &root).is_err() {
        // Another process unpacked the same files first: theirs are as good.
        let _ = std::fs::remove_dir_all(&staged);
    }
    Ok(files)
}

pub use taipan_guest::hex;
