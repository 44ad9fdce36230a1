//! `taipan versions`, `taipan rollback VERSION`, `taipan delete`, `taipan tail`.

use std::io::BufRead;

use anyhow::Result;
use clap::Args;

use super::client::{ServerArgs, WorkerArgs};

#[derive(Args)]
pub struct VersionsArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl VersionsArgs {
    pub fn run(self) -> Result<()> {
        let name = self.worker.name()?;
        let client = self.server.client(None)?;
        let body = self
            .server
            .json(client.get(self.server.url(&format!("/api/workers/{name}/versions"))))?;
        let current = body["current"].as_str().unwrap_or("");
        println!(
            "{:<8} {:<32} {:>9}  build",
            "version", "created", "build ms"
        );
        for v in body["versions"].as_array().into_iter().flatten() {
            let id = v["id"].as_str().unwrap_or("?");
            let mark = if id == current { " (serving)" } else { "" };
            println!(
                "{id:<8} {:<32} {:>9}  {}{mark}",
                v["created"].as_str().unwrap_or(""),
                v["build_ms"],
                v["artifact"].as_str().unwrap_or("")
            );
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct RollbackArgs {
    /// The version to serve again, e.g. v3.
    version: String,
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl RollbackArgs {
    pub fn run(self) -> Result<()> {
        let name = self.worker.name()?;
        let client = self.server.client(None)?;
        let request = client
            .post(self.server.url(&format!("/api/workers/{name}/rollback")))
            .json(&serde_json::json!({ "version": self.version }));
        let body = self.server.json(request)?;
        println!(
            "{name} now serves {}",
            body["version"].as_str().unwrap_or("?")
        );
        Ok(())
    }
}

#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl DeleteArgs {
    pub fn run(self) -> Result<()> {
        let name = self.worker.name()?;
        let client = self.server.client(None)?;
        self.server
            .json(client.delete(self.server.url(&format!("/api/workers/{name}"))))?;
        println!("deleted {name}");
        Ok(())
    }
}

#[derive(Args)]
pub struct TailArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl TailArgs {
    pub fn run(self) -> Result<()> {
        let name = self.worker.name()?;
        let client = self.server.client(None)?;
        let response = self
            .server
            .send(client.get(self.server.url(&format!("/api/workers/{name}/tail"))))?;
        if !response.status().is_success() {
            anyhow::bail!(
                "the server answered {}: {}",
                response.status(),
                response.text().unwrap_or_default()
            );
        }
        for line in std::io::BufReader::new(response).lines() {
            let line = line?;
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            let text = |k: &str| event[k].as_str().unwrap_or("").to_string();
            match event["type"].as_str() {
                Some("connected") => println!("tailing {name}; Ctrl-C to stop"),
                Some("request") => println!(
                    "{} {} ({} ms)",
                    text("request"),
                    event["status"],
                    event["duration_ms"]
                ),
                Some("stdout") => println!("  {} | {}", text("request"), text("line")),
                Some("stderr") => println!("  {} ! {}", text("request"), text("line")),
                Some("lagged") => println!("  ... {} lines skipped", event["skipped"]),
                _ => {}
            }
        }
        Ok(())
    }
}
