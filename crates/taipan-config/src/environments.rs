//! Wrangler environments: `[env.NAME]` sections chosen with `--env NAME`.
//!
//! Selecting an environment makes a new raw config, as wrangler does:
//! inheritable keys come from the environment when it sets them, else from
//! the top level; non-inheritable keys (vars and every binding) come only
//! from the environment. Everything after this step reads the merged config
//! as if the user had written it so, except the worker's name: resolution
//! makes it `<name>-<env>` unless the environment sets `name`
//! ([`RawConfig::env_sets`]).

use std::collections::BTreeSet;

use serde_json::Value;

use crate::error::ConfigError;
use crate::raw::RawConfig;

/// Keys an environment does not inherit from the top level (wrangler's
/// `notInheritable` keys, as of wrangler 4 in 2026): each environment
/// declares its own or has none.
pub const NON_INHERITABLE_KEYS: &[&str] = &[
    "vars",
    "secrets",
    "define",
    "durable_objects",
    "workflows",
    "kv_namespaces",
    "cloudchamber",
    "containers",
    "send_email",
    "queues",
    "connect",
    "r2_buckets",
    "d1_databases",
    "vectorize",
    "ai_search_namespaces",
    "ai_search",
    "websearch",
    "agent_memory",
    "hyperdrive",
    "services",
    "analytics_engine_datasets",
    "dispatch_namespaces",
    "mtls_certificates",
    "tail_consumers",
    "streaming_tail_consumers",
    "unsafe",
    "browser",
    "ai",
    "images",
    "stream",
    "media",
    "pipelines",
    "secrets_store_secrets",
    "artifacts",
    "unsafe_hello_world",
    "flagship",
    "worker_loaders",
    "ratelimits",
    "vpc_services",
    "vpc_networks",
    "version_metadata",
];

/// Keys that only mean something at the top level: an environment cannot
/// set them, and they stay as the top level has them.
const TOP_LEVEL_ONLY_KEYS: &[&str] = &[
    "env",
    "$schema",
    "keep_vars",
    "send_metrics",
    "site",
    "dev",
    "alias",
    "wasm_modules",
    "text_blobs",
    "data_blobs",
    "dependencies_instrumentation",
    "addresses",
    "pages_build_output_dir",
];

/// An environment's name becomes part of the worker's (`<name>-<env>`):
/// lowercase letters, digits, '-' and '_'.
fn valid_env_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// `raw` as environment `env` sees it; `None` is the top level, where
/// `[env.*]` sections are only validated. Warnings say what the user
/// probably did not mean (a top-level binding the environment lacks).
pub fn select(
    raw: RawConfig,
    env: Option<&str>,
    warnings: &mut Vec<String>,
) -> Result<RawConfig, ConfigError> {
    let sections = sections(&raw)?;
    let Some(env) = env else {
        return Ok(raw);
    };
    let Some(section) = sections
        .iter()
        .find(|(n, _)| n == env)
        .map(|(_, s)| s.clone())
    else {
        let defined: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
        let hint = if defined.is_empty() {
            format!("the config defines no environments; add an [env.{env}] section or drop --env")
        } else {
            format!("environments defined: {}", defined.join(", "))
        };
        return Err(ConfigError::new(
            &raw.path,
            format!("there is no environment {env:?} in the config"),
        )
        .at("env", raw.line_of("env"))
        .hint(hint));
    };

    let mut root = serde_json::Map::new();
    let mut from_env = BTreeSet::new();
    for (key, value) in &raw.root {
        if key == "env" || NON_INHERITABLE_KEYS.contains(&key.as_str()) {
            continue;
        }
        root.insert(key.clone(), value.clone());
    }
    for (key, value) in &section {
        if TOP_LEVEL_ONLY_KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "`{key}` in [env.{env}] of {} is ignored: it is a top-level key",
                raw.path.display()
            ));
            continue;
        }
        root.insert(key.clone(), value.clone());
        from_env.insert(key.clone());
    }
    for key in raw.root.keys() {
        if NON_INHERITABLE_KEYS.contains(&key.as_str()) && !section.contains_key(key) {
            warnings.push(format!(
                "`{key}` is set at the top level of {} but not in [env.{env}]; \
                 it is not inherited, so environment {env:?} has none",
                raw.path.display()
            ));
        }
    }
    Ok(raw.with_environment(env, root, from_env))
}

/// One `[env.NAME]` table: the keys it sets.
type Section = serde_json::Map<String, Value>;

