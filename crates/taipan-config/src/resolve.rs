//! From the raw config to a validated [`WorkerConfig`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use jiff::civil::Date;
use serde_json::Value;

use crate::CONFIG_FILE_NAMES;
use crate::bindings::Bindings;
use crate::error::ConfigError;
use crate::raw::RawConfig;
use crate::routes::RoutePattern;
use crate::runtimes::{self, PythonRuntime, RUNTIMES};

/// What the deploy-time snapshot contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotMode {
    /// Execute the worker's imports, then snapshot (Cloudflare's behaviour).
    #[default]
    Imports,
    /// Also run the worker's main module top level before the snapshot.
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

/// `[limits]` as written; `None` keeps the server's default. Stored with
/// each deployed version, so new fields must default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ConfigLimits {
    /// CPU time per request, in milliseconds (wrangler's `limits.cpu_ms`).
    pub cpu_ms: Option<u64>,
    /// Memory per sandbox, in MiB (a Taipan extension).
    pub memory_mb: Option<u64>,
    /// Largest request body, in MB (a Taipan extension).
    pub request_body_mb: Option<u64>,
    /// Largest response body, in MB (a Taipan extension).
    pub response_body_mb: Option<u64>,
    /// Sandboxes serving this worker at once (a Taipan extension).
    pub max_sandboxes: Option<u64>,
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

/// Keys Taipan reads.
const USED_KEYS: &[&str] = &[
    "name",
    "main",
    "compatibility_date",
    "compatibility_flags",
    "vars",
    "snapshot",
    "routes",
    "route",
    "limits",
    "kv_namespaces",
    "d1_databases",
    "r2_buckets",
    "services",
    "triggers",
    "outbound_private_networks",
    "assets",
    "durable_objects",
    "migrations",
    "env",
];

/// Keys from wrangler that Taipan knows but does not act on yet: a warning, never an error.
const LATER_KEYS: &[&str] = &[
    "queues",
    "ai",
    "vectorize",
    "analytics_engine_datasets",
    "hyperdrive",
    "browser",
    "workflows",
    "send_email",
    "tail_consumers",
    "dispatch_namespaces",
    "mtls_certificates",
    "version_metadata",
    "unsafe",
    "placement",
    "worker_loaders",
    "ratelimits",
    "secrets_store_secrets",
    "secrets",
    "pipelines",
    "images",
    "media",
    "stream",
    "containers",
    "cloudchamber",
    "vpc_services",
    "vpc_networks",
    "streaming_tail_consumers",
    "logfwdr",
    "ai_search",
    "ai_search_namespaces",
    "connect",
    "define",
];

/// Keys that carry no meaning for a self-hosted runtime: accepted silently.
const IGNORED_KEYS: &[&str] = &[
    "$schema",
    "account_id",
    "workers_dev",
    "preview_urls",
    "observability",
    "logpush",
    "build",
    "rules",
    "find_additional_modules",
    "no_bundle",
    "minify",
    "upload_source_maps",
    "keep_vars",
    "dev",
    "site",
    "usage_model",
    "compatibility_flags_overrides",
    "send_metrics",
    "python_modules",
    "preserve_file_names",
    "base_dir",
    "tsconfig",
    "jsx_factory",
    "jsx_fragment",
    "keep_names",
    "first_party_worker",
    "compliance_region",
    "previews",
    "alias",
];

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

