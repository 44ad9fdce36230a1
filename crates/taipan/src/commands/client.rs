//! Talking to a `taipan serve` admin API from the CLI.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use taipan_server::api;

#[derive(Args, Clone)]
pub struct ServerArgs {
    /// The admin API of a `taipan serve`.
    #[arg(long, env = "TAIPAN_SERVER", default_value = "http://127.0.0.1:8081")]
    pub server: String,
    /// The admin token the server was started with.
    #[arg(long, env = "TAIPAN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Which worker: `--name`, else the `name` in the project's config.
#[derive(Args, Clone)]
pub struct WorkerArgs {
    /// The worker's name (default: `name` from the config in --dir).
    #[arg(long)]
    pub name: Option<String>,
    /// Project folder whose config names the worker.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub env: super::EnvArgs,
}

impl WorkerArgs {
    pub fn name(&self) -> Result<String> {
        match &self.name {
            Some(name) => Ok(name.clone()),
            None => Ok(taipan_config::load(&self.dir, self.env.get())
                .map_err(|e| anyhow!("{e}\nhint: or pass --name"))?
                .name),
        }
    }
}

impl ServerArgs {
    pub fn client(&self, timeout: Option<Duration>) -> Result<reqwest::blocking::Client> {
        Ok(reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()?)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.trim_end_matches('/'))
    }

    pub fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response> {
        let request = match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        request.send().with_context(|| {
            format!("could not reach the server at {}\nhint: is `taipan serve` running? pass --server URL", self.server)
        })
    }

    /// Send and read the answer as `T` (a type of `taipan_server::api`); an
    /// error status becomes an error with the server's message.
    pub fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<T> {
        let response = self.send(request)?;
        let status = response.status();
        let text = response.text().unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            bail!("the server refused the admin token\nhint: pass --token or set TAIPAN_TOKEN");
        }
        if !status.is_success() {
            let message = serde_json::from_str::<api::ErrorBody>(&text)
                .map_or_else(|_| "no details".to_string(), |e| e.error);
            bail!("the server answered {status}: {message}");
        }
        serde_json::from_str(&text).with_context(|| {
            format!(
                "the server's answer is not what this taipan expects: {text}\nhint: the server may \
                 run another version of taipan"
            )
        })
    }
}
