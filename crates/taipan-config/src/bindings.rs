//! Bindings declared in the config, as wrangler writes them: what `env.NAME`
//! gives the worker, and the cron schedules that trigger it.
//!
//! Stored with each deployed version (serde), so every field defaults.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::assets::AssetsConfig;
use crate::error::ConfigError;
use crate::hyperdrive::HyperdriveBinding;
use crate::queues::Queues;
use crate::ratelimits::RateLimit;
use crate::raw::RawConfig;
use crate::workflows::WorkflowBinding;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bindings {
    /// `kv_namespaces`: `{ binding, id }`.
    pub kv: Vec<KvNamespace>,
    /// `d1_databases`: `{ binding, database_name, database_id, migrations_dir }`.
    pub d1: Vec<D1Database>,
    /// `r2_buckets`: `{ binding, bucket_name }`.
    pub r2: Vec<R2Bucket>,
    /// `services`: `{ binding, service }`: another worker on the same server.
    pub services: Vec<ServiceBinding>,
    /// `triggers.crons`: five-field cron expressions, in UTC.
    pub crons: Vec<String>,
    /// `outbound_private_networks` (a Taipan extension): let `fetch` reach
    /// loopback, private and link-local addresses under `taipan serve`.
    pub allow_private_fetch: bool,
    /// `[assets]`: static files served by the host.
    pub assets: Option<AssetsConfig>,
    /// `durable_objects.bindings`: `{ name, class_name, script_name }`.
    pub durable_objects: Vec<DurableObjectBinding>,
    /// `queues.producers` / `queues.consumers`.
    pub queues: Queues,
    /// `ratelimits` (and `unsafe.bindings` of type `ratelimit`).
    pub ratelimits: Vec<RateLimit>,
    /// `version_metadata.binding`.
    pub version_metadata: Option<String>,
    /// `workflows`: `{ name, binding, class_name, script_name }`.
    pub workflows: Vec<WorkflowBinding>,
    /// `hyperdrive`: `{ binding, id, localConnectionString }`.
    pub hyperdrive: Vec<HyperdriveBinding>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableObjectBinding {
    pub binding: String,
    /// The class (in the worker's main module) whose instances are the objects.
    pub class_name: String,
    /// The worker defining the class, when it is another one on the server.
    pub script_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvNamespace {
    pub binding: String,
    /// Storage identity: the namespace `id` (or the binding name when absent).
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct D1Database {
    pub binding: String,
    pub database_name: String,
    /// Storage identity: `database_id`, else `database_name`.
    pub id: String,
    /// Relative to the project: `migrations_dir` (default `migrations`).
    pub migrations_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct R2Bucket {
    pub binding: String,
    pub bucket_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceBinding {
    pub binding: String,
    pub service: String,
    /// `entrypoint`: a class of the other worker's main module other than
    /// `Default` that `fetch` and RPC calls go to.
    #[serde(default)]
    pub entrypoint: Option<String>,
}

impl Bindings {
    /// `(binding name, kind)` for every binding: what the guest builds `env` from.
    pub fn kinds(&self) -> Vec<(&str, &'static str)> {
        let mut kinds = Vec::new();
        kinds.extend(self.kv.iter().map(|b| (b.binding.as_str(), "kv")));
        kinds.extend(self.d1.iter().map(|b| (b.binding.as_str(), "d1")));
        kinds.extend(self.r2.iter().map(|b| (b.binding.as_str(), "r2")));
        kinds.extend(
            self.services
                .iter()
                .map(|b| (b.binding.as_str(), "service")),
        );
        kinds.extend(
            self.durable_objects
                .iter()
                .map(|b| (b.binding.as_str(), "durable_object")),
        );
        if let Some(name) = self.assets.as_ref().and_then(|a| a.binding.as_deref()) {
            kinds.push((name, "assets"));
        }
        kinds.extend(
            self.queues
                .producers
                .iter()
                .map(|b| (b.binding.as_str(), "queue")),
        );
        kinds.extend(
            self.ratelimits
                .iter()
                .map(|b| (b.binding.as_str(), "ratelimit")),
        );
        kinds.extend(
            self.workflows
                .iter()
                .map(|b| (b.binding.as_str(), "workflow")),
        );
        if let Some(name) = &self.version_metadata {
            kinds.push((name, "version_metadata"));
        }
        kinds.extend(
            self.hyperdrive
                .iter()
                .map(|b| (b.binding.as_str(), "hyperdrive")),
        );
        kinds
    }

    pub fn d1_by_name(&self, name: &str) -> Option<&D1Database> {
        self.d1
            .iter()
            .find(|d| d.database_name == name || d.binding == name || d.id == name)
    }
}

/// Read every binding table of `raw`; names must be unique across kinds and vars.
pub fn parse(
    raw: &RawConfig,
    project_dir: &Path,
    vars: &BTreeSet<String>,
) -> Result<Bindings, ConfigError> {
    let mut bindings = Bindings {
        assets: crate::assets::parse(raw, project_dir)?,
        ..Bindings::default()
    };
    for entry in entries(raw, "kv_namespaces")? {
        let binding = binding_name(raw, "kv_namespaces", &entry)?;
        let id =
            optional_string(raw, "kv_namespaces", &entry, "id")?.unwrap_or_else(|| binding.clone());
        check_storage_id(raw, "kv_namespaces", &id)?;
        bindings.kv.push(KvNamespace { binding, id });
    }
    for entry in entries(raw, "d1_databases")? {
        let binding = binding_name(raw, "d1_databases", &entry)?;
        let database_name = optional_string(raw, "d1_databases", &entry, "database_name")?
            .unwrap_or_else(|| binding.clone());
        let id = optional_string(raw, "d1_databases", &entry, "database_id")?
            .unwrap_or_else(|| database_name.clone());
        check_storage_id(raw, "d1_databases", &id)?;
        let migrations_dir = optional_string(raw, "d1_databases", &entry, "migrations_dir")?
            .unwrap_or_else(|| "migrations".into());
        bindings.d1.push(D1Database {
            binding,
            database_name,
            id,
            migrations_dir: migrations_dir.into(),
        });
    }
    for entry in entries(raw, "r2_buckets")? {
        let binding = binding_name(raw, "r2_buckets", &entry)?;
        let bucket_name = optional_string(raw, "r2_buckets", &entry, "bucket_name")?
            .unwrap_or_else(|| binding.clone());
        check_storage_id(raw, "r2_buckets", &bucket_name)?;
        bindings.r2.push(R2Bucket {
            binding,
            bucket_name,
        });
    }
    for entry in entries(raw, "services")? {
        let binding = binding_name(raw, "services", &entry)?;
        let service = optional_string(raw, "services", &entry, "service")?.ok_or_else(|| {
            raw.error(
                "services",
                format!("service binding `{binding}` has no `service`"),
            )
            .hint("name the worker it calls: { binding = \"API\", service = \"api-worker\" }")
        })?;
        let entrypoint = optional_string(raw, "services", &entry, "entrypoint")?;
        if let Some(name) = &entrypoint
            && (!is_identifier(name) || name.starts_with('_'))
        {
            return Err(raw
                .error(
                    "services",
                    format!("the entrypoint {name:?} of service binding `{binding}` is not a class name"),
                )
                .hint("name a WorkerEntrypoint class of the other worker's main module: entrypoint = \"AdminApi\""));
        }
        bindings.services.push(ServiceBinding {
            binding,
            service,
            entrypoint,
        });
    }
    bindings.durable_objects = parse_durable_objects(raw)?;
    bindings.queues = crate::queues::parse(raw)?;
    bindings.ratelimits = crate::ratelimits::parse(raw)?;
    bindings.version_metadata = crate::version_metadata::parse(raw)?;
    bindings.workflows = crate::workflows::parse(raw)?;
    bindings.hyperdrive = crate::hyperdrive::parse(raw)?;
    check_migrations(raw)?;
    bindings.crons = parse_crons(raw)?;
    bindings.allow_private_fetch = match raw.get("outbound_private_networks") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(raw.error(
                "outbound_private_networks",
                "`outbound_private_networks` must be true or false",
            ));
        }
    };

    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for (name, kind) in bindings.kinds() {
        if vars.contains(name) || !seen.insert(name) {
            return Err(ConfigError::new(
                &raw.path,
                format!("the binding name `{name}` ({kind}) is used twice"),
            )
            .hint("every var and binding needs its own name on `env`"));
        }
    }
    Ok(bindings)
}

fn entries(raw: &RawConfig, key: &str) -> Result<Vec<serde_json::Map<String, Value>>, ConfigError> {
    match raw.get(key) {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::Object(map) => Ok(map.clone()),
                _ => Err(raw.error(key, format!("each entry of `{key}` must be a table"))),
            })
            .collect(),
        Some(_) => Err(raw
            .error(key, format!("`{key}` must be a list of tables"))
            .hint(format!("write [[{key}]] entries in TOML, or a JSON array"))),
    }
}

pub(crate) fn optional_string(
    raw: &RawConfig,
    key: &str,
    entry: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, ConfigError> {
    match entry.get(field) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(_) => Err(raw.error(
            key,
            format!("`{field}` in `{key}` must be a non-empty string"),
        )),
    }
}

pub(crate) fn binding_name(
    raw: &RawConfig,
    key: &str,
    entry: &serde_json::Map<String, Value>,
) -> Result<String, ConfigError> {
    let name = optional_string(raw, key, entry, "binding")?.ok_or_else(|| {
        raw.error(key, format!("an entry of `{key}` has no `binding`"))
            .hint("`binding` is the name the worker reads: env.MY_BINDING")
    })?;
    if !is_identifier(&name) {
        return Err(raw
            .error(
                key,
                format!("the binding name {name:?} is not a valid identifier"),
            )
            .hint("use letters, digits and underscores, e.g. MY_KV"));
    }
    Ok(name)
}

/// Storage ids (KV ids, D1 database ids, bucket names): any non-empty string
/// (placeholders like `<YOUR_KV_NAMESPACE_ID>` included, as wrangler accepts
/// them for local state); the bindings crate maps each to a safe file name.
/// Bounded so a file name derived from it stays short.
pub const MAX_STORAGE_ID_BYTES: usize = 1024;

fn check_storage_id(raw: &RawConfig, key: &str, id: &str) -> Result<(), ConfigError> {
    if id.len() <= MAX_STORAGE_ID_BYTES {
        Ok(())
    } else {
        Err(raw
            .error(
                key,
                format!("an id or name in `{key}` is {} bytes long", id.len()),
            )
            .hint(format!("use at most {MAX_STORAGE_ID_BYTES} bytes")))
    }
}

fn parse_durable_objects(raw: &RawConfig) -> Result<Vec<DurableObjectBinding>, ConfigError> {
    const KEY: &str = "durable_objects";
    let Some(table) = raw.get(KEY) else {
        return Ok(Vec::new());
    };
    let list = match table {
        Value::Object(map) => map.get("bindings").cloned().unwrap_or(Value::Array(vec![])),
        _ => return Err(raw.error(KEY, "`durable_objects` must be a table with `bindings`")),
    };
    let Value::Array(items) = list else {
        return Err(raw
            .error(KEY, "`durable_objects.bindings` must be a list of tables")
            .hint("write [[durable_objects.bindings]] entries with `name` and `class_name`"));
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(entry) = item else {
            return Err(raw.error(
                KEY,
                "each entry of `durable_objects.bindings` must be a table",
            ));
        };
        // wrangler calls the env name `name` here (`binding` is accepted too).
        let binding = optional_string(raw, KEY, &entry, "name")?
            .or(optional_string(raw, KEY, &entry, "binding")?)
            .ok_or_else(|| {
                raw.error(KEY, "a Durable Object binding has no `name`")
                    .hint("`name` is what the worker reads: env.MY_OBJECT")
            })?;
        if !is_identifier(&binding) {
            return Err(raw
                .error(
                    KEY,
                    format!("the binding name {binding:?} is not a valid identifier"),
                )
                .hint("use letters, digits and underscores, e.g. COUNTER"));
        }
        let class_name = optional_string(raw, KEY, &entry, "class_name")?
            .filter(|c| is_identifier(c))
            .ok_or_else(|| {
                raw.error(KEY, format!("the Durable Object binding `{binding}` needs `class_name`, a Python class name"))
                    .hint("name the DurableObject subclass in the worker's main module: class_name = \"Counter\"")
            })?;
        let script_name = optional_string(raw, KEY, &entry, "script_name")?;
        out.push(DurableObjectBinding {
            binding,
            class_name,
            script_name,
        });
    }
    Ok(out)
}

/// `migrations` declare which classes have storage; Taipan creates an
/// object's storage on first use, so it only checks their shape.
fn check_migrations(raw: &RawConfig) -> Result<(), ConfigError> {
    let ok = match raw.get("migrations") {
        None => true,
        Some(Value::Array(items)) => items.iter().all(|m| {
            m.as_object()
                .is_some_and(|m| m.get("tag").is_some_and(Value::is_string))
        }),
        Some(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(raw
            .error(
                "migrations",
                "`migrations` must be a list of tables, each with a `tag`",
            )
            .hint("[[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [\"Counter\"]"))
    }
}

fn parse_crons(raw: &RawConfig) -> Result<Vec<String>, ConfigError> {
    let Some(triggers) = raw.get("triggers") else {
        return Ok(Vec::new());
    };
    let crons = match triggers {
        Value::Object(map) => map.get("crons"),
        _ => return Err(raw.error("triggers", "`triggers` must be a table with `crons`")),
    };
    let Some(crons) = crons else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = crons else {
        return Err(raw.error("triggers", "`triggers.crons` must be a list of strings"));
    };
    items
        .iter()
        .map(|item| {
            let expr = item.as_str().ok_or_else(|| {
                raw.error("triggers", "`triggers.crons` must be a list of strings")
            })?;
            crate::cron::Schedule::parse(expr).map_err(|e| {
                raw.error("triggers", format!("the cron expression {expr:?} is invalid: {e}"))
                    .hint("use five fields, minute hour day-of-month month day-of-week, e.g. \"*/5 * * * *\"")
            })?;
            Ok(expr.to_string())
        })
        .collect()
}

pub(crate) fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::fixtures::{TODAY, project};
    use crate::load::load_at;

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
}
