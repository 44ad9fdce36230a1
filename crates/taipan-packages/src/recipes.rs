//! The recipes that build the shipped WASI wheels (`recipes/` at the
//! repository's root), embedded in the binary so `taipan wheels build` works
//! from any folder. A recipe is data (`recipes/NAME/recipe.toml`: the sdist
//! and its sha256, the flow, flags, patches, toolchain versions); the flows
//! themselves are `recipes/build.sh`, which this module writes out and the
//! CLI runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::dist::normalize;

include!(concat!(env!("OUT_DIR"), "/recipes.rs"));

/// One package's recipe, as `recipe.toml` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The recipe's folder under `recipes/` (also the name `build.sh` takes).
    pub folder: String,
    pub name: String,
    pub version: String,
    /// `rust-pyo3`, `c` or `c-meson`.
    pub flow: String,
    /// The wheel's platform tag, e.g. `cp314-cp314-wasi_0_0_0_wasm32`.
    pub tag: String,
    /// The sha256 of the wheel the recipe produced when it was last built
    /// for the binary: a rebuild with the same toolchain gives these bytes.
    pub built_sha256: Option<String>,
    /// Tools and versions the recipe was built with (`[toolchain]`).
    pub toolchain: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RecipeToml {
    package: PackageToml,
    build: BuildToml,
    wheel: WheelToml,
    #[serde(default)]
    toolchain: toml::Table,
}

#[derive(Deserialize)]
struct PackageToml {
    name: String,
    version: String,
}

#[derive(Deserialize)]
struct BuildToml {
    flow: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct WheelToml {
    tag: String,
    built_sha256: Option<String>,
}

impl Recipe {
    fn parse(folder: &str, text: &str) -> Result<Self> {
        let raw: RecipeToml = toml::from_str(text)
            .with_context(|| format!("recipes/{folder}/recipe.toml is not a valid recipe"))?;
        Ok(Recipe {
            folder: folder.to_string(),
            name: raw.package.name,
            version: raw.package.version,
            flow: raw.build.flow,
            tag: raw.wheel.tag,
            built_sha256: raw.wheel.built_sha256,
            toolchain: raw
                .toolchain
                .into_iter()
                .filter(|(k, _)| !k.ends_with("-sha256"))
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect(),
        })
    }

    /// The file name of the wheel a build writes.
    pub fn wheel_file_name(&self) -> String {
        let dist = normalize(&self.name).replace('-', "_");
        format!("{dist}-{}-{}.whl", self.version, self.tag)
    }
}

/// Every embedded recipe, by folder name.
pub fn all() -> Result<Vec<Recipe>> {
    RECIPE_FILES
        .iter()
        .filter_map(|(path, bytes)| {
            let folder = path.strip_suffix("/recipe.toml")?;
            Some(Recipe::parse(folder, &String::from_utf8_lossy(bytes)))
        })
        .collect()
}

/// The recipe for `spec`: `NAME` or `NAME==VERSION` (names compared as PEP
/// 503 normalizes them).
pub fn find(spec: &str) -> Result<Recipe> {
    let (name, version) = match spec.split_once("==") {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (spec.trim(), None),
    };
    if name.is_empty() || version.is_some_and(str::is_empty) {
        bail!("\"{spec}\" is not a package\nhint: write NAME or NAME==VERSION, e.g. numpy==2.5.5");
    }
    let recipes = all()?;
    let Some(recipe) = recipes
        .iter()
        .find(|r| normalize(&r.name) == normalize(name))
    else {
        let have: Vec<String> = recipes
            .iter()
            .map(|r| format!("{}=={}", r.name, r.version))
            .collect();
        bail!(
            "there is no recipe for {name}; recipes: {}\nhint: a recipe is a folder in the \
             repository's recipes/ (see recipes/README.md); for a pure-Python package no \
             wheel needs building",
            have.join(", ")
        );
    };
    if let Some(version) = version
        && version != recipe.version
    {
        bail!(
            "the recipe for {} builds version {}, not {version}\nhint: run `taipan wheels build \
             {}=={}`, or bump [package] version and [source] in recipes/{}/recipe.toml and \
             build from the repository",
            recipe.name,
            recipe.version,
            recipe.name,
            recipe.version,
            recipe.folder
        );
    }
    Ok(recipe.clone())
}

/// Writes the embedded `recipes/` tree under `dir` (replacing what is
/// there) and returns the path of its `build.sh`.
pub fn write_to(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing \"{}\"", dir.display()))?;
    }
    for (path, bytes) in RECIPE_FILES {
        let file = dir.join(path);
        let parent = file.parent().expect("a file in a folder");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating \"{}\"", parent.display()))?;
        std::fs::write(&file, bytes).with_context(|| format!("writing \"{}\"", file.display()))?;
    }
    Ok(dir.join("build.sh"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_wheel_has_its_recipe() {
        let recipes = all().unwrap();
        for (file, bytes) in crate::shipped::WASI_WHEELS {
            let recipe = recipes
                .iter()
                .find(|r| r.wheel_file_name() == *file)
                .unwrap_or_else(|| panic!("{file} ships without a recipe"));
            // The wheel in the binary is the one the recipe says it built.
            let digest = crate::lock::hex(&<sha2::Sha256 as sha2::Digest>::digest(bytes));
            assert_eq!(
                recipe.built_sha256.as_deref(),
                Some(digest.as_str()),
                "{file}"
            );
        }
    }

    #[test]
    fn find_takes_a_name_or_a_pinned_version() {
        let numpy = find("numpy").unwrap();
        assert_eq!(numpy.flow, "c-meson");
        assert_eq!(find(&format!("NumPy=={}", numpy.version)).unwrap(), numpy);
        assert_eq!(find("pydantic_core").unwrap().name, "pydantic-core");

        let err = format!("{:#}", find("numpy==1.0").unwrap_err());
        assert!(
            err.contains(&format!("builds version {}, not 1.0", numpy.version)),
            "{err}"
        );
        assert!(err.contains("hint:"), "{err}");
        let err = format!("{:#}", find("lxml").unwrap_err());
        assert!(
            err.contains("no recipe for lxml") && err.contains("numpy=="),
            "{err}"
        );
        assert!(find("==1").is_err() && find("numpy==").is_err());
    }

    #[test]
    fn the_tree_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let build = write_to(&dir.path().join("recipes")).unwrap();
        assert!(std::fs::read_to_string(&build).unwrap().contains("--check"));
        for recipe in all().unwrap() {
            assert!(
                build
                    .with_file_name(&recipe.folder)
                    .join("recipe.toml")
                    .is_file()
            );
        }
    }
}
