//! Python packages for a worker, with no Python toolchain: read the
//! requirements (`requirements.txt`, `pyproject.toml`), resolve them for the
//! sandbox (CPython 3.14 on WASI), fetch distributions from `--find-links`
//! folders or a package index, verify and cache them, unpack them into a
//! site-packages folder the build puts on the Python path, and keep
//! `taipan.lock` so the next build and `taipan deploy` install the same files.
//!
//! Which distributions install: pure-Python wheels as they are; an sdist
//! built by setuptools whose packages are Python with an optional C
//! extension (MarkupSafe, PyYAML) as its Python sources, extension skipped;
//! anything else that needs native code is refused, naming the package.

pub mod dist;
pub mod environment;
pub mod install;
pub mod lock;
pub mod requirements;
pub mod resolve;
pub mod sources;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use lock::{LockFile, Locked};
pub use sources::SourceOptions;

/// The lock file, beside the worker's config.
pub const LOCK_FILE: &str = "taipan.lock";

/// The installed packages of a worker: a site-packages folder shared by
/// every build with the same lock, and that lock's digest.
#[derive(Debug, Clone)]
pub struct Installed {
    pub site: PathBuf,
    pub digest: String,
    pub packages: Vec<Locked>,
}

/// Install `project`'s requirements (none → `None`): honour `taipan.lock`
/// when it matches the requirements, else resolve and (if `write_lock`)
/// rewrite it. Blocking: downloads, unzips.
pub fn sync(
    project: &Path,
    options: &SourceOptions,
    write_lock: bool,
) -> Result<Option<Installed>> {
    let Some(wanted) = requirements::read(project)? else {
        return Ok(None);
    };
    let lock_path = project.join(LOCK_FILE);
    let existing = LockFile::read(&lock_path)?;
    let sources = sources::Sources::new(options)?;
    let lock = match existing {
        Some(lock) if lock.requirements == wanted.digest => lock,
        _ => {
            let resolved = resolve::resolve(&wanted, &sources)?;
            let lock = LockFile::new(wanted.digest.clone(), resolved);
            if write_lock {
                lock.write(&lock_path)
                    .with_context(|| format!("writing \"{}\"", lock_path.display()))?;
            }
            lock
        }
    };
    let site = install::site_for(&lock, &sources)?;
    Ok(Some(Installed {
        site,
        digest: lock.digest(),
        packages: lock.packages,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheelhouse() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/wheelhouse")
    }

    fn offline(cache: &Path, links: Vec<PathBuf>) -> SourceOptions {
        SourceOptions {
            index_url: None,
            find_links: links,
            cache: cache.to_path_buf(),
        }
    }

    fn project(requirements: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), requirements).unwrap();
        dir
    }

    #[test]
    fn resolves_installs_and_locks_offline() {
        let cache = tempfile::tempdir().unwrap();
        let options = offline(cache.path(), vec![wheelhouse()]);
        let dir = project("jinja2>=3.1\nhttpx\nrequests\npyyaml\nworkers-runtime-sdk\n");
        let installed = sync(dir.path(), &options, true).unwrap().unwrap();
        let names: Vec<&str> = installed.packages.iter().map(|p| p.name.as_str()).collect();
        for name in [
            "jinja2",
            "markupsafe",
            "httpx",
            "httpcore",
            "h11",
            "anyio",
            "idna",
            "certifi",
            "requests",
            "urllib3",
            "charset-normalizer",
            "pyyaml",
        ] {
            assert!(names.contains(&name), "{name} missing from {names:?}");
        }
        assert!(!names.contains(&"workers-runtime-sdk"));
        let site = &installed.site;
        assert!(site.join("jinja2/__init__.py").is_file());
        // MarkupSafe and PyYAML come from their sdists, Python only.
        assert!(site.join("markupsafe/__init__.py").is_file());
        assert!(site.join("markupsafe/_native.py").is_file());
        assert!(!site.join("markupsafe/_speedups.c").exists());
        assert!(site.join("yaml/__init__.py").is_file());
        assert!(site.join("markupsafe-3.0.4.dist-info/METADATA").is_file());

        // The lock is honoured: the same set, the same site, no resolution.
        let lock = LockFile::read(&dir.path().join(LOCK_FILE))
            .unwrap()
            .unwrap();
        assert_eq!(lock.packages.len(), installed.packages.len());
        let again = sync(dir.path(), &options, true).unwrap().unwrap();
        assert_eq!(again.digest, installed.digest);
        assert_eq!(again.site, installed.site);

        // A tampered locked file is refused.
        let mut bad = lock.clone();
        bad.packages[0].sha256 = "0".repeat(64);
        bad.write(&dir.path().join(LOCK_FILE)).unwrap();
        let other_cache = tempfile::tempdir().unwrap();
        let err = sync(
            dir.path(),
            &offline(other_cache.path(), vec![wheelhouse()]),
            true,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("does not match the sha256 in taipan.lock"),
            "{err:#}"
        );
    }

    #[test]
    fn conflicts_missing_and_native_packages_are_clear() {
        let cache = tempfile::tempdir().unwrap();
        let options = offline(cache.path(), vec![wheelhouse()]);
        let err = sync(project("jinja2<3\n").path(), &options, false).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("cannot be installed together") && text.contains("jinja2"),
            "{text}"
        );

        let err = sync(project("no-such-package\n").path(), &options, false).unwrap_err();
        assert!(format!("{err:#}").contains("no-such-package"), "{err:#}");

        let native = tempfile::tempdir().unwrap();
        std::fs::write(
            native
                .path()
                .join("fastcore_native-1.0-cp314-cp314-manylinux_2_17_x86_64.whl"),
            b"not really a wheel",
        )
        .unwrap();
        let options = offline(cache.path(), vec![native.path().to_path_buf()]);
        let err = sync(project("fastcore-native\n").path(), &options, false).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("fastcore-native cannot be installed") && text.contains("native code"),
            "{text}"
        );
    }
}
