//! `taipan d1 execute NAME` and `taipan d1 migrations apply NAME`, against
//! the project's local state (`.taipan/state`, as `taipan dev` uses it) or a
//! `taipan serve` data dir (`--data-dir`).

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use taipan_bindings::Stores;
use taipan_bindings::d1;
use taipan_config::WorkerConfig;

#[derive(Args)]
pub struct D1Args {
    #[command(subcommand)]
    action: D1Action,
}

#[derive(Args, Clone)]
struct Target {
    /// The database: its `database_name` (or binding) in the config.
    database: String,
    /// The project folder or config file.
    #[arg(short = 'c', long = "config", default_value = ".")]
    config: PathBuf,
    /// Use the local state of `taipan dev` (the default).
    #[arg(long, conflicts_with = "data_dir")]
    local: bool,
    /// Use the state of a `taipan serve` with this data dir instead.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum D1Action {
    /// Run SQL: one statement prints its rows; a file runs as one transaction.
    Execute {
        #[command(flatten)]
        target: Target,
        /// SQL to run.
        #[arg(long, conflicts_with = "file")]
        command: Option<String>,
        /// A .sql file to run.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Migrations: `apply` runs those in `migrations_dir` not applied yet.
    Migrations {
        #[command(subcommand)]
        action: MigrationsAction,
    },
}

#[derive(Subcommand)]
enum MigrationsAction {
    Apply {
        #[command(flatten)]
        target: Target,
    },
}

impl D1Args {
    pub fn run(self) -> Result<()> {
        match self.action {
            D1Action::Execute {
                target,
                command,
                file,
            } => {
                let sql = match (command, file) {
                    (Some(sql), None) => sql,
                    (None, Some(file)) => std::fs::read_to_string(&file)
                        .map_err(|e| anyhow!("could not read \"{}\": {e}", file.display()))?,
                    _ => bail!("pass the SQL with --command \"...\" or --file x.sql"),
                };
                let (_, db) = target.open()?;
                let (count, rows) =
                    d1::execute_for_cli(&db, &sql).map_err(|e| anyhow!("{}", e.message))?;
                match rows {
                    Some(result) => print_table(&result),
                    None => println!("Ran {count} statement(s) on {}.", target.database),
                }
            }
            D1Action::Migrations {
                action: MigrationsAction::Apply { target },
            } => {
                let (config, db) = target.open()?;
                let binding = config
                    .bindings
                    .d1_by_name(&target.database)
                    .ok_or_else(|| anyhow!("no D1 database {:?}", target.database))?;
                let dir = config.project_dir.join(&binding.migrations_dir);
                let applied = d1::apply_migrations(&db, &dir)?;
                if applied.is_empty() {
                    println!("No migrations to apply.");
                }
                for name in applied {
                    println!("Applied {name}");
                }
            }
        }
        Ok(())
    }
}

impl Target {
    fn open(&self) -> Result<(WorkerConfig, taipan_bindings::store::Database)> {
        let config = taipan_config::load(&self.config).map_err(|e| anyhow!("{e}"))?;
        let Some(binding) = config.bindings.d1_by_name(&self.database) else {
            let known: Vec<_> = config
                .bindings
                .d1
                .iter()
                .map(|d| d.database_name.as_str())
                .collect();
            bail!(
                "the config has no D1 database {:?}\nhint: databases in \"{}\": {}",
                self.database,
                config.config_path.display(),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            );
        };
        let root = match &self.data_dir {
            Some(dir) => dir.join("state"),
            None => config.project_dir.join(".taipan").join("state"),
        };
        let stores = Stores::new(root);
        let db = stores.database(&stores.d1_path(&binding.id))?;
        Ok((config, db))
    }
}

fn print_table(result: &Value) {
    let columns: Vec<&str> = result["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if columns.is_empty() {
        println!(
            "OK ({} row(s) changed)",
            result["meta"]["changes"].as_i64().unwrap_or(0)
        );
        return;
    }
    println!("{}", columns.join(" | "));
    for row in result["rows"].as_array().into_iter().flatten() {
        let cells: Vec<String> = row
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                Value::Null => "NULL".into(),
                other => other.to_string(),
            })
            .collect();
        println!("{}", cells.join(" | "));
    }
}
