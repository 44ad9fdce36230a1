//! Embeds the WASI wheels Taipan ships (`wheels/*.whl` at the repository's
//! root, built by `recipes/`), so a user gets compiled packages with nothing
//! but the `taipan` binary; and the recipes themselves, so `taipan wheels
//! build` runs from any folder.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

fn main() -> std::io::Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let wheels = manifest_dir.join("../../wheels").canonicalize()?;
    println!("cargo:rerun-if-changed={}", wheels.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&wheels)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "whl"))
        .collect();
    files.sort();
    // The set's digest names its folder in the cache: computed here, once,
    // rather than over megabytes of wheels at every build.
    let mut digest = Sha256::new();
    let mut code = String::from("pub static WASI_WHEELS: &[(&str, &[u8])] = &[\n");
    for path in &files {
        let name = path.file_name().expect("a file").to_string_lossy();
        digest.update(name.as_bytes());
        digest.update(std::fs::read(path)?);
        writeln!(
            code,
            "    ({name:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    let digest: String = digest.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    writeln!(code, "pub static WASI_WHEELS_DIGEST: &str = {digest:?};")
        .expect("writing to a String");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("wasi_wheels.rs"), code)?;
    embed_recipes(&manifest_dir.join("../../recipes").canonicalize()?, &out)
}

/// `RECIPE_FILES`: every file under `recipes/` as (relative path, bytes).
fn embed_recipes(root: &Path, out: &Path) -> std::io::Result<()> {
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut code = String::from("pub static RECIPE_FILES: &[(&str, &[u8])] = &[\n");
    for path in &files {
        let rel = path
            .strip_prefix(root)
            .expect("under the root")
            .to_string_lossy()
            .replace('\\', "/");
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .expect("writing to a String");
    }
    code.push_str("];\n");
    std::fs::write(out.join("recipes.rs"), code)
}
