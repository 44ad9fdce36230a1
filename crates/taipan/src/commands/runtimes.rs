//! `taipan runtimes`: the Python runtimes and their support windows.

use anyhow::Result;
use clap::Args;
use taipan_config::RUNTIMES;

#[derive(Args)]
pub struct RuntimesArgs {}

impl RuntimesArgs {
    pub fn run(self) -> Result<()> {
        let today = jiff::Zoned::now().date();
        println!(
            "{:<14} {:<7} {:<13} {:<16} {:<26} source",
            "runtime", "python", "default from", "supported until", "flags"
        );
        for runtime in RUNTIMES {
            let until = runtime.supported_until();
            let status = if until < today { " (expired)" } else { "" };
            println!(
                "{:<14} {:<7} {:<13} {:<16} {:<26} {}",
                runtime.id,
                runtime.python_version,
                runtime.default_from.to_string(),
                format!("{until}{status}"),
                runtime.flags.join(","),
                runtime.source
            );
        }
        Ok(())
    }
}
