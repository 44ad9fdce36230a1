//! Memory images compressed against their base's reference image.
//!
//! A snapshot holds the worker's whole heap: 12.7 MiB for hello. Two
//! workers on one base differ in most pages (the heap's layout shifts) but
//! share most bytes: CPython's and the SDK's objects, only elsewhere. zstd
//! with another worker's image as a prefix (`--patch-from`) finds them at any
//! distance, so an image is kept as `memory.img.zst` compressed against one
//! of the base's reference images (`<bases>/<base>/reference-<digest>.img`:
//! the image of the first build on that base, on the node that made it;
//! never replaced, named by its digest so images from several nodes can
//! name theirs): ~2 MB for a hello worker.
//!
//! The runtime expands an image into an unnamed temporary file beside the
//! reference whenever it loads the worker (at deploy, and after the worker
//! was dormant), and maps that copy-on-write.

use std::fs::File;
use std::io::Seek;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use sha2::{Digest, Sha256};
use zstd::zstd_safe::{CCtx, CParameter, DCtx, DParameter};

/// zstd's level: 19 makes a hello image ~10% smaller at ten times the time.
const LEVEL: i32 = 3;
/// The largest window (a compressed image's reference plus itself) this
/// reads: two 512 MiB memories, the most a sandbox may have.
const MAX_WINDOW_LOG: u32 = 30;
const REFERENCE_PREFIX: &str = "reference-";
const REFERENCE_SUFFIX: &str = ".img";

/// `<bases>/<base>/reference-<digest>.img`.
pub fn reference_path(bases: &Path, base: &str, digest: &str) -> PathBuf {
    bases
        .join(base)
        .join(format!("{REFERENCE_PREFIX}{digest}{REFERENCE_SUFFIX}"))
}

/// The reference a new image on `base` is compressed against, and its
/// digest: the base's first (by name), or `image` itself, stored as the
/// base's reference, when it has none.
pub fn reference_for(bases: &Path, base: &str, image: &[u8]) -> Result<(String, Vec<u8>)> {
    let dir = bases.join(base);
    let mut found: Vec<String> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let digest = name
                .strip_prefix(REFERENCE_PREFIX)?
                .strip_suffix(REFERENCE_SUFFIX)?;
            digest
                .bytes()
                .all(|b| b.is_ascii_hexdigit())
                .then(|| digest.to_string())
        })
        .collect();
    found.sort();
    for digest in found {
        let path = reference_path(bases, base, &digest);
        // One whose bytes are not its name (cut short): skipped.
        if let Ok(bytes) = std::fs::read(&path)
            && self::digest(&bytes) == digest
        {
            return Ok((digest, bytes));
        }
    }
    let digest = self::digest(image);
    store(&reference_path(bases, base, &digest), image)?;
    Ok((digest, image.to_vec()))
}

/// Store `bytes` at `path` whole (through a temporary file; zero pages left
/// as holes) unless a file is there: references are named by their digest,
/// so it has the same bytes.
pub fn store(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("a reference without a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating \"{}\"", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".reference-")
        .tempfile_in(dir)?;
    crate::snapshot::write_sparse(tmp.as_file_mut(), bytes, bytes.len())?;
    // Whole on disk before it has its name: a reference is never replaced.
    tmp.as_file().sync_all()?;
    if let Err(e) = tmp.persist_noclobber(path)
        && !path.exists()
    {
        return Err(anyhow::Error::from(e.error).context(format!("storing \"{}\"", path.display())));
    }
    Ok(())
}

/// What names a reference in `snapshot.json`: the image must be expanded
/// against the very bytes it was compressed against.
pub fn digest(reference: &[u8]) -> String {
    crate::hex(&Sha256::digest(reference)[..16])
}

/// `image` compressed against `reference` (one zstd frame, checksummed).
pub fn compress(image: &[u8], reference: &[u8]) -> Result<Vec<u8>> {
    let mut cctx = CCtx::try_create().context("zstd: no memory for a compression context")?;
    for parameter in [
        CParameter::CompressionLevel(LEVEL),
        CParameter::WindowLog(window_log(reference.len() + image.len())),
        CParameter::EnableLongDistanceMatching(true),
        CParameter::ChecksumFlag(true),
    ] {
        cctx.set_parameter(parameter).map_err(zstd_error)?;
    }
    cctx.ref_prefix(reference).map_err(zstd_error)?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(image.len()));
    cctx.compress2(&mut out, image).map_err(zstd_error)?;
    Ok(out)
}

