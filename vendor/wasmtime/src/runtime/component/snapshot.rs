//! Taipan's patch: a component whose machine code is another component's and
//! whose memory and globals come from a snapshot.
//!
//! A pre-initialized component (componentize-py, component-init) differs from
//! another one made from the same libraries only in its data: the contents of
//! its one linear memory, that memory's initial size, and the initial values
//! of its mutable globals. Compiling each such component again makes the same
//! machine code every time; [`Component::with_snapshot`] instead makes a new
//! component that shares the code of one already compiled and starts from
//! other data. The memory image is mapped copy-on-write from a file, as a
//! compiled component's own image is.

use crate::prelude::*;
use crate::runtime::vm::{MmapVec, ModuleMemoryImageSource};
use crate::{Module, component::Component};
use alloc::sync::Arc;
use std::fs::File;
use wasmtime_environ::{
    GlobalConstValue, GlobalIndex, MemoryIndex, MemoryInitialization, PrimaryMap, RuntimeDataIndex,
};

/// The data a component starts from, captured from a running instance of a
/// component with the same code.
///
/// Modules are numbered in the order their sections appear in the component
/// binary (a flat component: no nested components), globals by their index
/// in the module (imports first), as `component-init` numbers them.
#[derive(Debug)]
pub struct Snapshot {
    /// The contents of the component's one linear memory, if it has one.
    pub memory: Option<SnapshotMemory>,
    /// New initial values of mutable globals. Every mutable global the base
    /// component initializes with a constant may be given; those not given
    /// keep the base's value.
    pub globals: Vec<SnapshotGlobal>,
}

/// A linear memory's contents at the time of the snapshot.
#[derive(Debug)]
pub struct SnapshotMemory {
    /// The module that defines the memory.
    pub module: u32,
    /// The memory's bytes from address 0, mapped copy-on-write. Its length
    /// must be a multiple of the host's page size; bytes past its end are
    /// zero. The bytes below the base component's image offset (its first
    /// non-zero page) must be zero: compiled code knows that offset.
    pub image: File,
    /// The memory's size in WebAssembly pages when it was captured (a new
    /// instance's memory starts this large, or as large as the base's).
    pub pages: u64,
}

/// A mutable global's value at the time of the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotGlobal {
    /// The module that defines the global.
    pub module: u32,
    /// The global's index in that module (imported globals first).
    pub global: u32,
    /// Its value.
    pub value: SnapshotValue,
}

/// A global's value, floats as their bits.
#[derive(Debug, Clone, Copy, PartialEq)]
#[expect(missing_docs, reason = "self-describing variants")]
pub enum SnapshotValue {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
}

/// A snapshot's memory image: what its module reads instead of the base
/// module's data.
pub(crate) struct SnapshotData {
    mmap: MmapVec,
}

impl ModuleMemoryImageSource for SnapshotData {
    fn wasm_data(&self) -> &[u8] {
        &self.mmap
    }

    fn mmap(&self) -> Option<&MmapVec> {
        Some(&self.mmap)
    }
}

impl SnapshotData {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.mmap
    }
}

impl Component {
    /// A component with this one's machine code that starts from `snapshot`.
    ///
    /// The base must be a pre-initialized component whose memory is
    /// initialized statically from one image (as a snapshot's is) and whose
    /// mutable globals have constant initializers; the snapshot must come from
    /// a component with the same code. Both are checked as far as the base's
    /// metadata allows (which module defines the memory, the globals' types);
    /// a snapshot of a component with other code is not detected.
    pub fn with_snapshot(&self, snapshot: &Snapshot) -> Result<Component> {
        let mut modules = PrimaryMap::new();
        for (index, module) in self.static_modules_map().iter() {
            let number = index.as_u32();
            let memory = snapshot.memory.as_ref().filter(|m| m.module == number);
            let globals = snapshot.globals.iter().filter(|g| g.module == number);
            modules.push(with_module_snapshot(module, memory, globals)?);
        }
        if let Some(memory) = &snapshot.memory {
            ensure!(
                (memory.module as usize) < modules.len(),
                "the snapshot's memory is in module {}, the component has {}",
                memory.module,
                modules.len()
            );
        }
        for global in &snapshot.globals {
            ensure!(
                (global.module as usize) < modules.len(),
                "the snapshot has a global of module {}, the component has {}",
                global.module,
                modules.len()
            );
        }
        Ok(self.with_static_modules(modules))
    }
}

