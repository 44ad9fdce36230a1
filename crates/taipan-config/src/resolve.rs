//! From the raw config to a validated [`WorkerConfig`]: the worker's name,
//! main module, compatibility date and flags, vars and snapshot mode.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde_json::Value;

use crate::bindings::Bindings;
use crate::error::ConfigError;
use crate::limits::ConfigLimits;
use crate::raw::RawConfig;
use crate::routes::RoutePattern;
use crate::runtimes::{self, PythonRuntime, RUNTIMES};

/// What the deploy-time snapshot contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Execute the worker's imports, then snapshot; the main module's top
    /// level runs in each sandbox, at its first request.
    Imports,
    /// Also run the worker's main module top level before the snapshot (its
    /// randomness refused), so a fresh sandbox does not run it again.
    #[default]
    Full,
}

impl SnapshotMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMode::Imports => "imports",
            SnapshotMode::Full => "full",
        }
    }
}

/// A worker's configuration, resolved and validated.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub name: String,
    /// The environment (`--env NAME`, an `[env.NAME]` section) this is, if any.
    pub env: Option<String>,
    /// The config file this came from.
    pub config_path: PathBuf,
    /// The folder holding the config file.
    pub project_dir: PathBuf,
    /// The main module's file (absolute).
    pub main: PathBuf,
    /// The folder of `main`: every module under it is part of the worker.
    pub source_dir: PathBuf,
    /// `main`'s module name within `source_dir`.
    pub main_module: String,
    pub compatibility_date: Date,
    pub compatibility_flags: Vec<String>,
    pub vars: BTreeMap<String, Value>,
    pub runtime: &'static PythonRuntime,
    pub snapshot: SnapshotMode,
    /// `routes` / `route`: where `taipan serve` sends requests to this worker.
    pub routes: Vec<RoutePattern>,
    /// `[limits]`: overrides of the server's per-worker defaults.
    pub limits: ConfigLimits,
    /// KV, D1, R2, services and cron triggers.
    pub bindings: Bindings,
    /// Things worth telling the user that do not stop the worker.
    pub warnings: Vec<String>,
}

impl WorkerConfig {
    /// `source_dir` relative to the project, as shown in tracebacks ("src").
    pub fn source_display(&self) -> String {
        self.source_dir
            .strip_prefix(&self.project_dir)
            .map(|p| p.to_string_lossy().replace('\\', "/"))
            .unwrap_or_default()
    }

    /// `vars` as a JSON object: what the sandbox receives.
    pub fn vars_json(&self) -> String {
        serde_json::to_string(&self.vars).expect("vars are JSON values")
    }
}

