//! Bases: the linked component's code, compiled once per set of libraries.
//!
//! componentize-py links CPython, the SDK, the bindings and the installed
//! packages' extensions into a component, instruments it so its memory and
//! globals can be read, runs the worker's imports in it and captures them.
//! The linked component does not contain the worker (the worker's files are
//! read from a mounted folder while its imports run), so every worker with
//! the same libraries links the same bytes. A base, named by the hash of the
//! instrumented component, keeps
//!
//! - `instrumented.cwasm`: that component compiled for the build's engine,
//!   so a build runs the imports without compiling (1.2–1.5 s, even with
//!   Cranelift's per-function cache);
//! - `component.wasm`: one initialized component of that code (from the
//!   first build, its memory zeroed but for one byte: never read), which the
//!   runtime compiles once and starts every worker of the base from, with
//!   the worker's own snapshot
//!   (`taipan_guest::snapshot`); a build whose base has it skips making and
//!   compiling an initialized component of its own.

use std::cell::{Cell, RefCell};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use componentize_py::{Captured, CapturedValue, Plan};
use sha2::{Digest, Sha256};
use taipan_guest::snapshot::{
    GlobalMeta, GlobalValue, MemoryMeta, Snapshot, SnapshotMeta, base_component,
};
use wasmtime::Engine;
use wasmtime::component::Component;

const INSTRUMENTED_FILE: &str = "instrumented.cwasm";
/// Hashed into a link's name with the libraries, `BASE_FORMAT` and
/// `LINKER_DIGEST` (the sources that link and instrument, so a change there
/// makes builds link again): change it with the plan's meaning.
const LINK_FORMAT: &[u8] = b"taipan-link-1";
/// Hashed into a base's name with the instrumented component: a new layout
/// or rule for what a base holds makes new bases.
const BASE_FORMAT: &[u8] = b"taipan-base-3";

/// One build's use of the bases: what componentize-py's two hooks share.
pub(crate) struct BaseHooks<'a> {
    bases: &'a Path,
    snapshot_dir: &'a Path,
    /// Set by `compile_instrumented` or `reuse`, read by `captured`.
    base: RefCell<Option<String>>,
    /// The libraries' hash (`reuse`), naming the link's plan in the base.
    link: RefCell<Option<String>>,
    /// Whether this build made the base's initialized component.
    makes_component: Cell<bool>,
    /// Keep the build's own initialized component too.
    standalone: bool,
    /// When the current phase began (debug timings: where a build's time goes).
    phase: Cell<Instant>,
}

impl<'a> BaseHooks<'a> {
    /// `bases`: `<cache>/bases`; `snapshot_dir`: where the build's snapshot goes.
    pub(crate) fn new(bases: &'a Path, snapshot_dir: &'a Path, standalone: bool) -> Self {
        Self {
            standalone,
            bases,
            snapshot_dir,
            base: RefCell::new(None),
            link: RefCell::new(None),
            makes_component: Cell::new(false),
            phase: Cell::new(Instant::now()),
        }
    }

    /// Log how long the phase that ends now took, and start the next.
    fn phase_done(&self, what: &str) {
        let now = Instant::now();
        let took = now - self.phase.replace(now);
        tracing::debug!("{what} in {}ms", took.as_millis());
    }

    /// A base's instrumented component linked before from these libraries
    /// (`<base>/link-<hash>.plan`, written by `captured`), with the plan its
    /// state is captured by: the build skips linking, instrumenting and
    /// validating (~250 ms of a changed hello build). Only from a base
    /// that has its initialized component (this build will not make it).
    pub(crate) fn reuse(
        &self,
        engine: &Engine,
        libraries: &[(&str, bool, &[u8])],
    ) -> Result<Option<(Component, Plan)>> {
        if self.standalone {
            // Never reused (its world differs), and it keeps no plan.
            return Ok(None);
        }
        let mut hasher = Sha256::new();
        hasher.update(LINK_FORMAT);
        hasher.update(BASE_FORMAT);
        hasher.update(crate::embedded::LINKER_DIGEST.to_le_bytes());
        for (name, dl_openable, bytes) in libraries {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update([u8::from(*dl_openable)]);
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        }
        let link = taipan_guest::hex(&hasher.finalize()[..16]);
        *self.link.borrow_mut() = Some(link.clone());
        let plan_file = format!("link-{link}.plan");
        let entries = std::fs::read_dir(self.bases)
            .into_iter()
            .flatten()
            .flatten();
        for dir in entries.map(|e| e.path()) {
            let Ok(text) = std::fs::read_to_string(dir.join(&plan_file)) else {
                continue;
            };
            let Some(base) = dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if !base_component(self.bases, base).is_file() {
                continue;
            }
            let plan = match Plan::decode(&text) {
                Ok(plan) => plan,
                Err(e) => {
                    // Written again by this build (`keep_plan`).
                    let path = dir.join(&plan_file);
                    tracing::debug!("linking again: \"{}\": {e:#}", path.display());
                    std::fs::remove_file(&path).ok();
                    continue;
                }
            };
            // SAFETY: as in `compile_instrumented`: written by this engine's
            // configuration, checked on load.
            let component =
                match unsafe { Component::deserialize_file(engine, dir.join(INSTRUMENTED_FILE)) } {
                    Ok(component) => component,
                    Err(e) => {
                        tracing::debug!("linking again: {e:#}");
                        continue;
                    }
                };
            // A plan that does not read what the component exports (a file
            // cut short, or damaged) would capture a partial state.
            if let Err(e) = check_plan(engine, &component, &plan) {
                let path = dir.join(&plan_file);
                tracing::debug!("linking again: \"{}\": {e:#}", path.display());
                std::fs::remove_file(&path).ok();
                continue;
            }
            *self.base.borrow_mut() = Some(base.to_string());
            self.phase_done("reused the base's instrumented component");
            return Ok(Some((component, plan)));
        }
        Ok(None)
    }

