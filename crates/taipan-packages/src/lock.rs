//! `taipan.lock`: the exact files a worker's requirements resolved to, with
//! their hashes, so every later build and deploy installs the same bytes.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const HEADER: &str = "# taipan.lock: written by Taipan from requirements.txt / pyproject.toml.\n# Commit it; delete it (or change the requirements) to resolve again.\n";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    pub version: u32,
    /// The digest of the requirements this lock was made from.
    pub requirements: String,
    #[serde(default, rename = "package")]
    pub packages: Vec<Locked>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locked {
    /// Normalized.
    pub name: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
}

impl LockFile {
    pub fn new(requirements: String, mut packages: Vec<Locked>) -> Self {
        packages.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            version: 1,
            requirements,
            packages,
        }
    }

    pub fn read(path: &Path) -> Result<Option<Self>> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading \"{}\"", path.display())),
        };
        let lock: Self = toml::from_str(&text).with_context(|| {
            format!(
                "\"{}\" is not a valid lock file\nhint: delete it to resolve the requirements again",
                path.display()
            )
        })?;
        Ok(Some(lock))
    }

    /// Write (only when the content changes, so watchers see no churn).
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = format!("{HEADER}{}", toml::to_string(self)?);
        if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        std::fs::write(path, text)?;
        Ok(())
    }

    /// Names the installed set: the same files give the same digest.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        for p in &self.packages {
            for field in [&p.name, &p.version, &p.filename, &p.sha256] {
                hasher.update((field.len() as u64).to_le_bytes());
                hasher.update(field);
            }
        }
        hex(&hasher.finalize()[..16])
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_stable_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("taipan.lock");
        let lock = LockFile::new(
            "abc".into(),
            vec![Locked {
                name: "jinja2".into(),
                version: "3.1.6".into(),
                filename: "jinja2-3.1.6-py3-none-any.whl".into(),
                sha256: "85ec".into(),
            }],
        );
        lock.write(&path).unwrap();
        let read = LockFile::read(&path).unwrap().unwrap();
        assert_eq!(read, lock);
        assert_eq!(read.digest(), lock.digest());
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("# taipan.lock")
        );
        assert!(LockFile::read(&dir.path().join("none")).unwrap().is_none());
    }
}
