//! A worker's snapshot: the memory and globals its sandboxes start from, on
//! top of a base (the compiled code every worker with the same libraries
//! shares).
//!
//! A build runs the worker's imports in a component linked from CPython, the
//! SDK and the installed packages, and captures its memory and mutable
//! globals. The component's code depends only on those libraries, so it is
//! compiled once per set of them (a *base*, named by the hash of the linked
//! component) and each worker keeps only what it captured:
//!
//! ```text
//! <artifact>/snapshot/snapshot.json    base, memory size, globals
//! <artifact>/snapshot/memory.img.zst   the memory, compressed against the
//!                                      base's reference image (crate::image)
//! <cache>/bases/<base>/component.wasm  one initialized component of that code
//! <cache>/bases/<base>/component.cwasm its machine code (the runtime's engine)
//! <cache>/bases/<base>/reference.img   the first build's memory (crate::image)
//! ```
//!
//! Builds before compression kept `memory.img` as it is (zero pages left as
//! holes); those still load.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::image;

/// The folder of an artifact holding its snapshot.
pub const SNAPSHOT_DIR: &str = "snapshot";
const META_FILE: &str = "snapshot.json";
const MEMORY_FILE: &str = "memory.img";
const COMPRESSED_MEMORY_FILE: &str = "memory.img.zst";
/// The base's initialized component (taken from the first build of that code).
pub const BASE_COMPONENT_FILE: &str = "component.wasm";

/// Zero pages of this size are left as holes in the memory image.
const IMAGE_PAGE: usize = 4096;
/// The memory image is a whole number of these: a file mapped
/// copy-on-write must be whole host pages, and no host's are larger than a
/// WebAssembly page.
const IMAGE_ALIGN: usize = 65536;
/// A 32-bit memory's most WebAssembly pages (4 GiB).
const MAX_WASM_PAGES: u64 = 65536;

/// Where a base's initialized component is: `<bases>/<base>/component.wasm`.
pub fn base_component(bases: &Path, base: &str) -> PathBuf {
    bases.join(base).join(BASE_COMPONENT_FILE)
}

/// What `snapshot.json` says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The hash naming the base (`<cache>/bases/<base>`).
    pub base: String,
    /// The module defining the memory, and its size in WebAssembly pages.
    pub memory: Option<MemoryMeta>,
    /// Every mutable global: module, index in the module, value.
    pub globals: Vec<GlobalMeta>,
}

impl SnapshotMeta {
    /// How the memory image is compressed; `None` for a raw `memory.img`
    /// (or no memory).
    pub fn compressed(&self) -> Option<&CompressedImage> {
        self.memory.as_ref()?.compressed.as_ref()
    }

