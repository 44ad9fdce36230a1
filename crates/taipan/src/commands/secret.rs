//! `taipan secret put|list|delete`: a deployed worker's secrets, through the
//! admin API. (In `taipan dev`, secrets come from `.dev.vars`.)

use std::io::{IsTerminal, Read};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use taipan_server::api;

use super::client::{ServerArgs, WorkerArgs};

#[derive(Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    action: SecretAction,
}

#[derive(Subcommand)]
enum SecretAction {
    /// Set a secret: the value is read from standard input (never an argument,
    /// so it stays out of shell history). The worker picks it up at once.
    Put {
        /// The secret's name on `env`.
        secret: String,
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// List a worker's secret names (values are never shown).
    List {
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Remove a secret.
    Delete {
        secret: String,
        #[command(flatten)]
        worker: WorkerArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

impl SecretArgs {
    pub fn run(self) -> Result<()> {
        match self.action {
            SecretAction::Put {
                secret,
                worker,
                server,
            } => {
                let name = worker.name()?;
                let value = read_value(&secret)?;
                let client = server.client(None)?;
                server.json::<api::SecretSet>(
                    client
                        .put(server.url(&format!("/api/workers/{name}/secrets/{secret}")))
                        .body(value),
                )?;
                println!("Set secret {secret} on {name}.");
            }
            SecretAction::List { worker, server } => {
                let name = worker.name()?;
                let client = server.client(None)?;
                let body: api::SecretNames =
                    server.json(client.get(server.url(&format!("/api/workers/{name}/secrets"))))?;
                for secret in body.secrets {
                    println!("{secret}");
                }
            }
            SecretAction::Delete {
                secret,
                worker,
                server,
            } => {
                let name = worker.name()?;
                let client = server.client(None)?;
                server.json::<api::Deleted>(
                    client.delete(server.url(&format!("/api/workers/{name}/secrets/{secret}"))),
                )?;
                println!("Deleted secret {secret} from {name}.");
            }
        }
        Ok(())
    }
}

fn read_value(secret: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Enter the value of {secret}: ");
    }
    let mut value = String::new();
    stdin.lock().read_to_string(&mut value)?;
    // One trailing newline (from `echo` or the terminal) is not part of the value.
    let value = value
        .strip_suffix('\n')
        .map(|v| v.strip_suffix('\r').unwrap_or(v))
        .unwrap_or(&value)
        .to_string();
    if value.is_empty() {
        bail!(
            "the secret {secret} would be empty\nhint: pipe the value in: echo -n VALUE | taipan secret put {secret}"
        );
    }
    Ok(value)
}
