//! Unpacking distributions into a site-packages folder, shared by every
//! build with the same lock (`<cache>/sites/<lock digest>/`).
//!
//! A wheel unpacks as it is (its `.data/purelib` and `platlib` at the top,
//! scripts and headers left out). An sdist is not built: Taipan has no build
//! toolchain, so it installs a setuptools source tree's Python packages (the
//! ones its `*.egg-info/top_level.txt` names) and leaves C extension sources
//! out — right for packages with a pure-Python fallback (MarkupSafe,
//! PyYAML) — and refuses sdists of other build systems.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::dist::{DistFile, Kind};
use crate::lock::LockFile;
use crate::sources::Sources;

const COMPLETE: &str = ".taipan-complete";
/// Source files of native extensions: never installed.
const NATIVE_SOURCES: &[&str] = &[
    "c", "h", "cpp", "cc", "hpp", "pyx", "pxd", "pxi", "rs", "f", "f90",
];

/// The site-packages folder for `lock`, unpacked once.
pub fn site_for(lock: &LockFile, sources: &Sources) -> Result<PathBuf> {
    let sites = sources.sites_dir();
    let site = sites.join(lock.digest());
    if site.join(COMPLETE).is_file() {
        return Ok(site);
    }
    std::fs::create_dir_all(&sites).with_context(|| format!("creating \"{}\"", sites.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&sites)?;
    for locked in &lock.packages {
        let path = sources.fetch_locked(locked)?;
        let file = DistFile::parse(&locked.filename)
            .with_context(|| format!("{} is not a wheel or an sdist", locked.filename))?;
        match file.kind {
            Kind::Wheel { .. } => unpack_wheel(&path, staging.path()),
            Kind::Sdist => unpack_sdist(&path, &file, staging.path()),
            Kind::NativeWheel => bail!("{} is a native wheel", locked.filename),
        }
        .with_context(|| format!("installing {}", locked.filename))?;
    }
    std::fs::write(staging.path().join(COMPLETE), lock.digest())?;
    let staged = staging.keep();
    if std::fs::rename(&staged, &site).is_err() {
        std::fs::remove_dir_all(&staged).ok();
        if !site.join(COMPLETE).is_file() {
            bail!("could not store the packages in \"{}\"", site.display());
        }
    }
    Ok(site)
}

/// A relative path inside an archive, if it stays inside.
fn safe(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    path.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
        .then(|| path.to_path_buf())
}

fn unpack_wheel(wheel: &Path, site: &Path) -> Result<()> {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(wheel)?)
        .context("the wheel is not a zip archive")?;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.name().to_string();
        let target = match name.split_once(".data/") {
            Some((_, rest)) if !name[..name.find(".data/").unwrap_or(0)].contains('/') => {
                match rest.split_once('/') {
                    Some(("purelib" | "platlib", inner)) => inner.to_string(),
                    _ => continue, // scripts, headers, data: nothing a sandbox runs
                }
            }
            _ => name.clone(),
        };
        let Some(rel) = safe(&target) else {
            bail!("the wheel contains the path {name:?}, which leaves the install folder");
        };
        let dest = site.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&dest)?;
        std::io::copy(&mut entry, &mut out)?;
    }
    Ok(())
}

/// Entries of an sdist (`.tar.gz`): (path, bytes), small files only.
fn sdist_entries(sdist: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    if sdist.extension().is_some_and(|e| e == "zip") {
        bail!("zip sdists are not supported; use a .tar.gz sdist or a wheel");
    }
    let decoder = flate2::read::GzDecoder::new(std::fs::File::open(sdist)?);
    let mut archive = tar::Archive::new(decoder);
    let mut out = Vec::new();
    for entry in archive
        .entries()
        .context("the sdist is not a tar.gz archive")?
    {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry.path()?.to_string_lossy().replace('\\', "/");
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        out.push((path, bytes));
    }
    Ok(out)
}

