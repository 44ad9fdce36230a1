//! The `taipan` command: parses arguments and dispatches to one file per subcommand.

use clap::{Parser, Subcommand};

mod commands;

#[derive(Parser)]
#[command(name = "taipan", version, about = "Python Workers, self-hosted")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a worker locally, rebuilding on edits.
    Dev(commands::dev::DevArgs),
    /// Build a worker's snapshot without serving it.
    Build(commands::build::BuildArgs),
    /// Time a worker in-process: build, fresh sandboxes, warm requests.
    Bench(commands::bench::BenchArgs),
    /// List the Python runtimes and the compatibility dates that select them.
    Runtimes(commands::runtimes::RuntimesArgs),
}

fn main() -> std::process::ExitCode {
    commands::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => args.run(),
        Command::Build(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Runtimes(args) => args.run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
