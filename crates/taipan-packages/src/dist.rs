//! Distribution files: names as PEP 503 normalizes them, and what a file
//! name says (wheel tags, sdist).

use std::str::FromStr;

use pep440_rs::Version;

use crate::environment;

/// PEP 503: lowercase, runs of `-`, `_`, `.` become one `-`.
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A wheel the sandbox can run (pure Python).
    PureWheel,
    /// A wheel built for a native platform.
    NativeWheel,
    Sdist,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistFile {
    pub filename: String,
    /// Normalized.
    pub name: String,
    pub version: Version,
    pub kind: Kind,
}

impl DistFile {
    /// What `filename` is, if it names a wheel or an sdist.
    pub fn parse(filename: &str) -> Option<Self> {
        if let Some(stem) = filename.strip_suffix(".whl") {
            let parts: Vec<&str> = stem.split('-').collect();
            let (name, version, python, abi, platform) = match parts.as_slice() {
                [n, v, p, a, pl] | [n, v, _, p, a, pl] => (*n, *v, *p, *a, *pl),
                _ => return None,
            };
            let kind = if environment::wheel_fits(python, abi, platform) {
                Kind::PureWheel
            } else {
                Kind::NativeWheel
            };
            return Some(Self {
                filename: filename.to_string(),
                name: normalize(name),
                version: Version::from_str(version).ok()?,
                kind,
            });
        }
        let stem = filename
            .strip_suffix(".tar.gz")
            .or_else(|| filename.strip_suffix(".zip"))?;
        let (name, version) = stem.rsplit_once('-')?;
        Some(Self {
            filename: filename.to_string(),
            name: normalize(name),
            version: Version::from_str(version).ok()?,
            kind: Kind::Sdist,
        })
    }

    /// Wheels before sdists: a wheel needs no building.
    pub fn preference(&self) -> u8 {
        match self.kind {
            Kind::PureWheel => 0,
            Kind::Sdist => 1,
            Kind::NativeWheel => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_files() {
        assert_eq!(normalize("Jinja2"), "jinja2");
        assert_eq!(normalize("typing_extensions"), "typing-extensions");
        assert_eq!(normalize("zope.interface"), "zope-interface");
        let wheel = DistFile::parse("charset_normalizer-3.5.2-py3-none-any.whl").unwrap();
        assert_eq!(wheel.name, "charset-normalizer");
        assert_eq!(wheel.kind, Kind::PureWheel);
        let native =
            DistFile::parse("pydantic_core-2.41.5-cp314-cp314-manylinux_2_17_x86_64.whl").unwrap();
        assert_eq!(native.kind, Kind::NativeWheel);
        let sdist = DistFile::parse("markupsafe-3.0.4.tar.gz").unwrap();
        assert_eq!(
            (sdist.kind, sdist.version.to_string()),
            (Kind::Sdist, "3.0.4".into())
        );
        assert!(DistFile::parse("README.md").is_none());
    }
}
