//! The process-wide wasmtime engine and everything that must match it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use std::collections::HashMap;
use taipan_guest::{CacheDirs, PythonFiles};

use taipan_guest::Artifact;
use taipan_guest::snapshot::{GlobalValue, base_component};
use wasmtime::component::{Component, Snapshot, SnapshotGlobal, SnapshotMemory, SnapshotValue};
use wasmtime::{CacheStore, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::compile_cache::CompileCache;
use crate::limits::{EPOCH_TICK, MIB};

/// Process-lifetime state: one engine for every worker.
#[derive(Clone)]
pub struct Runtime {
    pub engine: Engine,
    pub cache: CacheDirs,
    pub python: PythonFiles,
    compile_cache: Arc<CompileCache>,
    /// Where bases are kept (`taipan_guest::snapshot`): the cache's by
    /// default; a server keeps them in its data dir beside the builds that
    /// start from them (`with_bases_dir`).
    bases_dir: PathBuf,
    /// Bases loaded so far, by name: every worker on a base shares its code.
    bases: Arc<std::sync::Mutex<HashMap<String, Component>>>,
}

/// Core instances one sandbox may have: its modules and the compiled
/// extensions linked in (numpy and pandas together need ~130).
pub const MAX_CORE_INSTANCES: u32 = 256;

/// Bytes of a linear memory a pooled slot keeps resident between sandboxes
/// when the kernel reports which pages a sandbox wrote (`PAGEMAP_SCAN`,
/// Linux ≥ 6.7). Only those pages are copied back from the snapshot, and
/// the next sandbox in the slot (slots go to the module that used them
/// last) writes to pages it already owns: no copy-on-write faults, no TLB
/// shootdowns across the process's threads, no `madvise`. Under load these
/// were nearly half of a fresh sandbox's cost (see docs/performance.md).
/// Pages past this many are given back with `madvise`, as before.
pub const KEEP_RESIDENT_SCANNED: usize = 16 * MIB;
/// Without `PAGEMAP_SCAN` wasmtime memsets the lowest `keep_resident` bytes
/// of a slot whether they were written or not: keep that small.
pub const KEEP_RESIDENT_UNSCANNED: usize = MIB;

/// A build's compiled code: what a worker keeps to make its component
/// again (after it was dormant) without going through the runtime's bases.
#[derive(Clone)]
pub enum Code {
    /// A build with a component of its own, loaded again from its
    /// compiled file each time (so that dropping it, when the worker is
    /// dormant, gives its pooled slots back).
    Own { runtime: Runtime, path: PathBuf },
    /// A base's machine code and the build's snapshot.
    OnBase {
        base: Component,
        snapshot: taipan_guest::snapshot::Snapshot,
        meta: taipan_guest::snapshot::SnapshotMeta,
        bases_dir: PathBuf,
        artifact_dir: PathBuf,
    },
}

impl Code {
    pub fn engine(&self) -> &Engine {
        match self {
            Code::Own { runtime, .. } => &runtime.engine,
            Code::OnBase { base, .. } => base.engine(),
        }
    }

    /// The component the sandboxes run: the base's code with the snapshot's
    /// memory image (expanded into an unnamed file) and globals. Blocking.
    pub fn component(&self) -> Result<Component> {
        let (base, snapshot, meta, bases_dir, artifact_dir) = match self {
            Code::Own { runtime, path } => return runtime.load_component(path),
            Code::OnBase {
                base,
                snapshot,
                meta,
                bases_dir,
                artifact_dir,
            } => (base, snapshot, meta, bases_dir, artifact_dir),
        };
        let memory = match &meta.memory {
            None => None,
            Some(memory) => {
                let image = snapshot.memory_file(meta, bases_dir)?;
                Some(SnapshotMemory {
                    module: memory.module,
                    image,
                    pages: memory.pages,
                })
            }
        };
        let globals = meta
            .globals
            .iter()
            .map(|g| SnapshotGlobal {
                module: g.module,
                global: g.global,
                value: match g.value {
                    GlobalValue::I32(v) => SnapshotValue::I32(v),
                    GlobalValue::I64(v) => SnapshotValue::I64(v),
                    GlobalValue::F32(v) => SnapshotValue::F32(v),
                    GlobalValue::F64(v) => SnapshotValue::F64(v),
                },
            })
            .collect();
        base.with_snapshot(&Snapshot { memory, globals })
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!(
                    "starting the build \"{}\" from its base {}",
                    artifact_dir.display(),
                    meta.base
                )
            })
    }
}

