//! `build`: from a resolved config to a cached, pre-initialized component.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use taipan_config::WorkerConfig;
use wasmtime::CacheStore;
use wasmtime_wasi::{DirPerms, FilePerms};

use crate::artifact::{Artifact, COMPLETE_FILE, COMPONENT_FILE, PYTHON_PATH_DIRS};
use crate::base::BaseHooks;
use crate::contract::{BUILD_ERROR_END as ERROR_END, BUILD_ERROR_START as ERROR_START};
use crate::embedded::{self, WIT_FILES};
use crate::source;
use crate::{CacheDirs, PythonFiles};
use taipan_packages::{Installed, SourceOptions};

/// The module componentize-py runs at build time (python/taipan_bootstrap.py).
const APP_MODULE: &str = "taipan_bootstrap";
/// The world Taipan's own runtime runs: wasi:http plus Taipan's host calls.
const WORLD: &str = "taipan:worker/worker";
/// A standalone build's world: wasi:http alone, for any wasi:http host.
const PORTABLE_WORLD: &str = "taipan:worker/portable";
/// Where a build's guest sees the bytecode folder (crate::bytecode).
const BYTECODE_MOUNT: &str = "pycache";

/// Why a build failed: the worker's code, or Taipan itself.
#[derive(Debug)]
pub enum BuildError {
    /// A mistake in the worker (syntax error, failing import): the message is
    /// for the user, with file:line and the Python traceback.
    Worker(String),
    Internal(anyhow::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Worker(message) => write!(f, "the worker failed to build:\n{message}"),
            BuildError::Internal(e) => write!(f, "building the worker failed: {e:#}"),
        }
    }
}

impl std::error::Error for BuildError {}

impl From<anyhow::Error> for BuildError {
    fn from(e: anyhow::Error) -> Self {
        BuildError::Internal(e)
    }
}

#[derive(Debug)]
pub struct BuildOutcome {
    pub artifact: Artifact,
    /// False when an identical build was found in the cache.
    pub built: bool,
    pub elapsed: Duration,
    /// The installed packages, as "name version".
    pub packages: Vec<String>,
}

/// How a build gets the worker's packages.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub packages: SourceOptions,
    /// Write `taipan.lock` into the project (not for an uploaded bundle).
    pub write_lock: bool,
    /// Also keep the worker's own initialized component (`component.wasm`)
    /// beside its snapshot, for other runtimes (`taipan build --standalone`).
    pub standalone: bool,
    /// What the process already has that builds reuse.
    pub caches: BuildCaches,
}

/// The process's caches a build reuses (taipan-runtime's `Runtime` holds
/// them; the builder does not depend on the runtime).
#[derive(Debug, Clone)]
pub struct BuildCaches {
    /// Cranelift's per-function cache, for the engine that runs the worker's
    /// imports at build time (`Runtime::compile_cache`); without it that
    /// engine compiles all of CPython again on every build.
    pub compile: Arc<dyn CacheStore>,
    /// The standard library already unpacked (`python_files`), mounted
    /// read-only at build time instead of unpacking a copy per build.
    pub python_stdlib: PathBuf,
    /// Where bytecode of the SDK and the standard library is kept, one
    /// folder per Taipan version: written once by a build of Taipan's own
    /// (crate::bytecode), read-only to every worker's build, so CPython does
    /// not compile those modules on each build.
    pub bytecode: PathBuf,
    /// The compiled code workers with the same libraries share
    /// (crate::base): a build keeps only its snapshot.
    pub bases: PathBuf,
}

impl BuildCaches {
    /// `bases`: where builds keep and find bases (the runtime's
    /// `bases_dir`, which loads them).
    pub fn new(
        compile: Arc<dyn CacheStore>,
        python: &PythonFiles,
        cache: &CacheDirs,
        bases: &Path,
    ) -> Self {
        Self {
            compile,
            python_stdlib: python.stdlib.clone(),
            bytecode: cache.bytecode(),
            bases: bases.to_path_buf(),
        }
    }
}