/// The `[env.NAME]` sections, validated: a table of tables with usable names.
fn sections(raw: &RawConfig) -> Result<Vec<(String, Section)>, ConfigError> {
    let Some(value) = raw.root.get("env") else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = value else {
        return Err(raw
            .error("env", "`env` must be a table of environments")
            .hint("write [env.staging] sections, each with the keys that differ"));
    };
    map.iter()
        .map(|(name, section)| {
            if !valid_env_name(name) {
                return Err(raw
                    .error("env", format!("the environment name {name:?} is not usable"))
                    .hint("use lowercase letters, digits, '-' and '_': it becomes part of the worker's name"));
            }
            match section {
                Value::Object(section) => Ok((name.clone(), section.clone())),
                _ => Err(raw.error("env", format!("`env.{name}` must be a table of keys"))),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const CONFIG: &str = r#"name = "app"
main = "src/entry.py"
compatibility_date = "2025-11-01"
routes = ["app.example.com/*"]

[vars]
MODE = "production"

[[kv_namespaces]]
binding = "CACHE"
id = "prod-cache"

[env.staging]
routes = ["staging.example.com/*"]

[env.staging.vars]
MODE = "staging"

[[env.staging.kv_namespaces]]
binding = "CACHE"
id = "staging-cache"

[env.bare]
compatibility_date = "2025-12-01"
"#;

    fn raw() -> RawConfig {
        RawConfig::parse(Path::new("wrangler.toml"), CONFIG.into()).unwrap()
    }

    #[test]
    fn no_env_is_the_top_level() {
        let mut warnings = Vec::new();
        let selected = select(raw(), None, &mut warnings).unwrap();
        assert_eq!(selected.get("vars").unwrap()["MODE"], "production");
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn an_env_inherits_some_keys_and_replaces_the_others() {
        let mut warnings = Vec::new();
        let staging = select(raw(), Some("staging"), &mut warnings).unwrap();
        assert_eq!(staging.get("name").unwrap(), "app");
        assert!(!staging.env_sets("name"));
        assert_eq!(staging.get("main").unwrap(), "src/entry.py");
        assert_eq!(staging.get("vars").unwrap()["MODE"], "staging");
        assert_eq!(
            staging.get("kv_namespaces").unwrap()[0]["id"],
            "staging-cache"
        );
        assert_eq!(staging.get("routes").unwrap()[0], "staging.example.com/*");
        assert!(staging.get("env").is_none());
        assert!(warnings.is_empty(), "{warnings:?}");
        // Lines point into the environment's section.
        assert_eq!(staging.line_of("vars"), Some(16));
        assert_eq!(staging.line_of("routes"), Some(14));
        assert_eq!(staging.line_of("main"), Some(2));
    }

    #[test]
    fn non_inheritable_keys_are_not_inherited_and_the_user_is_told() {
        let mut warnings = Vec::new();
        let bare = select(raw(), Some("bare"), &mut warnings).unwrap();
        assert!(bare.get("vars").is_none());
        assert!(bare.get("kv_namespaces").is_none());
        assert_eq!(bare.get("compatibility_date").unwrap(), "2025-12-01");
        assert_eq!(bare.get("routes").unwrap()[0], "app.example.com/*");
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("`vars`") && w.contains("[env.bare]")),
            "{warnings:?}"
        );
        assert!(
            warnings.iter().any(|w| w.contains("`kv_namespaces`")),
            "{warnings:?}"
        );
    }

    #[test]
    fn an_unknown_env_lists_the_defined_ones() {
        let err = select(raw(), Some("prod"), &mut Vec::new()).unwrap_err();
        assert!(err.message.contains("\"prod\""), "{err}");
        assert_eq!(
            err.hint.as_deref(),
            Some("environments defined: bare, staging")
        );
        let plain = RawConfig::parse(Path::new("wrangler.toml"), "name = \"a\"\n".into()).unwrap();
        let err = select(plain, Some("staging"), &mut Vec::new()).unwrap_err();
        assert!(err.hint.unwrap().contains("defines no environments"));
    }

    #[test]
    fn an_env_may_name_its_worker_and_jsonc_works_too() {
        let raw = RawConfig::parse(
            Path::new("wrangler.jsonc"),
            r#"{
  "name": "app",
  "env": {
    "staging": {
      "name": "app-preview",
      "vars": { "MODE": "staging" }
    }
  }
}"#
            .into(),
        )
        .unwrap();
        let staging = select(raw, Some("staging"), &mut Vec::new()).unwrap();
        assert_eq!(staging.get("name").unwrap(), "app-preview");
        assert!(staging.env_sets("name"));
        assert_eq!(staging.line_of("vars"), Some(6));
    }
}