pub fn resolve(raw: &RawConfig, today: Date) -> Result<WorkerConfig, ConfigError> {
    let mut warnings = crate::keys::warnings(raw);
    let project_dir = raw
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let project_dir = std::path::absolute(&project_dir).unwrap_or(project_dir);

    let name = match raw.get("name") {
        Some(Value::String(s)) if valid_name(s) => s.clone(),
        Some(Value::String(s)) => {
            return Err(raw
                .error("name", format!("`name` {s:?} is not a valid worker name"))
                .hint("use lowercase letters, digits and dashes, up to 63 characters"));
        }
        Some(_) => return Err(raw.error("name", "`name` must be a string")),
        None => {
            let fallback = project_dir
                .file_name()
                .map(|n| {
                    n.to_string_lossy()
                        .to_lowercase()
                        .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
                })
                .filter(|n| valid_name(n))
                .unwrap_or_else(|| "worker".to_string());
            warnings.push(format!(
                "no `name` in {}; using {fallback:?}",
                raw.path.display()
            ));
            fallback
        }
    };
    // An environment is its own worker: `<name>-<env>`, unless it names itself.
    let name = match raw.env.as_deref() {
        Some(env) if !raw.env_sets("name") => {
            let named = format!("{name}-{env}");
            if !valid_name(&named) {
                return Err(raw
                    .error("env", format!("the worker name {named:?} of environment {env:?} is not valid"))
                    .hint("shorten `name` or the environment's name (63 characters in all), or set `name` in the environment"));
            }
            named
        }
        _ => name,
    };

    let main_rel = match raw.get("main") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(_) => {
            return Err(raw.error("main", "`main` must be a path to the worker's Python file"));
        }
        None => {
            return Err(ConfigError::new(&raw.path, "the config has no `main`")
                .at("main", None)
                .hint("add `main = \"src/entry.py\"` pointing at the worker's entry module"));
        }
    };
    let main = project_dir.join(&main_rel);
    if !main.is_file() {
        return Err(raw
            .error(
                "main",
                format!("`main` points to \"{main_rel}\", which does not exist"),
            )
            .hint(format!("create \"{}\" or fix the path", main.display())));
    }
    if main.extension().and_then(|e| e.to_str()) != Some("py") {
        return Err(raw
            .error(
                "main",
                format!("`main` points to \"{main_rel}\", which is not a .py file"),
            )
            .hint(
                "Taipan runs Python workers: point `main` at the entry module, e.g. src/entry.py",
            ));
    }
    let source_dir = main
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| project_dir.clone());
    let main_module = main
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .filter(|s| is_identifier(s))
        .ok_or_else(|| {
            raw.error(
                "main",
                format!("\"{main_rel}\" cannot be imported as a Python module"),
            )
            .hint("name the file with letters, digits and underscores, e.g. entry.py")
        })?;

    let compatibility_date = match raw.get("compatibility_date") {
        Some(Value::String(s)) => parse_date(s).ok_or_else(|| {
            raw.error(
                "compatibility_date",
                format!("`compatibility_date` {s:?} is not a date"),
            )
            .hint("write it as YYYY-MM-DD, e.g. \"2025-11-01\"")
        })?,
        Some(_) => {
            return Err(raw.error(
                "compatibility_date",
                "`compatibility_date` must be a string like \"2025-11-01\"",
            ));
        }
        None => {
            warnings.push(format!(
                "no `compatibility_date` in {}; using today's date, {today}",
                raw.path.display()
            ));
            today
        }
    };

    let compatibility_flags = match raw.get("compatibility_flags") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                raw.error(
                    "compatibility_flags",
                    "`compatibility_flags` must be a list of strings",
                )
            })?,
        Some(_) => {
            return Err(raw.error(
                "compatibility_flags",
                "`compatibility_flags` must be a list of strings",
            ));
        }
    };
    if !compatibility_flags
        .iter()
        .any(|f| f == runtimes::PYTHON_WORKERS_FLAG)
    {
        warnings.push(format!(
            "`compatibility_flags` does not include \"{}\"; Taipan runs the worker as Python because `main` is a .py file",
            runtimes::PYTHON_WORKERS_FLAG
        ));
    }

    let choice = runtimes::choose(RUNTIMES, compatibility_date, &compatibility_flags, today)
        .map_err(|message| {
            let key = if message.contains("flag") {
                "compatibility_flags"
            } else {
                "compatibility_date"
            };
            raw.error(key, message)
                .hint("see `taipan runtimes` for the runtimes and their dates")
        })?;
    warnings.extend(choice.warnings);

    let vars = match raw.get("vars") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        Some(_) => return Err(raw.error("vars", "`vars` must be a table of names to values")),
    };
    for key in vars.keys() {
        if !is_identifier(key) {
            warnings.push(format!(
                "var `{key}` is not a Python identifier; read it with getattr(env, {key:?})"
            ));
        }
    }

    let snapshot = match raw.get("snapshot") {
        None => SnapshotMode::default(),
        Some(Value::String(s)) if s == "imports" => SnapshotMode::Imports,
        Some(Value::String(s)) if s == "full" => SnapshotMode::Full,
        Some(other) => {
            return Err(raw
                .error("snapshot", format!("`snapshot` is {other}, expected \"imports\" or \"full\""))
                .hint("\"imports\" (default) snapshots after the worker's imports; \"full\" also runs its top level"));
        }
    };

    let routes = crate::routes::parse(raw)?;
    let limits = crate::limits::parse(raw)?;
    let bindings = crate::bindings::parse(raw, &project_dir, &vars.keys().cloned().collect())?;

    Ok(WorkerConfig {
        name,
        env: raw.env.clone(),
        config_path: raw.path.clone(),
        project_dir,
        main,
        source_dir,
        main_module,
        compatibility_date,
        compatibility_flags,
        vars,
        runtime: choice.runtime,
        snapshot,
        routes,
        limits,
        bindings,
        warnings,
    })
}

fn parse_date(s: &str) -> Option<Date> {
    if s.len() != 10 {
        return None;
    }
    s.parse::<Date>().ok()
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !s.starts_with('-')
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TODAY, project};
    use crate::load::load_at;

    #[test]
    fn seed_three_line_config_works_with_a_warning() {
        let dir = project(
            "wrangler.toml",
            "name = \"hello-world-python-worker\"\nmain = \"src/entry.py\"\ncompatibility_date = \"2024-04-01\"\n",
        );
        let cfg = load_at(dir.path(), TODAY).unwrap();
        assert_eq!(cfg.main_module, "entry");
        assert_eq!(cfg.source_display(), "src");
        assert_eq!(cfg.runtime.id, "cpython-3.14");
        assert!(
            cfg.warnings.iter().any(|w| w.contains("python_workers")),
            "{:?}",
            cfg.warnings
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let dir = project(
            "wrangler.toml",
            "name = \"w\"\ncompatibility_date = \"2025-13-01\"\nmain = \"src/entry.py\"\n",
        );
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert_eq!(
            (err.line, err.key.as_deref()),
            (Some(2), Some("compatibility_date")),
            "{err}"
        );

        let dir = project("wrangler.toml", "name = \"w\"\nmain = \"src/nope.py\"\n");
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert_eq!((err.line, err.key.as_deref()), (Some(2), Some("main")));
        assert!(err.to_string().contains("does not exist"), "{err}");

        let dir = project("wrangler.toml", "name = \"w\"\n");
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert!(err.to_string().contains("no `main`"), "{err}");

        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\ncompatibility_date = \"2027-01-01\"\n",
        );
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert!(err.message.contains("future"), "{err}");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn snapshot_mode() {
        let dir = project("wrangler.toml", "main = \"src/entry.py\"\n");
        assert_eq!(
            load_at(dir.path(), TODAY).unwrap().snapshot,
            SnapshotMode::Full,
            "the main module runs at build time unless the config says otherwise"
        );
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\nsnapshot = \"imports\"\n",
        );
        assert_eq!(
            load_at(dir.path(), TODAY).unwrap().snapshot,
            SnapshotMode::Imports
        );
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\nsnapshot = \"most\"\n",
        );
        assert_eq!(load_at(dir.path(), TODAY).unwrap_err().line, Some(2));
    }
}