fn unpack_sdist(sdist: &Path, file: &DistFile, site: &Path) -> Result<()> {
    let entries = sdist_entries(sdist)?;
    let find = |suffix: &str| entries.iter().find(|(p, _)| p.ends_with(suffix));
    let Some((top_level_path, top_level)) = find(".egg-info/top_level.txt") else {
        let backend = find("/pyproject.toml")
            .and_then(|(_, b)| build_backend(&String::from_utf8_lossy(b)))
            .unwrap_or_else(|| "unknown".into());
        bail!(
            "{} is a source distribution Taipan cannot install: it is not a setuptools tree of Python packages (build backend: {backend}), and Taipan runs no build toolchain\nhint: use a version with a pure-Python wheel (py3-none-any)",
            file.filename
        );
    };
    if entries.iter().any(|(p, _)| p.ends_with("/Cargo.toml")) {
        bail!(
            "{} needs Rust code compiled for the sandbox, which Taipan cannot do; it has no pure-Python fallback",
            file.filename
        );
    }
    // The folder that holds the packages (`pkg-1.0/src/`, `pkg-1.0/lib/`, `pkg-1.0/`).
    let egg_info = top_level_path.rsplit_once('/').map_or("", |(d, _)| d);
    let base = egg_info
        .rsplit_once('/')
        .map_or(String::new(), |(d, _)| format!("{d}/"));
    let names: Vec<String> = String::from_utf8_lossy(top_level)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    let mut installed = 0;
    for (path, bytes) in &entries {
        let Some(rel) = path.strip_prefix(&base) else {
            continue;
        };
        let top = rel.split('/').next().unwrap_or("");
        let module = top.strip_suffix(".py").unwrap_or(top);
        let wanted =
            names.iter().any(|n| n == module) && (rel.contains('/') || rel.ends_with(".py"));
        let ext = rel.rsplit_once('.').map_or("", |(_, e)| e);
        if !wanted || NATIVE_SOURCES.contains(&ext) {
            continue;
        }
        let Some(rel) = safe(rel) else { continue };
        let dest = site.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&dest, bytes)?;
        installed += 1;
    }
    if installed == 0 {
        bail!(
            "{} names the packages {names:?} but none of their Python files were found",
            file.filename
        );
    }
    // A dist-info, so importlib.metadata finds the distribution.
    let pkg_info = find("/PKG-INFO")
        .map(|(_, b)| b.clone())
        .unwrap_or_default();
    let dist_info = site.join(format!(
        "{}-{}.dist-info",
        file.name.replace('-', "_"),
        file.version
    ));
    std::fs::create_dir_all(&dist_info)?;
    std::fs::write(dist_info.join("METADATA"), pkg_info)?;
    std::fs::write(dist_info.join("INSTALLER"), "taipan\n")?;
    std::fs::write(dist_info.join("top_level.txt"), top_level)?;
    Ok(())
}

fn build_backend(pyproject: &str) -> Option<String> {
    let doc: toml::Table = toml::from_str(pyproject).ok()?;
    doc.get("build-system")?
        .get("build-backend")?
        .as_str()
        .map(str::to_string)
}

/// The metadata text of a distribution (wheel METADATA, sdist PKG-INFO).
pub fn read_metadata(path: &Path, file: &DistFile) -> Result<String> {
    match file.kind {
        Kind::Sdist => {
            let entries = sdist_entries(path)?;
            // The top-level PKG-INFO (`name-1.0/PKG-INFO`), not an egg-info copy.
            let found = entries
                .iter()
                .filter(|(p, _)| p.ends_with("/PKG-INFO"))
                .min_by_key(|(p, _)| p.matches('/').count())
                .with_context(|| format!("{} has no PKG-INFO", file.filename))?;
            Ok(String::from_utf8_lossy(&found.1).into_owned())
        }
        _ => {
            let mut archive = zip::ZipArchive::new(std::fs::File::open(path)?)
                .with_context(|| format!("{} is not a zip archive", file.filename))?;
            let name = (0..archive.len())
                .filter_map(|i| archive.name_for_index(i).map(str::to_string))
                .find(|n| n.ends_with(".dist-info/METADATA") && n.matches('/').count() == 1)
                .with_context(|| format!("{} has no .dist-info/METADATA", file.filename))?;
            let mut text = String::new();
            archive.by_name(&name)?.read_to_string(&mut text)?;
            Ok(text)
        }
    }
}