    /// The base's reference image the memory image needs, if compressed
    /// (`<bases>/<base>/reference-<digest>.img`).
    pub fn reference_image(&self, bases: &Path) -> Option<PathBuf> {
        let compressed = self.compressed()?;
        Some(image::reference_path(
            bases,
            &self.base,
            &compressed.reference,
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryMeta {
    pub module: u32,
    pub pages: u64,
    /// Set when the image is `memory.img.zst`; absent for a raw `memory.img`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compressed: Option<CompressedImage>,
}

/// How `memory.img.zst` expands (crate::image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompressedImage {
    /// The base's reference image it was compressed against (`image::digest`).
    pub reference: String,
    /// Its length expanded: whole WebAssembly pages.
    pub len: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalMeta {
    pub module: u32,
    pub global: u32,
    pub value: GlobalValue,
}

/// A global's value; floats as their bits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlobalValue {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
}

/// A snapshot on disk.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub dir: PathBuf,
}

impl Snapshot {
    /// The snapshot of the artifact in `artifact_dir`, if it has one.
    pub fn open(artifact_dir: &Path) -> Option<Self> {
        let dir = artifact_dir.join(SNAPSHOT_DIR);
        dir.join(META_FILE).is_file().then_some(Self { dir })
    }

    /// What `snapshot.json` says; its base and reference image are checked to
    /// be names (hex digits only: they name files, and a build may come from
    /// elsewhere).
    pub fn meta(&self) -> Result<SnapshotMeta> {
        let path = self.dir.join(META_FILE);
        let text =
            std::fs::read(&path).with_context(|| format!("reading \"{}\"", path.display()))?;
        let meta: SnapshotMeta = serde_json::from_slice(&text)
            .with_context(|| format!("reading \"{}\"", path.display()))?;
        let is_name = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_name(&meta.base) {
            bail!(
                "\"{}\": {:?} is not the name of a base",
                path.display(),
                meta.base
            );
        }
        if let Some(memory) = &meta.memory
            && let Some(compressed) = &memory.compressed
        {
            if !is_name(&compressed.reference) {
                bail!(
                    "\"{}\": {:?} is not the name of a reference image",
                    path.display(),
                    compressed.reference
                );
            }
            // What expanding it allocates: whole pages within the memory
            // (at most 4 GiB), whoever wrote the file.
            if compressed.len % IMAGE_ALIGN as u64 != 0
                || memory.pages > MAX_WASM_PAGES
                || compressed.len > memory.pages * IMAGE_ALIGN as u64
            {
                bail!(
                    "\"{}\": an image of {} bytes does not fit a memory of {} pages",
                    path.display(),
                    compressed.len,
                    memory.pages
                );
            }
        }
        Ok(meta)
    }

    /// The file holding the memory image, as stored (for its size on disk).
    pub fn stored_image(&self, meta: &SnapshotMeta) -> PathBuf {
        match meta.compressed() {
            Some(_) => self.dir.join(COMPRESSED_MEMORY_FILE),
            None => self.dir.join(MEMORY_FILE),
        }
    }

    /// The memory image, to map: `memory.img` itself, or `memory.img.zst`
    /// expanded against the reference in `bases` into an unnamed file there.
    pub fn memory_file(&self, meta: &SnapshotMeta, bases: &Path) -> Result<File> {
        let path = self.stored_image(meta);
        let Some(compressed) = meta.compressed() else {
            return File::open(&path).with_context(|| format!("opening \"{}\"", path.display()));
        };
        let reference = image::read_reference(bases, &meta.base, &compressed.reference)?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("reading \"{}\"", path.display()))?;
        let len = usize::try_from(compressed.len).context("an image too large for this machine")?;
        let expanded = match image::expand(&bytes, &reference, len) {
            Ok(expanded) => expanded,
            Err(e) => {
                image::check_reference(bases, &meta.base, &compressed.reference, &reference)?;
                return Err(e.context(format!("expanding \"{}\"", path.display())));
            }
        };
        image::temporary_file(&bases.join(&meta.base), &expanded)
    }

    /// Write a snapshot into `dir` (an artifact's `snapshot` folder).
    ///
    /// `memory` is the whole linear memory; trailing zeros are cut, so the
    /// image is as long as the data rounded up to a WebAssembly page (64
    /// KiB). With the base's reference (`bases`), it is compressed against it
    /// (`memory.img.zst`); without, written as it is, zero pages left as holes
    /// (`memory.img`, a sparse file).
    pub fn write(
        dir: &Path,
        mut meta: SnapshotMeta,
        memory: Option<&[u8]>,
        bases: Option<&Path>,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating \"{}\"", dir.display()))?;
        match (memory, meta.memory.as_mut()) {
            (Some(memory), Some(memory_meta)) => {
                let len = image_len(memory);
                match bases {
                    Some(bases) => {
                        let mut image = memory[..len.min(memory.len())].to_vec();
                        image.resize(len, 0);
                        let (digest, reference) = image::reference_for(bases, &meta.base, &image)?;
                        let compressed = image::compress(&image, &reference)?;
                        let path = dir.join(COMPRESSED_MEMORY_FILE);
                        std::fs::write(&path, compressed)
                            .with_context(|| format!("writing \"{}\"", path.display()))?;
                        memory_meta.compressed = Some(CompressedImage {
                            reference: digest,
                            len: len as u64,
                        });
                    }
                    None => {
                        let path = dir.join(MEMORY_FILE);
                        let mut file = File::create(&path)
                            .with_context(|| format!("creating \"{}\"", path.display()))?;
                        write_sparse(&mut file, memory, len)?;
                        file.sync_data().ok();
                    }
                }
            }
            (None, Some(_)) => bail!("a snapshot with a memory needs its bytes"),
            _ => {}
        }
        let json = serde_json::to_vec_pretty(&meta)?;
        std::fs::write(dir.join(META_FILE), json).context("writing the snapshot")?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }
}

