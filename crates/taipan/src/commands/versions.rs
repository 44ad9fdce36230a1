//! `taipan versions`, `taipan rollback VERSION`, `taipan delete`, `taipan tail`.

use std::io::BufRead;

use anyhow::Result;
use clap::Args;
use taipan_server::api;

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
        let body: api::Versions<api::VersionRow> = self
            .server
            .json(client.get(self.server.url(&format!("/api/workers/{name}/versions"))))?;
        let current = body.current.as_deref().unwrap_or("");
        println!(
            "{:<8} {:<32} {:>9}  build",
            "version", "created", "build ms"
        );
        for v in body.versions {
            let mark = if v.id == current { " (serving)" } else { "" };
            println!(
                "{:<8} {:<32} {:>9}  {}{mark}",
                v.id, v.created, v.build_ms, v.artifact
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
            .json(&api::RollbackRequest {
                version: self.version,
            });
        let body: api::Serving = self.server.json(request)?;
        println!("{name} now serves {}", body.version);
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
        self.server.json::<api::Deleted>(
            client.delete(self.server.url(&format!("/api/workers/{name}"))),
        )?;
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
            // A line this version does not know (a newer server) is skipped.
            let Ok(event) = serde_json::from_str::<api::TailEvent>(&line) else {
                continue;
            };
            match event {
                api::TailEvent::Connected { .. } => println!("tailing {name}; Ctrl-C to stop"),
                api::TailEvent::Request {
                    request,
                    status,
                    duration_ms,
                    ..
                } => println!("{request} {status} ({duration_ms} ms)"),
                api::TailEvent::Stdout { request, line, .. } => println!("  {request} | {line}"),
                api::TailEvent::Stderr { request, line, .. } => println!("  {request} ! {line}"),
                api::TailEvent::Lagged { skipped } => println!("  ... {skipped} lines skipped"),
            }
        }
        Ok(())
    }
}
