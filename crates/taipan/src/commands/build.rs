//! `taipan build [DIR]`: build and compile the snapshot, report the times.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use clap::Args;
use taipan_runtime::engine::{PoolSize, fmt_duration};

#[derive(Args)]
pub struct BuildArgs {
    /// The worker's project folder, or its config file.
    #[arg(default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    env: super::EnvArgs,
    #[command(flatten)]
    packages: super::PackageArgs,
    /// Also write the worker as one initialized component
    /// (`component.wasm` in the build folder) that any component runtime
    /// can serve, not only a snapshot on Taipan's shared base.
    #[arg(long)]
    standalone: bool,
}

impl BuildArgs {
    pub fn run(self) -> Result<()> {
        let config = self.env.load(&self.dir)?;
        for warning in &config.warnings {
            println!("warning: {warning}");
        }
        let builds = config.project_dir.join(".taipan").join("builds");
        let runtime = super::runtime(PoolSize::default())?;
        let options = taipan_build::BuildOptions {
            packages: self.packages.sources(None)?,
            write_lock: true,
            standalone: self.standalone,
            caches: taipan_build::BuildCaches::new(
                runtime.compile_cache(),
                &runtime.python,
                &runtime.cache,
                runtime.bases_dir(),
            ),
        };
        let outcome =
            taipan_build::build(&config, &builds, &options).map_err(|e| anyhow!("{e}"))?;
        let what = if outcome.built {
            "built"
        } else {
            "found in the cache"
        };
        if !outcome.packages.is_empty() {
            println!("packages: {}", outcome.packages.join(", "));
        }
        println!(
            "snapshot {what} in {}: {}",
            fmt_duration(outcome.elapsed),
            outcome.artifact.dir.display()
        );
        let started = Instant::now();
        runtime.load_artifact(&outcome.artifact)?;
        println!("compiled in {}", fmt_duration(started.elapsed()));
        Ok(())
    }
}
