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
    /// A wheel the sandbox can run: pure Python, or built for CPython on
    /// WASI; `rank` orders them (see [`environment::wheel_rank`]).
    Wheel {
        rank: u8,
    },
    /// A wheel built for another platform.
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
            let kind = match environment::wheel_rank(python, abi, platform) {
                Some(rank) => Kind::Wheel { rank },
                None => Kind::NativeWheel,
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

    /// Lower is better: WASI builds, then pure-Python wheels, then sdists
    /// (a wheel needs no building, and a WASI build has the native speed-ups).
    pub fn preference(&self) -> u8 {
        match self.kind {
            Kind::Wheel { rank } => rank,
            Kind::Sdist => 10,
            Kind::NativeWheel => 11,
        }
    }

    /// A build for CPython on WASI (it carries native code).
    pub fn is_wasi_build(&self) -> bool {
        matches!(self.kind, Kind::Wheel { rank } if rank < 3)
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
        assert_eq!(wheel.kind, Kind::Wheel { rank: 3 });
        let native =
            DistFile::parse("pydantic_core-2.41.5-cp314-cp314-manylinux_2_17_x86_64.whl").unwrap();
        assert_eq!(native.kind, Kind::NativeWheel);
        let wasi =
            DistFile::parse("pydantic_core-2.50.5-cp314-cp314-wasi_0_0_0_wasm32.whl").unwrap();
        assert!(wasi.is_wasi_build() && wasi.preference() < wheel.preference());
        let sdist = DistFile::parse("markupsafe-3.0.4.tar.gz").unwrap();
        assert_eq!(
            (sdist.kind, sdist.version.to_string()),
            (Kind::Sdist, "3.0.4".into())
        );
        assert!(DistFile::parse("README.md").is_none());
    }
}