/// The image's length: up to the last non-zero byte, in whole WebAssembly pages.
fn image_len(memory: &[u8]) -> usize {
    let end = memory.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    end.div_ceil(IMAGE_ALIGN) * IMAGE_ALIGN
}

/// Write `memory`'s first `len` bytes to `file`, zero pages left as holes.
pub(crate) fn write_sparse(file: &mut File, memory: &[u8], len: usize) -> Result<()> {
    let end = len.min(memory.len());
    for (i, page) in memory[..end].chunks(IMAGE_PAGE).enumerate() {
        if page.iter().all(|b| *b == 0) {
            continue;
        }
        file.seek(SeekFrom::Start((i * IMAGE_PAGE) as u64))?;
        file.write_all(page)?;
    }
    file.set_len(len as u64)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            base: "ab".into(),
            memory: Some(MemoryMeta {
                module: 1,
                pages: 3,
                compressed: None,
            }),
            globals: vec![GlobalMeta {
                module: 3,
                global: 4,
                value: GlobalValue::I64(-5),
            }],
        }
    }

    fn read(mut file: File) -> Vec<u8> {
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    }

    #[test]
    fn memory_reads_back_whole_with_a_length_of_whole_wasm_pages() {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = vec![0u8; 3 * IMAGE_ALIGN];
        memory[IMAGE_PAGE * 2 + 5] = 7;
        memory[IMAGE_ALIGN + 9] = 9;
        for (bases, file) in [
            (None, MEMORY_FILE),
            (Some(dir.path()), COMPRESSED_MEMORY_FILE),
        ] {
            let artifact = dir.path().join(file);
            let snapshot =
                Snapshot::write(&artifact.join(SNAPSHOT_DIR), meta(), Some(&memory), bases)
                    .unwrap();
            let opened = Snapshot::open(&artifact).expect("the snapshot is found");
            let stored = opened.meta().unwrap();
            assert_eq!(stored.globals, meta().globals);
            assert_eq!(
                snapshot.stored_image(&stored),
                artifact.join(SNAPSHOT_DIR).join(file)
            );
            let image = read(opened.memory_file(&stored, dir.path()).unwrap());
            assert_eq!(image.len(), 2 * IMAGE_ALIGN);
            assert!(
                image[..] == memory[..2 * IMAGE_ALIGN],
                "the image read back differs"
            );
        }
    }

    #[test]
    fn an_image_needs_the_reference_it_was_compressed_against() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let bases = first.path().join("bases");
        // Not one repeated byte: zstd would store that without the reference.
        let memory: Vec<u8> = (0..IMAGE_ALIGN).map(|i| (i * 7 % 251) as u8 + 1).collect();
        let snapshot =
            Snapshot::write(&first.path().join("a"), meta(), Some(&memory), Some(&bases)).unwrap();
        let meta = snapshot.meta().unwrap();
        // The first build on a base made the reference; another base folder
        // has none, then another one.
        let error = snapshot.memory_file(&meta, second.path()).unwrap_err();
        assert!(
            format!("{error:#}").contains("reference image"),
            "{error:#}"
        );
        let digest = &meta
            .memory
            .as_ref()
            .unwrap()
            .compressed
            .as_ref()
            .unwrap()
            .reference;
        let other = image::reference_path(second.path(), "ab", digest);
        std::fs::create_dir_all(other.parent().unwrap()).unwrap();
        let wrong: Vec<u8> = (0..IMAGE_ALIGN).map(|i| (i * 5 % 241) as u8).collect();
        std::fs::write(&other, wrong).unwrap();
        let error = snapshot.memory_file(&meta, second.path()).unwrap_err();
        assert!(format!("{error:#}").contains("damaged"), "{error:#}");
        assert!(read(snapshot.memory_file(&meta, &bases).unwrap()) == memory);
    }
}
