//! The upload format of `taipan deploy`: a tar of the project folder.

use std::io::Read;
use std::path::{Component, Path};

use anyhow::{Context, Result, bail};

/// Bounds on an uploaded bundle.
#[derive(Debug, Clone, Copy)]
pub struct BundleLimits {
    pub max_bytes: u64,
    pub max_files: usize,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            max_bytes: 100 * 1000 * 1000,
            max_files: 10_000,
        }
    }
}

/// Pack the worker-relevant files of `project` (what a build would read,
/// plus the config and requirements) into a tar.
pub fn pack(project: &Path) -> Result<Vec<u8>> {
    let files = taipan_build::source::files(project)?;
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    for (rel, abs) in &files {
        builder
            .append_path_with_name(abs, rel)
            .with_context(|| format!("packing \"{}\"", abs.display()))?;
    }
    Ok(builder.into_inner()?)
}

/// Unpack a bundle into `dest`: regular files and folders only, no paths
/// outside `dest`, within `limits`.
pub fn unpack(bundle: impl Read, dest: &Path, limits: BundleLimits) -> Result<usize> {
    let mut archive = tar::Archive::new(bundle);
    let (mut files, mut bytes) = (0usize, 0u64);
    for entry in archive
        .entries()
        .context("the upload is not a tar archive")?
    {
        let mut entry = entry.context("the upload is not a valid tar archive")?;
        let path = entry.path()?.into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            bail!(
                "the bundle contains the path \"{}\", which leaves the project folder",
                path.display()
            );
        }
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Directory => {}
            other => bail!(
                "the bundle contains \"{}\", a {other:?}; only files and folders are allowed",
                path.display()
            ),
        }
        files += 1;
        bytes += entry.size();
        if files > limits.max_files {
            bail!("the bundle has more than {} files", limits.max_files);
        }
        if bytes > limits.max_bytes {
            bail!(
                "the bundle is larger than {} bytes unpacked",
                limits.max_bytes
            );
        }
        if !entry.unpack_in(dest)? {
            bail!(
                "the bundle contains the path \"{}\", which leaves the project folder",
                path.display()
            );
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_skips_local_state() {
        let src = tempfile::tempdir().unwrap();
        for (path, body) in [
            ("wrangler.toml", "x"),
            ("src/entry.py", "y"),
            (".taipan/builds/z", "no"),
            ("src/__pycache__/a.pyc", "no"),
        ] {
            let p = src.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
        let bundle = pack(src.path()).unwrap();
        let dest = tempfile::tempdir().unwrap();
        assert_eq!(
            unpack(&bundle[..], dest.path(), BundleLimits::default()).unwrap(),
            2
        );
        assert_eq!(
            std::fs::read_to_string(dest.path().join("src/entry.py")).unwrap(),
            "y"
        );
        assert!(!dest.path().join(".taipan").exists());
    }

    #[test]
    fn refuses_escapes_links_and_oversize() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "link", "/etc/passwd")
            .unwrap();
        let bundle = builder.into_inner().unwrap();
        let dest = tempfile::tempdir().unwrap();
        assert!(
            unpack(&bundle[..], dest.path(), BundleLimits::default())
                .unwrap_err()
                .to_string()
                .contains("only files")
        );

        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(10);
        header.set_cksum();
        builder
            .append_data(&mut header, "a.txt", &[0u8; 10][..])
            .unwrap();
        let bundle = builder.into_inner().unwrap();
        let limits = BundleLimits {
            max_bytes: 5,
            max_files: 10,
        };
        assert!(
            unpack(&bundle[..], dest.path(), limits)
                .unwrap_err()
                .to_string()
                .contains("larger")
        );
    }
}
