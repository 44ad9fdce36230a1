//! Finding the config file of a project and loading it: read, select the
//! environment, resolve.

use std::path::{Path, PathBuf};

use jiff::civil::Date;

use crate::CONFIG_FILE_NAMES;
use crate::error::ConfigError;
use crate::raw::RawConfig;
use crate::resolve::{WorkerConfig, resolve};

/// Find the config in `dir` (or use `dir` itself if it is a file) and
/// resolve it, for environment `env` (`--env`) when given.
pub fn load(dir_or_file: &Path, env: Option<&str>) -> Result<WorkerConfig, ConfigError> {
    load_env_at(dir_or_file, env, jiff::Zoned::now().date())
}

/// [`load`] of the top level with a fixed "today", for tests.
pub fn load_at(dir_or_file: &Path, today: Date) -> Result<WorkerConfig, ConfigError> {
    load_env_at(dir_or_file, None, today)
}

/// [`load`] with a fixed "today", for tests.
pub fn load_env_at(
    dir_or_file: &Path,
    env: Option<&str>,
    today: Date,
) -> Result<WorkerConfig, ConfigError> {
    let path = find_config(dir_or_file)?;
    let mut warnings = Vec::new();
    let raw = crate::environments::select(RawConfig::read(&path)?, env, &mut warnings)?;
    let mut config = resolve(&raw, today)?;
    warnings.append(&mut config.warnings);
    config.warnings = warnings;
    Ok(config)
}

fn find_config(dir_or_file: &Path) -> Result<PathBuf, ConfigError> {
    if dir_or_file.is_file() {
        return Ok(dir_or_file.to_path_buf());
    }
    if !dir_or_file.exists() {
        return Err(ConfigError::new(dir_or_file, "this path does not exist")
            .hint("pass the folder of a worker project, or its wrangler.toml"));
    }
    CONFIG_FILE_NAMES
        .iter()
        .map(|name| dir_or_file.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ConfigError::new(
                dir_or_file,
                "no wrangler.toml, wrangler.jsonc or wrangler.json in this folder",
            )
            .hint("create a wrangler.toml with `name`, `main` and `compatibility_date`")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TODAY, project};

    #[test]
    fn environments_resolve_with_their_own_vars_and_bindings() {
        let dir = project(
            "wrangler.toml",
            "name = \"shop\"\nmain = \"src/entry.py\"\ncompatibility_date = \"2025-11-01\"\n\
             compatibility_flags = [\"python_workers\"]\n[vars]\nMODE = \"prod\"\n\
             [[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"shop\"\ndatabase_id = \"<YOUR_DATABASE_ID>\"\n\
             [env.staging.vars]\nMODE = \"staging\"\n\
             [[env.staging.d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"shop-staging\"\n\
             [env.staging.limits]\ncpu_ms = \"x\"\n",
        );
        let top = load_at(dir.path(), TODAY).unwrap();
        assert_eq!((top.name.as_str(), top.env.as_deref()), ("shop", None));
        assert_eq!(top.bindings.d1[0].id, "<YOUR_DATABASE_ID>");
        // The environment's own mistakes point at its section.
        let err = load_env_at(dir.path(), Some("staging"), TODAY).unwrap_err();
        assert_eq!(err.line, Some(16), "{err}");
        let fixed = std::fs::read_to_string(dir.path().join("wrangler.toml"))
            .unwrap()
            .replace("cpu_ms = \"x\"", "cpu_ms = 50");
        std::fs::write(dir.path().join("wrangler.toml"), fixed).unwrap();
        let staging = load_env_at(dir.path(), Some("staging"), TODAY).unwrap();
        assert_eq!(staging.name, "shop-staging");
        assert_eq!(staging.env.as_deref(), Some("staging"));
        assert_eq!(staging.vars["MODE"], "staging");
        assert_eq!(staging.bindings.d1[0].id, "shop-staging");
        assert_eq!(staging.limits.cpu_ms, Some(50));
        assert!(staging.warnings.is_empty(), "{:?}", staging.warnings);
        let err = load_env_at(dir.path(), Some("prod"), TODAY).unwrap_err();
        assert_eq!(err.hint.as_deref(), Some("environments defined: staging"));
    }

    #[test]
    fn missing_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert!(err.to_string().contains("no wrangler.toml"), "{err}");
        assert!(err.hint.is_some());
    }
}
