//! The WASI wheels Taipan ships: compiled packages (pydantic-core, …) built
//! from their PyPI sources by the recipes in `recipes/`, embedded in the
//! binary. Every build consults them like a `--find-links` folder, so a
//! worker that needs one installs offline with no toolchain.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::dist::DistFile;

include!(concat!(env!("OUT_DIR"), "/wasi_wheels.rs"));

/// "name version" of every shipped wheel.
pub fn packages() -> Vec<String> {
    WASI_WHEELS
        .iter()
        .filter_map(|(file, _)| DistFile::parse(file))
        .map(|d| format!("{} {}", d.name, d.version))
        .collect()
}

/// The shipped wheels as a folder under `cache` (written once per set of
/// wheels), or `None` when this build of Taipan ships none.
pub fn folder(cache: &Path) -> Result<Option<PathBuf>> {
    if WASI_WHEELS.is_empty() {
        return Ok(None);
    }
    let dir = cache.join("shipped").join(WASI_WHEELS_DIGEST);
    if dir.join("complete").is_file() {
        return Ok(Some(dir));
    }
    let parent = cache.join("shipped");
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("creating \"{}\"", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&parent)?;
    for (name, bytes) in WASI_WHEELS {
        std::fs::write(staging.path().join(name), bytes)?;
    }
    std::fs::write(staging.path().join("complete"), b"")?;
    let staged = staging.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        // Another process wrote the same set first.
        std::fs::remove_dir_all(&staged).ok();
    }
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pydantic_core_ships_as_a_wasi_build() {
        assert!(packages().contains(&"pydantic-core 2.50.5".to_string()));
        let cache = tempfile::tempdir().unwrap();
        let dir = folder(cache.path()).unwrap().unwrap();
        let wheel = dir.join("pydantic_core-2.50.5-cp314-cp314-wasi_0_0_0_wasm32.whl");
        assert!(
            DistFile::parse(&wheel.file_name().unwrap().to_string_lossy())
                .unwrap()
                .is_wasi_build()
        );
        assert!(wheel.is_file());
        // Written once: a second call finds it.
        assert_eq!(folder(cache.path()).unwrap().unwrap(), dir);
    }
}
