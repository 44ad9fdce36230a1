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
    /// Run the multi-tenant server: many workers, deployed through its admin API.
    Serve(commands::serve::ServeArgs),
    /// Upload a project to a `taipan serve`, which builds and switches to it.
    Deploy(commands::deploy::DeployArgs),
    /// List a deployed worker's versions.
    Versions(commands::versions::VersionsArgs),
    /// Serve an earlier version of a deployed worker again.
    Rollback(commands::versions::RollbackArgs),
    /// Remove a deployed worker.
    Delete(commands::versions::DeleteArgs),
    /// List the nodes of a cluster and whether each is alive.
    Nodes(commands::nodes::NodesArgs),
    /// Stream a deployed worker's requests and output as they happen.
    Tail(commands::versions::TailArgs),
    /// Build a worker's snapshot without serving it.
    Build(commands::build::BuildArgs),
    /// Time a worker in-process: build, fresh sandboxes, warm requests.
    Bench(commands::bench::BenchArgs),
    /// Set, list or delete a deployed worker's secrets.
    Secret(commands::secret::SecretArgs),
    /// Run SQL and migrations against a D1 database's local state.
    D1(commands::d1::D1Args),
    /// List queues and their backlog, or send a message to one.
    Queues(commands::queues::QueuesArgs),
    /// List the Python runtimes and the compatibility dates that select them.
    Runtimes(commands::runtimes::RuntimesArgs),
    /// The compiled (WASI) packages Taipan ships, and rebuilding one from source.
    Wheels(commands::wheels::WheelsArgs),
}

fn main() -> std::process::ExitCode {
    commands::init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => args.run(),
        Command::Build(args) => args.run(),
        Command::Serve(args) => args.run(),
        Command::Deploy(args) => args.run(),
        Command::Versions(args) => args.run(),
        Command::Rollback(args) => args.run(),
        Command::Delete(args) => args.run(),
        Command::Tail(args) => args.run(),
        Command::Nodes(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Runtimes(args) => args.run(),
        Command::Secret(args) => args.run(),
        Command::D1(args) => args.run(),
        Command::Queues(args) => args.run(),
        Command::Wheels(args) => args.run(),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