/// Sizing of the pooling allocator: slots are reserved address space, not memory.
#[derive(Debug, Clone)]
pub struct PoolSize {
    /// Sandboxes that can exist at once across all workers.
    pub sandboxes: u32,
    /// Largest linear memory any sandbox may grow to.
    pub max_memory: usize,
}

impl Default for PoolSize {
    fn default() -> Self {
        Self {
            sandboxes: 64,
            max_memory: 512 * MIB,
        }
    }
}

impl Runtime {
    /// `python`: the unpacked standard library sandboxes mount (the
    /// builder's `python_files`).
    pub fn new(cache: CacheDirs, python: PythonFiles, pool: PoolSize) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.memory_init_cow(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let compile_cache = Arc::new(CompileCache::open(&cache.compile_cache()));
        remove_in_background(cache.legacy_compile_cache());
        config.enable_incremental_compilation(compile_cache.clone())?;

        // A componentize-py component is a handful of core modules (libc,
        // libpython, the runtime, bindings, the WASI adapter) sharing memory,
        // plus about two per compiled extension module: numpy alone makes 42,
        // numpy and pandas ~130. Slots are reserved address space.
        let mut pooling = PoolingAllocationConfig::default();
        pooling
            .total_component_instances(pool.sandboxes)
            .total_core_instances(pool.sandboxes * 64)
            .max_core_instances_per_component(MAX_CORE_INSTANCES)
            .total_memories(pool.sandboxes * 4)
            .max_memories_per_component(4)
            .max_memories_per_module(1)
            .total_tables(pool.sandboxes * 16)
            .max_tables_per_component(16)
            .max_tables_per_module(2)
            .table_elements(64 * 1024)
            .max_memory_size(pool.max_memory)
            .max_core_instance_size(4 * MIB)
            .max_component_instance_size(4 * MIB)
            .table_keep_resident(MIB);
        if PoolingAllocationConfig::is_pagemap_scan_available() {
            pooling
                .pagemap_scan(wasmtime::Enabled::Yes)
                .linear_memory_keep_resident(KEEP_RESIDENT_SCANNED);
        } else {
            pooling.linear_memory_keep_resident(KEEP_RESIDENT_UNSCANNED);
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling));
        let engine = Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("configuring the WebAssembly engine")?;