    /// The instrumented component compiled for `engine`: the base's copy, or
    /// compiled now and kept in the base.
    pub(crate) fn compile_instrumented(&self, engine: &Engine, bytes: &[u8]) -> Result<Component> {
        self.phase_done("linked and instrumented");
        let mut hasher = Sha256::new();
        hasher.update(BASE_FORMAT);
        hasher.update(bytes);
        let base = taipan_guest::hex(&hasher.finalize()[..16]);
        let dir = self.bases.join(&base);
        *self.base.borrow_mut() = Some(base);
        let path = dir.join(INSTRUMENTED_FILE);
        if path.is_file() {
            // SAFETY: written by `precompile_component` below with an engine
            // of the same configuration; wasmtime checks the configuration
            // and version on load and refuses a mismatch (then we compile).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => {
                    self.phase_done("loaded the base's instrumented component");
                    return Ok(component);
                }
                Err(e) => tracing::debug!("recompiling \"{}\": {e:#}", path.display()),
            }
        }
        let compiled = engine
            .precompile_component(bytes)
            .map_err(anyhow::Error::from)
            .context("compiling the instrumented component")?;
        std::fs::create_dir_all(&dir).with_context(|| format!("creating \"{}\"", dir.display()))?;
        persist(&dir, &path, &compiled)?;
        // SAFETY: as above; just written by this engine.
        let component = unsafe { Component::deserialize_file(engine, &path) }?;
        self.phase_done("compiled the instrumented component");
        Ok(component)
    }

    /// Keep the captured state as the build's snapshot; ask componentize-py
    /// for the initialized component only if the base has none yet.
    pub(crate) fn captured(&self, state: &mut Captured, plan: &Plan) -> Result<bool> {
        self.phase_done("ran the imports and captured their state");
        let base = self
            .base
            .borrow()
            .clone()
            .context("the instrumented component was not compiled through the base")?;
        self.keep_plan(&base, plan);
        let meta = SnapshotMeta {
            base: base.clone(),
            memory: state.memory.as_ref().map(|(module, bytes)| MemoryMeta {
                module: *module,
                // As component-init sizes the initialized component's memory.
                pages: (bytes.len() / 65536) as u64 + 1,
                compressed: None,
            }),
            globals: state
                .globals
                .iter()
                .map(|&(module, global, value)| GlobalMeta {
                    module,
                    global,
                    value: match value {
                        CapturedValue::I32(v) => GlobalValue::I32(v),
                        CapturedValue::I64(v) => GlobalValue::I64(v),
                        CapturedValue::F32(v) => GlobalValue::F32(v),
                        CapturedValue::F64(v) => GlobalValue::F64(v),
                    },
                })
                .collect(),
        };
        let memory = state.memory.as_ref().map(|(_, bytes)| bytes.as_slice());
        // A standalone build keeps its image whole: it is made to be
        // carried elsewhere, where this base's reference is not.
        let reference_bases = (!self.standalone).then_some(self.bases);
        Snapshot::write(self.snapshot_dir, meta, memory, reference_bases)?;
        self.phase_done("wrote the snapshot");
        // A standalone build's component keeps its own bytes (see below),
        // so it never becomes the base's.
        let makes = !self.standalone && !base_component(self.bases, &base).is_file();
        self.makes_component.set(makes);
        if makes && let Some((_, bytes)) = &mut state.memory {
            // The base's image must start at address 0, because a snapshot
            // replaces it only from the base's first non-zero page (the
            // compiled code knows that offset). The linker puts the stack
            // first, growing down from 1 MiB, so a memory's first non-zero
            // byte is the deepest the stack went during the build: another
            // worker's imports may go deeper. Byte 0 (the stack's far end,
            // never reached) is set in the base's copy only; the base's own
            // data never runs, every worker starts from its snapshot.
            //
            // The rest of it is zeroed: never read, and the base's component
            // gets small. Its size stays: the other modules import the memory
            // with a minimum the defining module must meet.
            bytes.fill(0);
            if let Some(first) = bytes.first_mut() {
                *first = 1;
            }
        }
        Ok(makes || self.standalone)
    }

    /// Remember which base these libraries link to, and the plan (for
    /// `reuse`). A failure only costs later builds the link.
    fn keep_plan(&self, base: &str, plan: &Plan) {
        let Some(link) = self.link.borrow().clone() else {
            // A standalone build (`reuse` named no link).
            return;
        };
        let dir = self.bases.join(base);
        let path = dir.join(format!("link-{link}.plan"));
        if path.is_file() {
            return;
        }
        let kept = std::fs::create_dir_all(&dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| persist(&dir, &path, plan.encode().as_bytes()));
        if let Err(e) = kept {
            tracing::debug!("not keeping the link's plan \"{}\": {e:#}", path.display());
        }
    }

    /// After the build: move the initialized component it made (if it was
    /// asked to) into the base. A build that made one when another build
    /// had just stored its own drops it (both are the same code).
    pub(crate) fn finish(&self, output: &Path) -> Result<()> {
        if self.makes_component.get() || self.standalone {
            self.phase_done("made an initialized component");
        }
        if !self.makes_component.get() {
            // Nothing made, or a standalone build's own component: it stays.
            return Ok(());
        }
        let base = self.base.borrow().clone().context("no base")?;
        let target = base_component(self.bases, &base);
        let dir = self.bases.join(base);
        if !target.exists() {
            let tmp = tempfile::Builder::new()
                .prefix(".storing-")
                .tempfile_in(&dir)?
                .into_temp_path();
            std::fs::copy(output, &tmp).context("storing the base component")?;
            // Never replace one another build stored meanwhile: a runtime
            // may have compiled it already.
            if let Err(e) = tmp.persist_noclobber(&target)
                && !target.exists()
            {
                return Err(anyhow::Error::from(e.error).context("storing the base component"));
            }
        }
        std::fs::remove_file(output).ok();
        Ok(())
    }
}