/// Build `config` into `builds_dir/<hash>/`, or reuse what is there.
///
/// Blocking and CPU-heavy (seconds): call it from a blocking thread.
pub fn build(
    config: &WorkerConfig,
    builds_dir: &Path,
    options: &BuildOptions,
) -> Result<BuildOutcome, BuildError> {
    let started = Instant::now();
    let installed =
        taipan_packages::sync(&config.project_dir, &options.packages, options.write_lock).map_err(
            |e| BuildError::Worker(format!("installing the worker's packages failed:\n{e:#}")),
        )?;
    let mut files = source::files(&config.source_dir)?;
    let vendored_dir = config.project_dir.join(source::VENDORED_DIR);
    let vendored = if vendored_dir.is_dir() {
        source::files(&vendored_dir)?
    } else {
        Vec::new()
    };
    if config.source_dir == config.project_dir {
        // `main` at the top: the vendored folder is inside the source tree.
        files.retain(|(rel, _)| !rel.starts_with(&format!("{}/", source::VENDORED_DIR)));
    }
    let id = build_id(config, &files, &vendored, installed.as_ref(), options)?;
    let dir = builds_dir.join(&id);
    if let Some(artifact) = Artifact::open(&dir).filter(|a| has_base(a, options)) {
        return Ok(BuildOutcome {
            artifact,
            built: false,
            elapsed: started.elapsed(),
            packages: package_names(installed.as_ref()),
        });
    }

    std::fs::create_dir_all(builds_dir)
        .with_context(|| format!("creating the build folder \"{}\"", builds_dir.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(builds_dir)
        .context("creating a staging folder for the build")?;
    let stage = staging.path();
    let [sdk, gen_dir, src, packages] = PYTHON_PATH_DIRS.map(|d| stage.join(d));
    embedded::write_sdk(&sdk)?;
    write_build_module(
        &gen_dir,
        &config.main_module,
        &config.source_display(),
        config.snapshot.as_str(),
    )?;
    source::copy_into(&files, &src)?;
    std::fs::create_dir_all(&packages).context("creating the packages folder")?;
    if let Some(installed) = &installed {
        link_tree(&installed.site, &packages)
            .context("copying the installed packages into the build")?;
    }
    // Vendored files win over installed ones of the same path. The installed
    // ones are hard links into the shared site: unlink before copying, never
    // write through them.
    for (rel, _) in &vendored {
        let target = packages.join(rel);
        if target.exists() {
            std::fs::remove_file(&target).context("replacing an installed file")?;
        }
    }
    source::copy_into(&vendored, &packages).context("copying python_modules into the build")?;
    let wit = stage.join("wit");
    embedded::write_files(WIT_FILES, &wit, None)?;

    let python_path = [sdk.as_path(), &gen_dir, &src, &packages];
    let bytecode = crate::bytecode::trusted(options);
    let bytecode = bytecode.as_deref().map(|dir| (dir, Access::ReadOnly));
    componentize(&python_path, &wit, stage, options, bytecode).map_err(|e| {
        let paths = [
            (0, "(taipan sdk)"),
            (1, "(taipan build)"),
            (2, config.source_display().as_str()),
            (3, "(packages)"),
        ]
        .map(|(i, p)| (format!("/{i}/"), format!("{p}/")));
        classify(e, &paths)
    })?;
    std::fs::remove_dir_all(&wit).ok();
    std::fs::write(stage.join(COMPLETE_FILE), id.as_bytes()).context("finishing the build")?;

    let staged = staging.keep();
    if dir.exists() && Artifact::open(&dir).is_none_or(|a| !has_base(&a, options)) {
        // A build whose base is gone (a cleared cache): replaced by this one.
        std::fs::remove_dir_all(&dir).ok();
    }
    if let Err(e) = std::fs::rename(&staged, &dir) {
        std::fs::remove_dir_all(&staged).ok();
        // Someone else finished the same build first; theirs is identical.
        if Artifact::open(&dir).is_none() {
            return Err(anyhow::Error::from(e).context("storing the build").into());
        }
    }
    let artifact = Artifact::open(&dir).context("the finished build is incomplete")?;
    Ok(BuildOutcome {
        artifact,
        built: true,
        elapsed: started.elapsed(),
        packages: package_names(installed.as_ref()),
    })
}

/// Whether the base `artifact` starts from is there, with the reference
/// image its memory image is compressed against (or it needs none: a build
/// with a component of its own).
fn has_base(artifact: &Artifact, options: &BuildOptions) -> bool {
    let bases = &options.caches.bases;
    artifact.component().is_file()
        || artifact.snapshot().is_none_or(|snapshot| {
            snapshot.meta().is_ok_and(|meta| {
                taipan_guest::snapshot::base_component(bases, &meta.base).is_file()
                    && meta.reference_image(bases).is_none_or(|r| r.is_file())
            })
        })
}

fn package_names(installed: Option<&Installed>) -> Vec<String> {
    installed.map_or_else(Vec::new, |i| {
        i.packages
            .iter()
            .map(|p| format!("{} {}", p.name, p.version))
            .collect()
    })
}

/// The content hash naming a build: every input that changes the output.
fn build_id(
    config: &WorkerConfig,
    files: &[(String, PathBuf)],
    vendored: &[(String, PathBuf)],
    installed: Option<&Installed>,
    options: &BuildOptions,
) -> Result<String> {
    let mut hasher = Sha256::new();
    if let Some(installed) = installed {
        hasher.update(b"packages");
        hasher.update(&installed.digest);
    }
    hasher.update(env!("CARGO_PKG_VERSION"));
    if options.standalone {
        hasher.update(b"standalone");
    }
    hasher.update(embedded::digest());
    for field in [
        config.runtime.id,
        config.snapshot.as_str(),
        &config.main_module,
        &config.source_display(),
    ] {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field);
    }
    source::hash_into(&mut hasher, files)?;
    if !vendored.is_empty() {
        hasher.update(b"python_modules");
        source::hash_into(&mut hasher, vendored)?;
    }
    Ok(embedded::hex(&hasher.finalize()[..16]))
}

/// Mirror `from` into `to`: hard links where the filesystem allows (the
/// installed set is immutable), copies elsewhere.
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            link_tree(&source, &target)?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target)?;
        }
    }
    Ok(())
}

