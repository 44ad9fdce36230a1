//! `taipan d1 execute NAME` and `taipan d1 migrations apply NAME`, against
//! the project's local state (`.taipan/state`, as `taipan dev` uses it), a
//! `taipan serve` data dir on this machine (`--data-dir`), or a running
//! server through its admin API (`--remote`).

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::Value;
use taipan_bindings::Stores;
use taipan_bindings::d1;
use taipan_config::WorkerConfig;
use taipan_config::bindings::D1Database;
use taipan_server::api;

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
    #[arg(long, conflicts_with_all = ["data_dir", "remote"])]
    local: bool,
    /// Use the state of a `taipan serve` with this data dir instead.
    #[arg(long, conflicts_with = "remote")]
    data_dir: Option<PathBuf>,
    /// Use the database of a running `taipan serve` (--server, --token).
    #[arg(long)]
    remote: bool,
    #[command(flatten)]
    env: super::EnvArgs,
    #[command(flatten)]
    server: super::client::ServerArgs,
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
                if target.remote {
                    let (_, binding) = target.binding()?;
                    let answer: api::D1Executed =
                        target.post(&binding.id, "execute", &api::D1Execute { sql })?;
                    match &answer.result {
                        None | Some(Value::Null) => println!(
                            "Ran {} statement(s) on {} (remote).",
                            answer.statements, target.database
                        ),
                        Some(result) => print_table(result),
                    }
                    return Ok(());
                }
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
                let (config, binding) = target.binding()?;
                let id = &binding.id;
                let dir = config.project_dir.join(&binding.migrations_dir);
                let applied = if target.remote {
                    let migrations = d1::read_migrations(&dir)?
                        .into_iter()
                        .map(|(name, sql)| api::Migration { name, sql })
                        .collect();
                    let answer: api::Applied =
                        target.post(id, "migrations", &api::D1Migrations { migrations })?;
                    answer.applied
                } else {
                    let (_, db) = target.open()?;
                    d1::apply_migrations(&db, &dir)?
                };
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
    /// The config and the D1 binding named on the command line.
    fn binding(&self) -> Result<(WorkerConfig, D1Database)> {
        let config = self.env.load(&self.config)?;
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
        let binding = binding.clone();
        Ok((config, binding))
    }

    /// `POST /api/d1/<id>/<action>` on the server (`--remote`).
    fn post<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        action: &str,
        body: &impl serde::Serialize,
    ) -> Result<T> {
        let request = self
            .server
            .client(None)?
            .post(self.server.url(&format!(
                "/api/d1/{}/{action}",
                percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC)
            )))
            .json(body);
        self.server.json(request)
    }

    fn open(&self) -> Result<(WorkerConfig, taipan_bindings::store::Database)> {
        let (config, binding) = self.binding()?;
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
