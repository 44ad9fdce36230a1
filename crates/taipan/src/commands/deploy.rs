//! `taipan deploy [DIR]`: pack the project, upload it, print the version.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use taipan_server::api;

use super::client::ServerArgs;

#[derive(Args)]
pub struct DeployArgs {
    /// The worker's project folder.
    #[arg(default_value = ".")]
    dir: PathBuf,
    #[command(flatten)]
    env: super::EnvArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl DeployArgs {
    pub fn run(self) -> Result<()> {
        // Validate locally first: a config mistake never needs a round trip.
        let config = self.env.load(&self.dir)?;
        for warning in &config.warnings {
            eprintln!("warning: {warning}");
        }
        let bundle = taipan_server::bundle::pack(&config.project_dir)?;
        let progress = ProgressBar::new(bundle.len() as u64).with_style(
            ProgressStyle::with_template("uploading {bytes}/{total_bytes} {wide_bar}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let length = bundle.len() as u64;
        let reader = ProgressReader {
            inner: std::io::Cursor::new(bundle),
            progress: progress.clone(),
        };
        let started = Instant::now();
        let client = self.server.client(Some(Duration::from_secs(900)))?;
        // Check the token with a small request first: a server refusing an
        // upload mid-stream closes the connection, and the client would then
        // report a broken pipe instead of the server's answer.
        self.server
            .json::<api::WorkerList>(client.get(self.server.url("/api/workers")))?;
        // The server resolves the same environment from the uploaded config.
        let mut url = self.server.url("/api/deploy");
        if let Some(env) = self.env.get() {
            url = format!(
                "{url}?env={}",
                percent_encoding::utf8_percent_encode(env, percent_encoding::NON_ALPHANUMERIC)
            );
        }
        let request = client
            .post(url)
            .header("content-type", "application/x-tar")
            .body(reqwest::blocking::Body::sized(reader, length));
        progress.set_message("building");
        let result = self.server.json::<api::DeployResult>(request);
        progress.finish_and_clear();
        let result = result?;
        println!(
            "Deployed {} {} in {:.1}s (build {} ms{})",
            result.worker,
            result.version,
            started.elapsed().as_secs_f64(),
            result.build_ms,
            if result.reused_build {
                ", identical build reused"
            } else {
                ""
            }
        );
        if !result.packages.is_empty() {
            println!("  packages: {}", result.packages.join(", "));
        }
        println!("  {}", result.url);
        Ok(())
    }
}

struct ProgressReader<R> {
    inner: R,
    progress: ProgressBar,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}
