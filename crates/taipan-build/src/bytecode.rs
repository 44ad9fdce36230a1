//! Bytecode of the SDK and the standard library, compiled once per Taipan
//! version and shared read-only by every build.
//!
//! CPython compiles a module from source whenever it finds no valid cached
//! bytecode: every build compiled the ~100 modules the SDK imports (1.3 s of
//! a hello build). A build runs the worker's code, so what one build writes
//! must never be read by another: the cache is written by a build of Taipan's
//! own, with an empty worker, and mounted read-only to the builds of workers.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::artifact::{COMPLETE_FILE, PYTHON_PATH_DIRS};
use crate::builder::{Access, BuildOptions, componentize, write_build_module};
use crate::embedded::{self, WIT_FILES};

/// The trusted bytecode folder for this Taipan version (under
/// `BuildCaches::bytecode`), made by an empty build the first time. `None`
/// when that build failed: the worker's build then goes on without cached
/// bytecode (slower, not wrong).
pub(crate) fn trusted(options: &BuildOptions) -> Option<PathBuf> {
    let root = &options.caches.bytecode;
    let dir = root.join(embedded::digest());
    if dir.join(COMPLETE_FILE).exists() {
        return Some(dir);
    }
    match compile(root, &dir, options) {
        Ok(()) => Some(dir),
        Err(e) => {
            tracing::warn!("caching the SDK's bytecode failed (builds go on without it): {e:#}");
            None
        }
    }
}

/// Build an empty worker with a writable bytecode folder, keep what CPython
/// wrote for the standard library (`/python`) and the SDK (`/0`), and move
/// it into place.
fn compile(root: &Path, dir: &Path, options: &BuildOptions) -> Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("creating \"{}\"", root.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".compiling-")
        .tempdir_in(root)?;
    let stage = work.path();
    let [sdk, gen_dir, src, packages] = PYTHON_PATH_DIRS.map(|d| stage.join(d));
    embedded::write_sdk(&sdk)?;
    write_build_module(&gen_dir, "entry", "(taipan)", "imports")?;
    std::fs::create_dir_all(&src)?;
    std::fs::write(src.join("entry.py"), "")?;
    std::fs::create_dir_all(&packages)?;
    let wit = stage.join("wit");
    embedded::write_files(WIT_FILES, &wit, None)?;
    let cache = stage.join("bytecode");
    std::fs::create_dir_all(&cache)?;

    let python_path = [sdk.as_path(), &gen_dir, &src, &packages];
    // The build also makes the base hello-like workers share (its snapshot
    // is dropped with `work`).
    componentize(
        &python_path,
        &wit,
        stage,
        options,
        Some((&cache, Access::ReadWrite)),
    )?;
    // Keep only what is the same in every build: the standard library and
    // the SDK (`_taipan_build.py`, the worker, the generated bindings differ).
    for entry in std::fs::read_dir(&cache)?.flatten() {
        if !matches!(entry.file_name().to_str(), Some("python" | "0")) {
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    std::fs::write(cache.join(COMPLETE_FILE), b"")?;
    if std::fs::rename(&cache, dir).is_err() && !dir.join(COMPLETE_FILE).exists() {
        anyhow::bail!("could not store the bytecode in \"{}\"", dir.display());
    }
    Ok(())
}