/// `_taipan_build.py`: what the bootstrap needs to know at build time.
pub(crate) fn write_build_module(
    dir: &Path,
    main: &str,
    prefix: &str,
    snapshot: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let module = format!(
        "MAIN = {main:?}\nSOURCE_ROOT = \"/2\"\nDISPLAY_PREFIX = {prefix:?}\nSNAPSHOT = {snapshot:?}\n",
    );
    std::fs::write(dir.join("_taipan_build.py"), module)?;
    Ok(())
}

/// Whether a build's guest may write into a mounted folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

/// Link and pre-initialize with the componentize-py crate, keeping the
/// result as a snapshot in `<stage>/snapshot` on a base (crate::base).
///
/// Only the folders given are on the Python path: the build machine's own
/// Python, `VIRTUAL_ENV` and site-packages are never consulted (those are
/// features of componentize-py's CLI, which Taipan does not use).
/// `bytecode`: the folder CPython keeps bytecode in (`PYTHONPYCACHEPREFIX`).
pub(crate) fn componentize(
    python_path: &[&Path],
    wit: &Path,
    stage: &Path,
    options: &BuildOptions,
    bytecode: Option<(&Path, Access)>,
) -> Result<()> {
    let output = stage.join(COMPONENT_FILE);
    let snapshot_dir = stage.join(taipan_guest::snapshot::SNAPSHOT_DIR);
    let bases = BaseHooks::new(&options.caches.bases, &snapshot_dir, options.standalone);
    let compile_instrumented =
        |engine: &wasmtime::Engine, bytes: &[u8]| bases.compile_instrumented(engine, bytes);
    let captured = |state: &mut componentize_py::Captured, plan: &componentize_py::Plan| {
        bases.captured(state, plan)
    };
    let reuse = |engine: &wasmtime::Engine, libraries: &[(&str, bool, &[u8])]| {
        bases.reuse(engine, libraries)
    };
    let python_path: Vec<String> = python_path
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let python_path: Vec<&str> = python_path.iter().map(String::as_str).collect();
    let empty = HashMap::new();
    let configure_engine = |config: &mut wasmtime::Config| -> Result<()> {
        config.enable_incremental_compilation(options.caches.compile.clone())?;
        // The runtime's engine checks the epoch in every loop and call; so
        // does this one, so that both compile every function to the same
        // machine code and the runtime's compile of the finished component
        // finds it in the cache (the snapshot changes data, not code).
        config.epoch_interruption(true);
        Ok(())
    };
    let configure_wasi = |wasi: &mut wasmtime_wasi::WasiCtxBuilder| -> Result<()> {
        if let Some((dir, access)) = bytecode {
            let (dirs, files) = match access {
                Access::ReadOnly => (DirPerms::READ, FilePerms::READ),
                Access::ReadWrite => (DirPerms::all(), FilePerms::all()),
            };
            wasi.env("PYTHONPYCACHEPREFIX", format!("/{BYTECODE_MOUNT}"))
                .preopened_dir(dir, BYTECODE_MOUNT, dirs, files)?;
        }
        Ok(())
    };
    let generator = componentize_py::ComponentGenerator {
        wit_paths: &[wit],
        worlds: &[if options.standalone {
            PORTABLE_WORLD
        } else {
            WORLD
        }],
        features: &[],
        all_features: false,
        world_module: None,
        python_path: &python_path,
        module_worlds: &[],
        app_name: APP_MODULE,
        output_path: &output,
        add_to_linker: None,
        stub_wasi: false,
        import_interface_names: &empty,
        export_interface_names: &empty,
        full_names: false,
        intersect_world: None,
        configure_engine: Some(&configure_engine),
        python_stdlib: Some(&options.caches.python_stdlib),
        // The worker's code runs in the build: it must not change the
        // standard library, the SDK or the installed packages (hard links
        // into a folder every build with the same lock shares).
        read_only_sources: true,
        configure_wasi: Some(&configure_wasi),
        compile_instrumented: Some(&compile_instrumented),
        captured: Some(&captured),
        reuse_instrumented: Some(&reuse),
    };
    // The generator's future is not Send: drive it on this thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(generator.generate())?;
    bases.finish(&output)
}

/// Tell the worker's mistakes (reported by the bootstrap between markers)
/// from Taipan's own failures, and show guest paths as project paths.
fn classify(error: anyhow::Error, paths: &[(String, String)]) -> BuildError {
    let text = format!("{error:?}");
    let unmap = |s: &str| {
        paths
            .iter()
            .fold(s.to_string(), |s, (guest, host)| s.replace(guest, host))
    };
    if let Some(start) = text.find(ERROR_START) {
        let rest = &text[start + ERROR_START.len()..];
        let message = rest.split(ERROR_END).next().unwrap_or(rest);
        return BuildError::Worker(unmap(message.trim_end()));
    }
    if text.contains("Traceback (most recent call last)") {
        return BuildError::Worker(unmap(&text));
    }
    BuildError::Internal(anyhow::anyhow!(unmap(&text)))
}