fn with_module_snapshot<'a>(
    module: &Module,
    memory: Option<&SnapshotMemory>,
    globals: impl Iterator<Item = &'a SnapshotGlobal>,
) -> Result<Module> {
    let mut globals = globals.peekable();
    if memory.is_none() && globals.peek().is_none() {
        return Ok(module.clone());
    }
    let base = module.env_module();
    // `wasmtime_environ::Module` is not `Clone`; its serialized form is how
    // compiled artifacts carry it, and this runs once per loaded worker.
    let mut env: wasmtime_environ::Module =
        postcard::from_bytes(&postcard::to_allocvec(&**base)?)?;

    for global in globals {
        let index = GlobalIndex::from_u32(global.global);
        let Some(defined) = env.defined_global_index(index) else {
            bail!(
                "global {} of module {} is imported, a snapshot cannot set it",
                global.global,
                global.module
            );
        };
        ensure!(
            env.globals.get(index).is_some_and(|g| g.mutability),
            "global {} of module {} is not a mutable global",
            global.global,
            global.module
        );
        let value = match global.value {
            SnapshotValue::I32(v) => GlobalConstValue::I32(v),
            SnapshotValue::I64(v) => GlobalConstValue::I64(v),
            SnapshotValue::F32(v) => GlobalConstValue::F32(v),
            SnapshotValue::F64(v) => GlobalConstValue::F64(v),
        };
        let Some(slot) = env.global_initializers.iter_mut().find(|(i, _)| *i == defined) else {
            bail!(
                "global {} of module {} has no constant initializer in the base component",
                global.global,
                global.module
            );
        };
        ensure!(
            core::mem::discriminant(&slot.1) == core::mem::discriminant(&value),
            "global {} of module {} has another type in the base component",
            global.global,
            global.module
        );
        slot.1 = value;
    }

    let data = match memory {
        None => None,
        Some(memory) => Some(snapshot_memory(&mut env, memory)?),
    };
    module.with_snapshot(env, data)
}

/// Point the module's memory image at the snapshot's file.
fn snapshot_memory(
    env: &mut wasmtime_environ::Module,
    memory: &SnapshotMemory,
) -> Result<Arc<SnapshotData>> {
    ensure!(
        env.num_imported_memories == 0 && env.memories.len() == 1,
        "module {} does not define the component's one memory",
        memory.module
    );
    let index = MemoryIndex::from_u32(0);
    let MemoryInitialization::Static { map } = &env.memory_initialization else {
        bail!("the base component's memory is not initialized from a static image");
    };
    let Some(Some((offset, data_index))) = map.get(index).copied() else {
        bail!("the base component's memory has no image");
    };
    ensure!(
        env.runtime_data.len() == 1 && data_index == RuntimeDataIndex::from_u32(0),
        "the base component's module {} has data besides its memory image",
        memory.module
    );

    let file = memory.image.try_clone()?;
    let mmap = MmapVec::from_file(file)?;
    let offset = usize::try_from(offset)?;
    let page = crate::runtime::vm::host_page_size();
    ensure!(
        mmap.len() % page == 0 && offset % page == 0,
        "a snapshot image must be a whole number of pages"
    );
    ensure!(
        mmap.len() >= offset,
        "the snapshot image ({} bytes) ends before the base component's image starts ({offset})",
        mmap.len()
    );
    ensure!(
        mmap[..offset].iter().all(|b| *b == 0),
        "the snapshot has data below the base component's image ({offset} bytes)"
    );
    let pages_needed = (mmap.len() as u64).div_ceil(1 << env.memories[index].page_size_log2);
    ensure!(
        memory.pages >= pages_needed,
        "the snapshot's memory ({} pages) is smaller than its image",
        memory.pages
    );
    // Never below the base's: compiled code may assume that much memory
    // (bounds checks of constant addresses).
    let limits = &mut env.memories[index].limits;
    let min = memory.pages.max(limits.min);
    ensure!(
        limits.max.is_none_or(|max| min <= max),
        "the snapshot's memory ({min} pages) is over the memory's maximum"
    );
    limits.min = min;
    env.runtime_data[data_index] = u32::try_from(offset)?..u32::try_from(mmap.len())?;
    Ok(Arc::new(SnapshotData { mmap }))
}