/// Write `bytes` to `path` through a temporary file in `dir`, synced before
/// it gets its name: two builds at once never see each other's half-written
/// file, nor a build after a crash an empty one.
fn persist(dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".compiling-")
        .tempfile_in(dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The getters `plan` reads are exactly those the instrumented component
/// exports, with its types.
fn check_plan(engine: &Engine, component: &Component, plan: &Plan) -> Result<()> {
    use componentize_py::{MEMORY_GETTER, PlannedType, global_getter};
    use wasmtime::component::types::{ComponentItem, Type};
    // What every getter's name starts with (`MEMORY_GETTER`, `global_getter`).
    const GETTER: &str = "component-init-get-";
    let mut exported = std::collections::BTreeMap::new();
    for (name, item) in component.component_type().exports(engine) {
        if !name.starts_with(GETTER) {
            continue;
        }
        let ComponentItem::ComponentFunc(func) = item.ty else {
            anyhow::bail!("{name} is not a function");
        };
        let results: Vec<Type> = func.results().collect();
        exported.insert(name.to_string(), results);
    }
    let mut planned = std::collections::BTreeMap::new();
    if plan.memory_module.is_some() {
        planned.insert(MEMORY_GETTER.to_string(), None);
    }
    for &(module, global, ty) in &plan.globals {
        planned.insert(global_getter(module, global), Some(ty));
    }
    anyhow::ensure!(
        exported.keys().eq(planned.keys()),
        "it plans {} reads, the component exports {} getters",
        planned.len(),
        exported.len()
    );
    for (name, ty) in planned {
        let matches = match (ty, exported[&name].as_slice()) {
            (None, [Type::List(list)]) => matches!(list.ty(), Type::U8),
            (Some(PlannedType::I32), [Type::S32]) => true,
            (Some(PlannedType::I64), [Type::S64]) => true,
            (Some(PlannedType::F32), [Type::Float32]) => true,
            (Some(PlannedType::F64), [Type::Float64]) => true,
            _ => false,
        };
        anyhow::ensure!(matches, "{name} does not return what the plan reads");
    }
    Ok(())
}