/// The `len` bytes `compress` made `compressed` from, against `reference`.
pub fn expand(compressed: &[u8], reference: &[u8], len: usize) -> Result<Vec<u8>> {
    let mut dctx = DCtx::try_create().context("zstd: no memory for a decompression context")?;
    dctx.set_parameter(DParameter::WindowLogMax(MAX_WINDOW_LOG))
        .map_err(zstd_error)?;
    dctx.ref_prefix(reference).map_err(zstd_error)?;
    let mut out = Vec::with_capacity(len);
    dctx.decompress(&mut out, compressed).map_err(zstd_error)?;
    ensure!(
        out.len() == len,
        "the image expanded to {} bytes, expected {len}",
        out.len()
    );
    Ok(out)
}

/// An unnamed file in `dir` holding `image`, zero pages left as holes: gone
/// when the last mapping of it is.
pub fn temporary_file(dir: &Path, image: &[u8]) -> Result<File> {
    let mut file = tempfile::tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in \"{}\"", dir.display()))?;
    crate::snapshot::write_sparse(&mut file, image, image.len())?;
    file.rewind()?;
    Ok(file)
}

fn window_log(window: usize) -> u32 {
    let log = usize::BITS - window.max(1).leading_zeros();
    log.clamp(20, MAX_WINDOW_LOG)
}

fn zstd_error(code: usize) -> anyhow::Error {
    anyhow::anyhow!("zstd: {}", zstd::zstd_safe::get_error_name(code))
}

/// The reference named `digest`. Its bytes are not hashed here (19 MiB for
/// hello: longer than expanding an image against it): an image expanded
/// against other bytes fails zstd's checksum, and then [`check_reference`]
/// says whether the reference is the cause.
pub fn read_reference(bases: &Path, base: &str, digest: &str) -> Result<Vec<u8>> {
    let path = reference_path(bases, base, digest);
    std::fs::read(&path).with_context(|| {
        format!(
            "reading the base's reference image \"{}\"\n{REBUILD_HINT}",
            path.display()
        )
    })
}

/// After an image failed to expand against `reference`: if the reference's
/// bytes are not its name, it is removed (so that building the worker again
/// makes a new one: a build reuses its artifact only while its reference is
/// there) and the error says so.
pub fn check_reference(bases: &Path, base: &str, digest: &str, reference: &[u8]) -> Result<()> {
    let found = self::digest(reference);
    if found != digest {
        let path = reference_path(bases, base, digest);
        std::fs::remove_file(&path).ok();
        bail!(
            "the reference image \"{}\" was damaged (its digest was {found}) and is removed\n{REBUILD_HINT}",
            path.display()
        );
    }
    Ok(())
}

const REBUILD_HINT: &str = "hint: build the worker again (`taipan deploy`, `taipan build`)";

#[cfg(test)]
mod tests {
    use super::*;

    /// A heap-like image: `seed` moves the same objects elsewhere.
    fn image(seed: usize) -> Vec<u8> {
        let mut image = vec![0u8; 1 << 20];
        for i in 0..2000 {
            let at = (i * 509 + seed * 4096) % (image.len() - 64);
            let object = format!("object {i} of the standard library");
            image[at..at + object.len()].copy_from_slice(object.as_bytes());
        }
        image
    }

    #[test]
    fn an_image_expands_against_its_reference_and_only_that() {
        let (reference, worker) = (image(0), image(7));
        let compressed = compress(&worker, &reference).unwrap();
        assert!(compressed.len() < worker.len() / 20, "{}", compressed.len());
        assert_eq!(
            expand(&compressed, &reference, worker.len()).unwrap(),
            worker
        );
        // Another reference: zstd's checksum (or the length) says so.
        assert!(expand(&compressed, &image(3), worker.len()).is_err());
    }

    #[test]
    fn a_base_keeps_its_first_reference() {
        let bases = tempfile::tempdir().unwrap();
        let (first, bytes) = reference_for(bases.path(), "ab", b"first").unwrap();
        assert_eq!(bytes, b"first");
        let (second, bytes) = reference_for(bases.path(), "ab", b"second").unwrap();
        assert_eq!(
            (second.as_str(), bytes.as_slice()),
            (first.as_str(), &b"first"[..])
        );
        assert_eq!(
            read_reference(bases.path(), "ab", &first).unwrap(),
            b"first"
        );
        check_reference(bases.path(), "ab", &first, b"first").unwrap();
        // A damaged one is not handed to new builds; checked, it is removed.
        std::fs::write(reference_path(bases.path(), "ab", &first), b"firs").unwrap();
        let (third, _) = reference_for(bases.path(), "ab", b"third").unwrap();
        assert_eq!(third, digest(b"third"));
        let damaged = read_reference(bases.path(), "ab", &first).unwrap();
        let error = check_reference(bases.path(), "ab", &first, &damaged).unwrap_err();
        assert!(format!("{error:#}").contains("damaged"), "{error:#}");
        assert!(
            !reference_path(bases.path(), "ab", &first).exists(),
            "removed"
        );
        let error = read_reference(bases.path(), "cd", &first).unwrap_err();
        assert!(
            format!("{error:#}").contains("hint: build the worker again"),
            "{error:#}"
        );
    }
}
