//! `taipan wheels list | build NAME[==VERSION]`: the WASI wheels Taipan
//! ships, and rebuilding one from its PyPI sdist with its recipe.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use taipan_build::CacheDirs;
use taipan_packages::recipes::{self, Recipe};
use taipan_packages::shipped;

#[derive(Args)]
pub struct WheelsArgs {
    #[command(subcommand)]
    command: WheelsCommand,
}

#[derive(Subcommand)]
enum WheelsCommand {
    /// The WASI wheels in this binary and the recipes that build them.
    List,
    /// Build a WASI wheel from its PyPI sdist with the recipe Taipan carries.
    ///
    /// Needs the recipe's toolchain (clang/wasm-ld 22 from Debian, Rust with
    /// wasm32-wasip2 for PyO3 packages); says what is missing before it starts.
    /// Users of the shipped wheels need none of this.
    Build(BuildWheelArgs),
}

#[derive(Args)]
struct BuildWheelArgs {
    /// The package: NAME or NAME==VERSION.
    package: String,
    /// Where the wheel goes.
    #[arg(long, short = 'o', default_value = "wasi-wheels")]
    out: PathBuf,
    /// Where sources, downloads and build trees go [default: the cache's recipes/].
    #[arg(long)]
    work: Option<PathBuf>,
    /// Parallel compile jobs (meson builds).
    #[arg(long, short = 'j', default_value_t = 2)]
    jobs: u32,
}

impl WheelsArgs {
    pub fn run(self) -> Result<()> {
        match self.command {
            WheelsCommand::List => list(),
            WheelsCommand::Build(args) => args.run(),
        }
    }
}

fn list() -> Result<()> {
    let recipes = recipes::all()?;
    println!(
        "{:<16} {:<9} {:<10} {:<10} shipped wheel sha256",
        "package", "version", "flow", "size"
    );
    for recipe in &recipes {
        let shipped = shipped::WASI_WHEELS
            .iter()
            .find(|(file, _)| *file == recipe.wheel_file_name());
        let (size, sha) = match shipped {
            Some((_, bytes)) => (
                format!("{:.1} MB", bytes.len() as f64 / 1e6),
                sha256_hex(bytes),
            ),
            None => ("-".into(), "(not shipped: a test or local recipe)".into()),
        };
        println!(
            "{:<16} {:<9} {:<10} {:<10} {sha}",
            recipe.name, recipe.version, recipe.flow, size
        );
    }
    Ok(())
}

impl BuildWheelArgs {
    fn run(self) -> Result<()> {
        // Everything is checked before anything is downloaded or compiled.
        let recipe = recipes::find(&self.package)?;
        if self.jobs == 0 {
            bail!("--jobs must be at least 1");
        }
        let cache = CacheDirs::from_env();
        let work = match self.work {
            Some(w) => std::path::absolute(w)?,
            None => cache.root.join("recipes"),
        };
        let out = std::path::absolute(&self.out)?;
        std::fs::create_dir_all(&work)
            .with_context(|| format!("creating \"{}\"", work.display()))?;
        let build_sh = recipes::write_to(&work.join("recipes"))?;
        // A recipe's wasi-requires (pandas needs numpy's headers) come from
        // the wheels this binary ships.
        let wasi_wheels = shipped::folder(&cache.packages())?;

        let script = |args: &[&str]| {
            let mut command = Command::new("bash");
            command
                .arg(&build_sh)
                .args(args)
                .env("WORK", &work)
                .env("JOBS", self.jobs.to_string());
            if let Some(dir) = &wasi_wheels {
                command.env("WASI_WHEELS", dir);
            }
            command
        };
        let check = script(&["--check", &recipe.folder])
            .output()
            .context("running bash (needed for recipe builds)\nhint: install bash")?;
        if !check.status.success() {
            let stderr = String::from_utf8_lossy(&check.stderr);
            let missing: Vec<&str> = stderr
                .lines()
                .filter_map(|l| l.strip_prefix("missing: "))
                .collect();
            if missing.is_empty() {
                bail!(
                    "checking the toolchain for {} failed:\n{stderr}",
                    recipe.name
                );
            }
            bail!(
                "building {} {} needs tools this machine lacks:\n{}\nhint: install them, then run \
                 `taipan wheels build {}=={}` again; the wheel Taipan ships needs none of this",
                recipe.name,
                recipe.version,
                missing
                    .iter()
                    .map(|m| format!("  - {m}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                recipe.name,
                recipe.version
            );
        }
        std::fs::create_dir_all(&out).with_context(|| format!("creating \"{}\"", out.display()))?;

        let log_path = work.join(format!("{}-build.log", recipe.folder));
        let started = Instant::now();
        let outcome = run_logged(
            script(&[&recipe.folder, &out.to_string_lossy()]),
            &log_path,
            &format!(
                "building {} {} ({} flow)",
                recipe.name, recipe.version, recipe.flow
            ),
        )?;
        if !outcome.success() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(25).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "building {} {} failed ({outcome}); the end of its log:\n{}\nhint: the whole log \
                 is \"{}\"",
                recipe.name,
                recipe.version,
                tail.join("\n"),
                log_path.display()
            );
        }
        report(
            &recipe,
            &out.join(recipe.wheel_file_name()),
            started.elapsed(),
        )
    }
}

/// Runs `command`, its output to `log` and its latest line on a spinner.
fn run_logged(mut command: Command, log: &Path, what: &str) -> Result<std::process::ExitStatus> {
    let file =
        std::fs::File::create(log).with_context(|| format!("creating \"{}\"", log.display()))?;
    let file = Arc::new(Mutex::new(file));
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running bash (needed for recipe builds)")?;
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {elapsed} {prefix}: {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_prefix(what.to_string());
    spinner.enable_steady_tick(Duration::from_millis(200));
    let pump = |stream: Box<dyn Read + Send>| {
        let (file, spinner) = (file.clone(), spinner.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
                spinner.set_message(line);
            }
        })
    };
    let out = pump(Box::new(child.stdout.take().expect("piped")));
    let err = pump(Box::new(child.stderr.take().expect("piped")));
    let status = child.wait()?;
    let _ = (out.join(), err.join());
    spinner.finish_and_clear();
    Ok(status)
}

fn report(recipe: &Recipe, wheel: &Path, elapsed: Duration) -> Result<()> {
    let bytes = std::fs::read(wheel)
        .with_context(|| format!("the build wrote no \"{}\"", wheel.display()))?;
    let sha = sha256_hex(&bytes);
    println!(
        "built {} in {:.0} s: \"{}\" ({:.1} MB)\nsha256 {sha}",
        recipe.name,
        elapsed.as_secs_f64(),
        wheel.display(),
        bytes.len() as f64 / 1e6
    );
    match &recipe.built_sha256 {
        Some(expected) if *expected == sha => {
            println!("reproduced: the same bytes as the wheel this recipe built for Taipan")
        }
        Some(expected) => {
            let tools: Vec<String> = recipe
                .toolchain
                .iter()
                .map(|(k, v)| format!("  {k}: {v}"))
                .collect();
            println!(
                "note: the recipe's own build gave sha256 {expected}; different bytes usually \
                 mean a different toolchain. It was built with:\n{}",
                tools.join("\n")
            );
        }
        None => {}
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    taipan_packages::lock::hex(&sha2::Sha256::digest(bytes))
}
