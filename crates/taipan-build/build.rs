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
    writeln!(
        code,
        "/// Changes with what links and instruments a component (crate::base).\npub const LINKER_DIGEST: u64 = {};",
        linker_digest(&root)?
    )?;
    fs::write(out_dir.join("embedded.rs"), code)?;

    let source = componentize_py_dir(&root)?;
    for archive in ARCHIVES {
        fs::copy(source.join(archive), out_dir.join(archive))
            .with_context(|| format!("copying {archive} from {}", source.display()))?;
    }
    Ok(())
}

/// A hash of the sources that decide how libraries are linked and
/// instrumented: the patched componentize-py and component-init-transform
/// (with the adapter componentize-py embeds) and the lock file (wit-component's
/// version). Only compared within one build of Taipan, so std's hasher does.
fn linker_digest(root: &Path) -> Result<u64> {
    use std::hash::{Hash, Hasher};
    let mut files = Vec::new();
    for dir in ["vendor/componentize-py", "vendor/component-init-transform"] {
        let dir = root.join(dir);
        println!("cargo:rerun-if-changed={}", dir.display());
        collect(&dir, &dir, &mut files)?;
    }
    let lock = root.join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    files.push(("Cargo.lock".to_string(), lock));
    files.sort();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (rel, abs) in files {
        rel.hash(&mut hasher);
        fs::read(&abs)
            .with_context(|| format!("reading {}", abs.display()))?
            .hash(&mut hasher);
    }
    Ok(hasher.finish())
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

/// componentize-py is vendored (with a patch: vendor/componentize-py/TAIPAN-PATCH.md);
/// its archives are the ones its own build embeds.
fn componentize_py_dir(root: &Path) -> Result<PathBuf> {
    let dir = root.join("vendor").join(COMPONENTIZE_PY);
    for archive in ARCHIVES {
        println!("cargo:rerun-if-changed={}", dir.join(archive).display());
        if !dir.join(archive).is_file() {
            bail!(
                "\"{}\" is missing: the vendored componentize-py is incomplete",
                dir.join(archive).display()
            );
        }
    }
    Ok(dir)
}
