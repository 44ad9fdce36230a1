//! Embeds what a build needs into the binary: the Python SDK (`python/`), the
//! WIT world (`wit/`), and the CPython standard library archive that ships in
//! the componentize-py crate (mounted read-only into sandboxes so that modules
//! first imported inside a handler can still be found).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

const COMPONENTIZE_PY: &str = "componentize-py";
const ARCHIVES: [&str; 2] = ["python-lib.tar.zst", "bundled.tar.zst"];

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.join("../..").canonicalize()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut code = String::new();
    embed_tree(
        &mut code,
        "SDK_FILES",
        &root.join("python"),
        &|rel: &str| {
            !rel.starts_with("tests/") && !rel.contains("__pycache__") && rel.ends_with(".py")
        },
    )?;
    embed_tree(&mut code, "WIT_FILES", &root.join("wit"), &|rel: &str| {
        rel.ends_with(".wit")
    })?;
    fs::write(out_dir.join("embedded.rs"), code)?;

    let source = componentize_py_dir(&root)?;
    for archive in ARCHIVES {
        fs::copy(source.join(archive), out_dir.join(archive))
            .with_context(|| format!("copying {archive} from {}", source.display()))?;
    }
    Ok(())
}

fn embed_tree(
    code: &mut String,
    name: &str,
    dir: &Path,
    keep: &dyn Fn(&str) -> bool,
) -> Result<()> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    files.sort();
    writeln!(code, "pub static {name}: &[(&str, &[u8])] = &[")?;
    for (rel, abs) in files.iter().filter(|(rel, _)| keep(rel)) {
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )?;
    }
    writeln!(code, "];")?;
    Ok(())
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(root, &path, files)?;
        } else {
            let rel = path
                .strip_prefix(root)?
                .to_string_lossy()
                .replace('\\', "/");
            files.push((rel, path));
        }
    }
    Ok(())
}

/// The version pinned in the workspace manifest (`componentize-py = "=X"`).
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// Where the componentize-py package's files are. Cheapest first: the
/// registry source folder, then componentize-py's own build output (its build
/// script copies the archives there), then `cargo metadata` (vendored sources).
fn componentize_py_dir(root: &Path) -> Result<PathBuf> {
    let has_archives = |dir: &Path| ARCHIVES.iter().all(|a| dir.join(a).is_file());
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(home) = cargo_home
        && let Ok(registries) = fs::read_dir(home.join("registry/src"))
    {
        for registry in registries.flatten() {
            let dir = registry
                .path()
                .join(format!("{COMPONENTIZE_PY}-{COMPONENTIZE_PY_VERSION}"));
            if has_archives(&dir) {
                return Ok(dir);
            }
        }
    }
    // OUT_DIR is target/<profile>/build/taipan-build-<hash>/out.
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    if let Some(build_dir) = out_dir.parent().and_then(Path::parent) {
        let mut candidates: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(build_dir)?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("componentize-py-")
            })
            .map(|e| e.path().join("out"))
            .filter(|p| has_archives(p))
            .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        candidates.sort();
        if let Some((_, dir)) = candidates.pop() {
            return Ok(dir);
        }
    }
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .context("running `cargo metadata` to find the componentize-py package")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"]
        .as_array()
        .context("cargo metadata has no packages")?;
    let package = packages
        .iter()
        .find(|p| p["name"] == COMPONENTIZE_PY)
        .context("componentize-py is not among the resolved packages")?;
    let manifest = package["manifest_path"]
        .as_str()
        .context("no manifest_path")?;
    let dir = Path::new(manifest)
        .parent()
        .context("manifest has no folder")?;
    if !has_archives(dir) {
        bail!(
            "componentize-py at \"{}\" has no {}",
            dir.display(),
            ARCHIVES.join(", ")
        );
    }
    Ok(dir.to_path_buf())
}
