//! The worker's source tree: which files belong to it, and their digest.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Folders never part of a worker's source, wherever they appear.
const SKIPPED_DIRS: &[&str] = &["__pycache__", "node_modules", "venv", "env"];

/// The project folder of vendored packages (Cloudflare's `pywrangler` fills
/// it): on the Python path beside the installed requirements, not part of the
/// worker's own modules.
pub const VENDORED_DIR: &str = "python_modules";

/// Every file under `dir` that belongs to the worker, as (relative path, absolute path), sorted.
pub fn files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    walk(dir, dir, &mut out)
        .with_context(|| format!("reading the worker's source folder \"{}\"", dir.display()))?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Hidden entries cover .taipan/, .git/, .venv/ and editor files.
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                walk(root, &path, out)?;
            }
        } else if kind.is_file() && !name.ends_with(".pyc") {
            let rel = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            out.push((rel, path));
        }
    }
    Ok(())
}

/// Feed the files' names and contents into `hasher`.
pub fn hash_into(hasher: &mut Sha256, files: &[(String, PathBuf)]) -> Result<()> {
    for (rel, abs) in files {
        let bytes = std::fs::read(abs).with_context(|| format!("reading \"{}\"", abs.display()))?;
        hasher.update((rel.len() as u64).to_le_bytes());
        hasher.update(rel);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(())
}

/// Copy `files` into `dest`, keeping their relative paths.
pub fn copy_into(files: &[(String, PathBuf)], dest: &Path) -> Result<()> {
    for (rel, abs) in files {
        let target = dest.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(abs, &target).with_context(|| format!("copying \"{}\"", abs.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_hidden_and_cache_folders() {
        let dir = tempfile::tempdir().unwrap();
        for path in [
            "entry.py",
            "pkg/mod.py",
            ".taipan/x",
            "__pycache__/a.pyc",
            "pkg/__pycache__/b.pyc",
            ".git/HEAD",
        ] {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        let names: Vec<String> = files(dir.path())
            .unwrap()
            .into_iter()
            .map(|(r, _)| r)
            .collect();
        assert_eq!(names, ["entry.py", "pkg/mod.py"]);
    }
}
