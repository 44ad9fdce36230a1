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
//! <artifact>/snapshot/snapshot.json   base, memory size, globals
//! <artifact>/snapshot/memory.img      the memory, zero pages left as holes
//! <cache>/bases/<base>/component.wasm one initialized component of that code
//! <cache>/bases/<base>/component.cwasm its machine code (the runtime's engine)
//! ```

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The folder of an artifact holding its snapshot.
pub const SNAPSHOT_DIR: &str = "snapshot";
const META_FILE: &str = "snapshot.json";
const MEMORY_FILE: &str = "memory.img";
/// The base's initialized component (taken from the first build of that code).
pub const BASE_COMPONENT_FILE: &str = "component.wasm";

/// Zero pages of this size are left as holes in the memory image.
const IMAGE_PAGE: usize = 4096;
/// The memory image is a whole number of these: a file mapped
/// copy-on-write must be whole host pages, and no host's are larger than a
/// WebAssembly page.
const IMAGE_ALIGN: usize = 65536;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryMeta {
    pub module: u32,
    pub pages: u64,
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

    /// What `snapshot.json` says; its base is checked to be a name (hex
    /// digits only: it names a folder, and a build may come from elsewhere).
    pub fn meta(&self) -> Result<SnapshotMeta> {
        let path = self.dir.join(META_FILE);
        let text =
            std::fs::read(&path).with_context(|| format!("reading \"{}\"", path.display()))?;
        let meta: SnapshotMeta = serde_json::from_slice(&text)
            .with_context(|| format!("reading \"{}\"", path.display()))?;
        if meta.base.is_empty() || !meta.base.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!(
                "\"{}\": {:?} is not the name of a base",
                path.display(),
                meta.base
            );
        }
        Ok(meta)
    }

    /// The memory image (`memory.img`).
    pub fn memory_image(&self) -> PathBuf {
        self.dir.join(MEMORY_FILE)
    }

    /// Write a snapshot into `dir` (an artifact's `snapshot` folder).
    ///
    /// `memory` is the whole linear memory; pages of zeros are left as holes
    /// (a sparse file: they read as zeros and take no disk) and trailing
    /// zeros are cut, so the file is as long as the data rounded up to a
    /// WebAssembly page (64 KiB).
    pub fn write(dir: &Path, meta: &SnapshotMeta, memory: Option<&[u8]>) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating \"{}\"", dir.display()))?;
        if let Some(memory) = memory {
            write_sparse(&dir.join(MEMORY_FILE), memory)?;
        } else if meta.memory.is_some() {
            bail!("a snapshot with a memory needs its bytes");
        }
        let json = serde_json::to_vec_pretty(meta)?;
        std::fs::write(dir.join(META_FILE), json).context("writing the snapshot")?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }
}

fn write_sparse(path: &Path, memory: &[u8]) -> Result<()> {
    let end = memory.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let len = end.div_ceil(IMAGE_ALIGN) * IMAGE_ALIGN;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating \"{}\"", path.display()))?;
    for (i, page) in memory[..end].chunks(IMAGE_PAGE).enumerate() {
        if page.iter().all(|b| *b == 0) {
            continue;
        }
        file.seek(SeekFrom::Start((i * IMAGE_PAGE) as u64))?;
        file.write_all(page)?;
    }
    file.set_len(len as u64)?;
    file.sync_data().ok();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_reads_back_whole_with_a_length_of_whole_wasm_pages() {
        let dir = tempfile_dir();
        let mut memory = vec![0u8; 128 * 1024];
        memory[IMAGE_PAGE * 2 + 5] = 7;
        memory[IMAGE_PAGE * 5] = 9;
        let meta = SnapshotMeta {
            base: "ab".into(),
            memory: Some(MemoryMeta {
                module: 1,
                pages: 2,
            }),
            globals: vec![GlobalMeta {
                module: 3,
                global: 4,
                value: GlobalValue::I64(-5),
            }],
        };
        let snapshot = Snapshot::write(&dir.join(SNAPSHOT_DIR), &meta, Some(&memory)).unwrap();
        let image = std::fs::read(snapshot.memory_image()).unwrap();
        assert_eq!(image.len(), IMAGE_ALIGN);
        assert_eq!(image[..], memory[..IMAGE_ALIGN]);
        let opened = Snapshot::open(&dir).expect("the snapshot is found");
        assert_eq!(opened.meta().unwrap(), meta);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("taipan-snapshot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
