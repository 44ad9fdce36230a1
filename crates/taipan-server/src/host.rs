//! Giving a worker its `env`: vars, secrets and bindings, opened against a
//! state folder. Shared by `taipan dev` and `taipan serve`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::Value;
use taipan_bindings::hyperdrive::Hyperdrive;
use taipan_bindings::{
    FetchLimits, FetchPolicy, Services, Stores, VersionMetadata, WorkerBindings,
};
use taipan_config::Bindings;
use taipan_runtime::WorkerHost;

/// What a worker's sandboxes get besides the build.
pub struct WorkerEnv {
    /// vars with secrets over them, as the JSON object the guest reads.
    pub vars_json: String,
    /// `{name: kind}` of the bindings.
    pub bindings_json: String,
    pub host: Arc<dyn WorkerHost>,
}

/// What a worker's env is made from: its config (or version record) and secrets.
pub struct EnvSource<'a> {
    pub worker: &'a str,
    pub vars_json: &'a str,
    pub secrets: &'a BTreeMap<String, String>,
    pub bindings: &'a Bindings,
    /// Where its `[assets]` are.
    pub assets_dir: Option<&'a Path>,
    /// `taipan dev` (outbound fetch may reach private addresses).
    pub dev: bool,
    /// What the `version_metadata` binding shows.
    pub version: VersionMetadata,
}

impl WorkerEnv {
    pub fn open(
        source: EnvSource<'_>,
        stores: &Arc<Stores>,
        services: Arc<dyn Services>,
    ) -> Result<Self> {
        let policy = FetchPolicy {
            allow_private: source.dev,
            limits: FetchLimits::default(),
        };
        // dev: the environment or localConnectionString; serve: a secret.
        let hyperdrive = Arc::new(Hyperdrive::resolve(
            source.bindings,
            source.dev,
            source.secrets,
            |name| std::env::var(name).ok(),
        )?);
        let host = WorkerBindings::open(
            source.worker,
            source.bindings,
            stores,
            services,
            policy,
            source.assets_dir,
            hyperdrive.clone(),
        )
        .context("opening the worker's bindings")?;
        Ok(Self {
            vars_json: with_secrets(source.vars_json, source.secrets),
            bindings_json: taipan_bindings::kinds_json(
                source.bindings,
                &source.version,
                &hyperdrive,
            ),
            host,
        })
    }
}

/// Secrets are strings on `env` beside vars; a secret wins over a var of the same name.
pub fn with_secrets(vars_json: &str, secrets: &BTreeMap<String, String>) -> String {
    let mut vars: serde_json::Map<String, Value> =
        serde_json::from_str(vars_json).unwrap_or_default();
    for (name, value) in secrets {
        vars.insert(name.clone(), Value::String(value.clone()));
    }
    Value::Object(vars).to_string()
}

/// `.dev.vars` in the project: `NAME=value` lines (dotenv syntax), the
/// secrets of `taipan dev`. For an environment, `.dev.vars.<env>` when it
/// exists (as wrangler reads it), else `.dev.vars`. Missing is fine;
/// malformed is an error.
pub fn read_dev_vars(project_dir: &Path, env: Option<&str>) -> Result<BTreeMap<String, String>> {
    let path = env
        .map(|env| project_dir.join(format!(".dev.vars.{env}")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| project_dir.join(".dev.vars"));
    if !path.is_file() {
        return Ok(BTreeMap::new());
    }
    let mut secrets = BTreeMap::new();
    for item in
        dotenvy::from_path_iter(&path).with_context(|| format!("reading \"{}\"", path.display()))?
    {
        let (name, value) = item.with_context(|| {
            format!(
                "\"{}\" is not valid: write one NAME=value per line",
                path.display()
            )
        })?;
        secrets.insert(name, value);
    }
    Ok(secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_vars_and_secrets_over_vars() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".dev.vars"),
            "# local secrets\nAPI_KEY=abc\nQUOTED=\"a b\"\n",
        )
        .unwrap();
        let secrets = read_dev_vars(dir.path(), None).unwrap();
        assert_eq!(secrets["API_KEY"], "abc");
        assert_eq!(secrets["QUOTED"], "a b");
        // An environment's own file wins; without one, .dev.vars serves it.
        assert_eq!(read_dev_vars(dir.path(), Some("staging")).unwrap(), secrets);
        std::fs::write(dir.path().join(".dev.vars.staging"), "API_KEY=staging\n").unwrap();
        let staging = read_dev_vars(dir.path(), Some("staging")).unwrap();
        assert_eq!(staging["API_KEY"], "staging");
        assert!(!staging.contains_key("QUOTED"));
        let merged: Value =
            serde_json::from_str(&with_secrets(r#"{"API_KEY":"var","N":1}"#, &secrets)).unwrap();
        assert_eq!(merged["API_KEY"], "abc");
        assert_eq!(merged["N"], 1);
        assert!(
            read_dev_vars(&dir.path().join("none"), None)
                .unwrap()
                .is_empty()
        );
    }
}