pub fn resolve(raw: &RawConfig, today: Date) -> Result<WorkerConfig, ConfigError> {
    let mut warnings = Vec::new();
    let project_dir = raw
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let project_dir = std::path::absolute(&project_dir).unwrap_or(project_dir);

    for key in raw.root.keys() {
        let key = key.as_str();
        if LATER_KEYS.contains(&key) {
            warnings.push(format!(
                "`{key}` ({}:{}) is not supported by this version of Taipan yet; it is ignored",
                raw.path.display(),
                raw.line_of(key).unwrap_or(0)
            ));
        } else if !USED_KEYS.contains(&key) && !IGNORED_KEYS.contains(&key) {
            warnings.push(format!(
                "unknown key `{key}` in {} is ignored",
                raw.path.display()
            ));
        }
    }

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

    let routes = parse_routes(raw)?;
    let limits = parse_limits(raw)?;
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

fn parse_routes(raw: &RawConfig) -> Result<Vec<RoutePattern>, ConfigError> {
    let mut routes = Vec::new();
    for key in ["route", "routes"] {
        let entries = match raw.get(key) {
            None => continue,
            Some(Value::Array(items)) => items.clone(),
            Some(single) => vec![single.clone()],
        };
        for entry in entries {
            let pattern = match &entry {
                Value::String(s) => s.clone(),
                Value::Object(map) => match map.get("pattern") {
                    Some(Value::String(s)) => s.clone(),
                    _ => {
                        return Err(
                            raw.error(key, format!("`{key}` entries need a `pattern` string"))
                        );
                    }
                },
                _ => {
                    return Err(raw.error(
                        key,
                        format!("`{key}` must be a pattern or a list of patterns"),
                    ));
                }
            };
            let route = RoutePattern::parse(&pattern).map_err(|e| {
                raw.error(key, e)
                    .hint("write routes as host/path, e.g. \"api.example.com/v1/*\"")
            })?;
            routes.push(route);
        }
    }
    Ok(routes)
}

fn parse_limits(raw: &RawConfig) -> Result<ConfigLimits, ConfigError> {
    let Some(value) = raw.get("limits") else {
        return Ok(ConfigLimits::default());
    };
    let Value::Object(map) = value else {
        return Err(raw.error(
            "limits",
            "`limits` must be a table, e.g. `[limits]` with `cpu_ms = 50`",
        ));
    };
    let number = |name: &str, min: u64, max: u64| -> Result<Option<u64>, ConfigError> {
        match map.get(name) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
                _ => Err(raw.error(
                    "limits",
                    format!("`limits.{name}` must be a whole number from {min} to {max}"),
                )),
            },
        }
    };
    Ok(ConfigLimits {
        cpu_ms: number("cpu_ms", 1, 300_000)?,
        memory_mb: number("memory_mb", 32, 4096)?,
        request_body_mb: number("request_body_mb", 1, 500)?,
        response_body_mb: number("response_body_mb", 1, 4096)?,
        max_sandboxes: number("max_sandboxes", 1, 64)?,
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
    use jiff::civil::date;

    fn project(config_name: &str, config: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::write(dir.path().join("src/entry.py"), "").unwrap();
        std::fs::write(dir.path().join(config_name), config).unwrap();
        dir
    }

    const TODAY: Date = date(2026, 11, 25);

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
    fn jsonc_config_with_vars_and_unknown_keys() {
        let dir = project(
            "wrangler.jsonc",
            r#"{
  "$schema": "node_modules/wrangler/config-schema.json",
  "name": "w",
  "main": "src/entry.py",
  "compatibility_date": "2025-11-01",
  "compatibility_flags": ["python_workers"], // trailing commas allowed
  "vars": { "GREETING": "hi", "LIMITS": { "n": 3 }, },
  "queues": {},
  "observability": { "enabled": true },
}"#,
        );
        let cfg = load_at(dir.path(), TODAY).unwrap();
        assert_eq!(cfg.vars["GREETING"], "hi");
        assert_eq!(cfg.vars["LIMITS"]["n"], 3);
        assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
        assert!(cfg.warnings[0].contains("queues"));
        assert!(cfg.routes.is_empty());
    }

    #[test]
    fn routes_and_limits() {
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\nroutes = [\"a.test/*\", { pattern = \"b.test/api/*\", zone_name = \"b.test\" }]\n[limits]\ncpu_ms = 50\nmemory_mb = 64\nresponse_body_mb = 5\n",
        );
        let cfg = load_at(dir.path(), TODAY).unwrap();
        assert_eq!(cfg.routes.len(), 2);
        assert_eq!(cfg.routes[1].path, "/api/*");
        assert_eq!(
            cfg.limits,
            ConfigLimits {
                cpu_ms: Some(50),
                memory_mb: Some(64),
                response_body_mb: Some(5),
                ..ConfigLimits::default()
            }
        );
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\nroute = \"a*b.test/*\"\n",
        );
        assert_eq!(load_at(dir.path(), TODAY).unwrap_err().line, Some(2));
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\n[limits]\ncpu_ms = 0\n",
        );
        assert!(
            load_at(dir.path(), TODAY)
                .unwrap_err()
                .message
                .contains("cpu_ms")
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
    fn missing_config_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert!(err.to_string().contains("no wrangler.toml"), "{err}");
        assert!(err.hint.is_some());
    }

    #[test]
    fn bindings_as_wrangler_writes_them() {
        let dir = project(
            "wrangler.toml",
            r#"main = "src/entry.py"
[vars]
GREETING = "hi"
[[kv_namespaces]]
binding = "CACHE"
id = "abc123"
[[d1_databases]]
binding = "DB"
database_name = "app-db"
database_id = "x-1"
[[r2_buckets]]
binding = "FILES"
bucket_name = "files"
[[services]]
binding = "AUTH"
service = "auth-worker"
[[services]]
binding = "ADMIN"
service = "auth-worker"
entrypoint = "AdminApi"
[triggers]
crons = ["*/5 * * * *", "0 0 * * *"]
[[durable_objects.bindings]]
name = "ROOMS"
class_name = "Room"
[[migrations]]
tag = "v1"
new_sqlite_classes = ["Room"]
"#,
        );
        let cfg = load_at(dir.path(), TODAY).unwrap();
        let b = &cfg.bindings;
        assert_eq!(b.kv[0].id, "abc123");
        assert_eq!(
            (b.d1[0].database_name.as_str(), b.d1[0].id.as_str()),
            ("app-db", "x-1")
        );
        assert_eq!(b.d1[0].migrations_dir, PathBuf::from("migrations"));
        assert_eq!(b.r2[0].bucket_name, "files");
        assert_eq!(b.services[0].service, "auth-worker");
        assert_eq!(b.services[0].entrypoint, None);
        assert_eq!(b.services[1].entrypoint.as_deref(), Some("AdminApi"));
        assert_eq!(b.crons.len(), 2);
        assert_eq!(
            (
                b.durable_objects[0].binding.as_str(),
                b.durable_objects[0].class_name.as_str()
            ),
            ("ROOMS", "Room")
        );
        assert!(
            cfg.warnings.iter().all(|w| !w.contains("kv_namespaces")),
            "{:?}",
            cfg.warnings
        );

        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\n[triggers]\ncrons = [\"every minute\"]\n",
        );
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("cron"), "{err}");

        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\n[vars]\nDB = \"x\"\n[[d1_databases]]\nbinding = \"DB\"\n",
        );
        assert!(
            load_at(dir.path(), TODAY)
                .unwrap_err()
                .message
                .contains("used twice")
        );
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\n[[services]]\nbinding = \"A\"\nservice = \"a\"\nentrypoint = \"not a class\"\n",
        );
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert!(err.message.contains("not a class name"), "{err}");
        assert_eq!(err.line, Some(2), "{err}");
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\n[[kv_namespaces]]\nid = \"a\"\n",
        );
        assert!(
            load_at(dir.path(), TODAY)
                .unwrap_err()
                .message
                .contains("no `binding`")
        );
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\n[[durable_objects.bindings]]\nname = \"ROOMS\"\n",
        );
        let err = load_at(dir.path(), TODAY).unwrap_err();
        assert!(err.message.contains("needs `class_name`"), "{err}");
    }

    #[test]
    fn snapshot_mode() {
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\nsnapshot = \"full\"\n",
        );
        assert_eq!(
            load_at(dir.path(), TODAY).unwrap().snapshot,
            SnapshotMode::Full
        );
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\nsnapshot = \"most\"\n",
        );
        assert_eq!(load_at(dir.path(), TODAY).unwrap_err().line, Some(2));
    }
}
