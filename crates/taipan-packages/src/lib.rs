//! Python packages for a worker, with no Python toolchain: read the
//! requirements (`requirements.txt`, `pyproject.toml`), resolve them for the
//! sandbox (CPython 3.14 on WASI), fetch distributions from `--find-links`
//! folders or a package index, verify and cache them, unpack them into a
//! site-packages folder the build puts on the Python path, and keep
//! `taipan.lock` so the next build and `taipan deploy` install the same files.
//!
//! Which distributions install: wheels built for CPython 3.14 on WASI (the
//! compiled packages Taipan ships, [`shipped`], or any the sources offer)
//! and pure-Python wheels as they are; an sdist built by setuptools whose
//! packages are Python with an optional C extension (MarkupSafe, PyYAML) as
//! its Python sources, extension skipped; anything else that needs native
//! code is refused, naming the package.

pub mod dist;
pub mod environment;
pub mod install;
pub mod lock;
pub mod recipes;
pub mod requirements;
pub mod resolve;
pub mod shipped;
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
    fn wasi_builds_win_over_other_platforms_and_sdists() {
        // A folder with pydantic-core's sdist name, a Linux wheel and the
        // WASI build: the WASI build is chosen and locked like any file.
        let cache = tempfile::tempdir().unwrap();
        let links = tempfile::tempdir().unwrap();
        for fake in [
            "pydantic_core-2.50.5-cp314-cp314-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            "pydantic_core-2.50.5-cp314-cp314-pyodide_2025_0_wasm32.whl",
        ] {
            std::fs::write(links.path().join(fake), b"not for this sandbox").unwrap();
        }
        let options = offline(cache.path(), vec![links.path().to_path_buf(), wheelhouse()]);
        let dir = project("pydantic-core==2.50.5\n");
        let installed = sync(dir.path(), &options, true).unwrap().unwrap();
        assert_eq!(
            installed
                .packages
                .iter()
                .find(|p| p.name == "pydantic-core")
                .unwrap()
                .filename,
            "pydantic_core-2.50.5-cp314-cp314-wasi_0_0_0_wasm32.whl"
        );
        assert!(
            installed
                .site
                .join("pydantic_core/_pydantic_core.cpython-314-wasm32-wasi.so")
                .is_file()
        );
        let lock = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(lock.contains("wasi_0_0_0_wasm32.whl"), "{lock}");
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
        // The next step: what Taipan ships, and how to build a WASI wheel.
        assert!(
            text.contains("pydantic-core 2.50.5") && text.contains("recipes/"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod index_tests {
    //! The package-index path, against a PEP 691 index served from the test
    //! wheelhouse on loopback.

    use std::io::{Read, Write};
    use std::path::{Path, PathBuf};

    use sha2::{Digest, Sha256};

    use super::*;

    fn wheelhouse() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/wheelhouse")
    }

    /// Serve `/simple/<name>/` (JSON) and `/files/<file>[.metadata]` until the test ends.
    fn index() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).unwrap_or(0);
                let head = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let (status, body) = answer(&path);
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/vnd.pypi.simple.v1+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        format!("http://{address}/simple")
    }

    fn answer(path: &str) -> (&'static str, Vec<u8>) {
        let files: Vec<(String, PathBuf)> = std::fs::read_dir(wheelhouse())
            .unwrap()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        if let Some(name) = path
            .strip_prefix("/simple/")
            .map(|p| p.trim_end_matches('/'))
        {
            let mut listed = Vec::new();
            for (filename, file) in &files {
                let Some(dist) = dist::DistFile::parse(filename) else {
                    continue;
                };
                if dist.name != name {
                    continue;
                }
                let sha = lock::hex(&Sha256::digest(std::fs::read(file).unwrap()));
                listed.push(serde_json::json!({
                    "filename": filename,
                    "url": format!("../../files/{filename}"),
                    "hashes": {"sha256": sha},
                    "requires-python": ">=3.8",
                    "core-metadata": filename.ends_with(".whl"),
                }));
                // A yanked newer release, and one for a newer Python: both skipped.
                listed.push(serde_json::json!({
                    "filename": filename.replace(&dist.version.to_string(), "99.0"),
                    "url": "../../files/missing", "hashes": {}, "yanked": "broken",
                }));
                listed.push(serde_json::json!({
                    "filename": filename.replace(&dist.version.to_string(), "98.0"),
                    "url": "../../files/missing", "hashes": {}, "requires-python": ">=3.15",
                }));
            }
            if listed.is_empty() {
                return ("404 Not Found", b"{}".to_vec());
            }
            let page =
                serde_json::json!({"meta": {"api-version": "1.1"}, "name": name, "files": listed});
            return ("200 OK", page.to_string().into_bytes());
        }
        if let Some(wanted) = path.strip_prefix("/files/") {
            let (filename, metadata) = match wanted.strip_suffix(".metadata") {
                Some(f) => (f, true),
                None => (wanted, false),
            };
            if let Some((_, file)) = files.iter().find(|(f, _)| f == filename) {
                if metadata {
                    let dist = dist::DistFile::parse(filename).unwrap();
                    let text = install::read_metadata(file, &dist).unwrap();
                    return ("200 OK", text.into_bytes());
                }
                return ("200 OK", std::fs::read(file).unwrap());
            }
        }
        ("404 Not Found", Vec::new())
    }

    #[test]
    fn resolves_and_installs_from_an_index() {
        let cache = tempfile::tempdir().unwrap();
        let options = SourceOptions {
            index_url: Some(index()),
            find_links: Vec::new(),
            cache: cache.path().to_path_buf(),
        };
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("requirements.txt"), "jinja2\nrequests\n").unwrap();
        let installed = sync(dir.path(), &options, true).unwrap().unwrap();
        let versions: Vec<String> = installed
            .packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        assert!(
            versions.contains(&"jinja2 3.1.6".to_string()),
            "{versions:?}"
        );
        assert!(
            versions.contains(&"markupsafe 3.0.4".to_string()),
            "{versions:?}"
        );
        assert!(
            versions.contains(&"urllib3 2.8.0".to_string()),
            "{versions:?}"
        );
        assert!(installed.site.join("requests/__init__.py").is_file());
        // Downloads are cached by hash: a second site build needs no index.
        let lock = LockFile::read(&dir.path().join(LOCK_FILE))
            .unwrap()
            .unwrap();
        std::fs::remove_dir_all(cache.path().join("sites")).unwrap();
        let offline = SourceOptions {
            index_url: None,
            ..options
        };
        let again = sync(dir.path(), &offline, false).unwrap().unwrap();
        assert_eq!(again.digest, lock.digest());
        assert!(again.site.join("jinja2/__init__.py").is_file());
    }
}
