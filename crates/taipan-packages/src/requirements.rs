//! What a worker asks for: `requirements.txt` and/or `pyproject.toml`
//! `[project] dependencies`. (`[dependency-groups]` are for development and
//! never installed.)

use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use pep508_rs::Requirement;
use sha2::{Digest, Sha256};

use crate::dist::normalize;
use crate::environment;

#[derive(Debug, Clone)]
pub struct Wanted {
    pub requirements: Vec<Requirement>,
    /// Names of runtime-provided distributions that were asked for and skipped.
    pub provided: Vec<String>,
    /// Identifies the requirement set (recorded in the lock file).
    pub digest: String,
}

/// The project's requirements, or `None` when it declares none.
pub fn read(project: &Path) -> Result<Option<Wanted>> {
    let mut lines: Vec<(String, String)> = Vec::new(); // (where, text)
    let txt = project.join("requirements.txt");
    if txt.is_file() {
        read_requirements_txt(&txt, &mut lines, 0)?;
    }
    let pyproject = project.join("pyproject.toml");
    if pyproject.is_file() {
        let text = std::fs::read_to_string(&pyproject)
            .with_context(|| format!("reading \"{}\"", pyproject.display()))?;
        let doc: toml::Table = toml::from_str(&text)
            .with_context(|| format!("\"{}\" is not valid TOML", pyproject.display()))?;
        let deps = doc
            .get("project")
            .and_then(|p| p.get("dependencies"))
            .and_then(|d| d.as_array());
        for dep in deps.into_iter().flatten() {
            let Some(dep) = dep.as_str() else {
                bail!(
                    "\"{}\": [project] dependencies must be strings such as \"jinja2>=3\"",
                    pyproject.display()
                );
            };
            lines.push((
                "pyproject.toml [project] dependencies".into(),
                dep.to_string(),
            ));
        }
    }
    let mut requirements = Vec::new();
    let mut provided = Vec::new();
    for (place, text) in &lines {
        let requirement = Requirement::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{place}: {text:?} is not a valid requirement: {e}\nhint: write a package name with an optional version, e.g. \"jinja2>=3.1\""
            )
        })?;
        if requirement
            .version_or_url
            .as_ref()
            .is_some_and(|v| matches!(v, pep508_rs::VersionOrUrl::Url(_)))
        {
            bail!(
                "{place}: {text:?} names a URL; Taipan installs from a package index or --find-links folders\nhint: put the file in a folder and pass --find-links"
            );
        }
        let name = normalize(requirement.name.as_ref());
        if environment::is_provided(&name) {
            provided.push(name);
            continue;
        }
        requirements.push(requirement);
    }
    if requirements.is_empty() && provided.is_empty() {
        return Ok(None);
    }
    let mut canonical: Vec<String> = requirements.iter().map(ToString::to_string).collect();
    canonical.sort();
    let mut hasher = Sha256::new();
    hasher.update(crate::environment::PYTHON_FULL_VERSION);
    for r in &canonical {
        hasher.update((r.len() as u64).to_le_bytes());
        hasher.update(r);
    }
    Ok(Some(Wanted {
        requirements,
        provided,
        digest: crate::lock::hex(&hasher.finalize()[..16]),
    }))
}

fn read_requirements_txt(path: &Path, out: &mut Vec<(String, String)>, depth: u32) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading \"{}\"", path.display()))?;
    let shown = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut logical = String::new();
    for (index, raw) in text.lines().enumerate() {
        // Line continuations, then comments (` #`, or a whole-line `#`).
        if let Some(head) = raw.strip_suffix('\\') {
            logical.push_str(head);
            continue;
        }
        logical.push_str(raw);
        let line = std::mem::take(&mut logical);
        let line = match line.find(" #") {
            Some(i) => &line[..i],
            None if line.trim_start().starts_with('#') => "",
            None => line.as_str(),
        }
        .trim()
        .to_string();
        if line.is_empty() {
            continue;
        }
        let place = format!("{shown}:{}", index + 1);
        if let Some(include) = line
            .strip_prefix("-r ")
            .or_else(|| line.strip_prefix("--requirement "))
        {
            if depth > 8 {
                bail!("{place}: requirement files include each other too deeply");
            }
            let nested = path.parent().unwrap_or(Path::new(".")).join(include.trim());
            read_requirements_txt(&nested, out, depth + 1)?;
            continue;
        }
        if line.starts_with('-') {
            // --index-url, --hash, -e ...: options belong on the command line.
            tracing::warn!(
                "{place}: the option {line:?} is ignored; pass --index-url / --find-links to taipan"
            );
            continue;
        }
        out.push((place, line));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_comments_markers_and_provided() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("requirements.txt"),
            "# web\nJinja2>=3.1  # templates\nworkers-runtime-sdk\n-r more.txt\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("more.txt"),
            "requests ; python_version >= '3.8'\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("pyproject.toml"),
            "[project]\nname = \"w\"\ndependencies = [\"httpx\"]\n[dependency-groups]\ndev = [\"pytest\"]\n",
        )
        .unwrap();
        let wanted = read(dir.path()).unwrap().unwrap();
        let names: Vec<String> = wanted
            .requirements
            .iter()
            .map(|r| r.name.to_string())
            .collect();
        assert_eq!(names, ["jinja2", "requests", "httpx"]);
        assert_eq!(wanted.provided, ["workers-runtime-sdk"]);
    }

    #[test]
    fn errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_none());
        std::fs::write(
            dir.path().join("requirements.txt"),
            "jinja2\njinja2 >>= 3\n",
        )
        .unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("requirements.txt:2"), "{err}");
    }
}