        spawn_epoch_ticker(engine.weak());
        Ok(Self {
            engine,
            bases_dir: cache.bases(),
            cache,
            python,
            compile_cache,
            bases: Arc::default(),
        })
    }

    /// Keep bases in `dir` instead of the cache: a server's deployed builds
    /// must not depend on a folder its user may clear.
    pub fn with_bases_dir(mut self, dir: PathBuf) -> Self {
        self.bases_dir = dir;
        self.bases = Arc::default();
        self
    }

    /// Where bases are kept (builds write them, `load_artifact` reads them).
    pub fn bases_dir(&self) -> &Path {
        &self.bases_dir
    }

    /// Cranelift's per-function cache, for the build's own engine (the one
    /// that runs a worker's imports before the snapshot) to share.
    pub fn compile_cache(&self) -> Arc<dyn CacheStore> {
        self.compile_cache.clone()
    }

    /// Names the machine code this engine makes and loads: two processes
    /// with the same fingerprint can share compiled components (wasmtime
    /// still checks a loaded one and refuses a mismatch).
    pub fn compiled_fingerprint(&self) -> String {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }

    /// What the sandboxes of `artifact` run: its base's machine code starting
    /// from its snapshot (`taipan_guest::snapshot`), or, for a build made
    /// before bases, its own component.
    pub fn load_artifact(&self, artifact: &Artifact) -> Result<Component> {
        self.artifact_code(artifact)?.component()
    }

    /// `artifact`'s compiled code (compiled once per machine, loaded once
    /// per process), from which [`Code::component`] makes what its
    /// sandboxes run.
    pub fn artifact_code(&self, artifact: &Artifact) -> Result<Code> {
        // A build with its own component: compiled (or its machine code
        // loaded) now, so that a compile, or its failure, happens here and
        // not at a dormant worker's first request.
        let own_code = |path: PathBuf| -> Result<Code> {
            self.load_component(&path)?;
            Ok(Code::Own {
                runtime: self.clone(),
                path,
            })
        };
        let Some(snapshot) = artifact.snapshot() else {
            return own_code(artifact.component());
        };
        let meta = snapshot.meta()?;
        let own = artifact.component();
        if own.is_file() && !base_component(&self.bases_dir, &meta.base).is_file() {
            // A standalone build (`taipan build --standalone`) whose base
            // was never made: its own component has the same snapshot.
            return own_code(own);
        }
        let base = self.base(&meta.base)?;
        // Checked now (a stat), not when a dormant worker first links.
        if let Some(reference) = meta.reference_image(&self.bases_dir)
            && !reference.is_file()
        {
            anyhow::bail!(
                "the reference image this build's memory is compressed against is missing: \"{}\"\n\
                 hint: build the worker again (`taipan deploy`, `taipan build`)",
                reference.display()
            );
        }
        Ok(Code::OnBase {
            base,
            snapshot,
            meta,
            bases_dir: self.bases_dir.clone(),
            artifact_dir: artifact.dir.clone(),
        })
    }

    /// Drop the loaded bases `keep` does not name (their folders were
    /// removed: a worker still on one holds its own copy of its code).
    /// The mapped machine code, and the disk it held, go with the last user.
    pub fn forget_bases(&self, keep: &std::collections::HashSet<String>) {
        let mut bases = self.bases.lock().unwrap_or_else(|e| e.into_inner());
        bases.retain(|name, _| keep.contains(name));
    }

    /// The base named `name` (checked by `Snapshot::meta`), compiled (once
    /// per machine) and loaded (once per process).
    fn base(&self, name: &str) -> Result<Component> {
        // Held while a base compiles: a second worker of the same base
        // waits for it rather than compiling it again.
        let mut bases = self.bases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(base) = bases.get(name) {
            return Ok(base.clone());
        }
        let path = base_component(&self.bases_dir, name);
        if !path.is_file() {
            anyhow::bail!(
                "the base this build starts from is missing: \"{}\"\n\
                 hint: build the worker again (`taipan deploy`, `taipan build`)",
                path.display()
            );
        }
        let base = self.load_component(&path)?;
        bases.insert(name.to_string(), base.clone());
        Ok(base)
    }

    /// Load the compiled form of `component_path`, compiling it once and
    /// keeping the result beside it (`.cwasm`) for the next start.
    pub fn load_component(&self, component_path: &Path) -> Result<Component> {
        let compiled = component_path.with_extension("cwasm");
        if compiled.exists() {
            // SAFETY: the file is one this engine configuration wrote (below);
            // wasmtime checks the engine's settings and version on load and
            // refuses a mismatch, in which case we recompile.
            match unsafe { Component::deserialize_file(&self.engine, &compiled) } {
                Ok(component) => return Ok(component),
                Err(e) => tracing::debug!("recompiling {}: {e:#}", compiled.display()),
            }
        }
        let wasm = std::fs::read(component_path)
            .with_context(|| format!("reading \"{}\"", component_path.display()))?;
        let bytes = self
            .engine
            .precompile_component(&wasm)
            .map_err(anyhow::Error::from)
            .context("compiling the worker")?;
        // A temporary file of its own: two compiles of one component at
        // once (a cluster node prefetching while it loads) must not write
        // into each other's file.
        let dir = compiled.parent().context("a component without a folder")?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".compiling-")
            .tempfile_in(dir)?;
        std::io::Write::write_all(&mut tmp, &bytes)?;
        tmp.persist(&compiled).map_err(|e| e.error)?;
        drop((wasm, bytes));
        release_freed_memory();
        // SAFETY: as above; we just wrote it with this engine.
        unsafe { Component::deserialize_file(&self.engine, &compiled) }.map_err(anyhow::Error::from)
    }
}

/// Give the memory a build and a compile freed back to the system.
///
/// Cranelift and the build (linking, parsing and snapshotting a ~30 MB
/// component) allocate hundreds of MiB on many threads; glibc keeps what they
/// free in its per-thread arenas, so a server that deployed once held
/// ~300 MiB it would never use again (measured: 330 MiB of anonymous memory
/// after one deploy of hello). `malloc_trim` returns the free pages of every
/// arena. Called after each compile and each build (on a base no compile
/// follows a build), on a blocking thread.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Remove a folder Taipan no longer uses, without delaying start-up (the
/// per-function cache of earlier versions held ~15,000 files).
fn remove_in_background(dir: PathBuf) {
    if dir.is_dir() {
        std::thread::spawn(move || {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::debug!("removing \"{}\": {e}", dir.display());
            }
        });
    }
}

/// Advance the epoch every tick while the engine lives: a running request
/// whose deadline (in ticks) passes traps at its next loop or call.
fn spawn_epoch_ticker(engine: wasmtime::EngineWeak) {
    std::thread::Builder::new()
        .name("taipan-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// How long compiling took, for progress reports.
pub fn fmt_duration(d: Duration) -> String {
    if d.as_secs() >= 1 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
