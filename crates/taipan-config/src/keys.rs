//! The top-level keys Taipan knows: which it reads, which wrangler has but
//! Taipan does not act on yet, and which it ignores, and the warnings for the rest.

use crate::raw::RawConfig;

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
    "queues",
    "ratelimits",
    "version_metadata",
    "workflows",
    "hyperdrive",
];

/// Keys from wrangler that Taipan knows but does not act on yet: a warning, never an error.
const LATER_KEYS: &[&str] = &[
    "ai",
    "vectorize",
    "analytics_engine_datasets",
    "browser",
    "send_email",
    "tail_consumers",
    "dispatch_namespaces",
    "mtls_certificates",
    "unsafe",
    "placement",
    "worker_loaders",
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

/// Warnings for the top-level keys of `raw` that Taipan will not act on:
/// wrangler keys not supported yet (with their line) and unknown keys.
pub(crate) fn warnings(raw: &RawConfig) -> Vec<String> {
    let mut warnings = Vec::new();
    for key in raw.root.keys() {
        let key = key.as_str();
        if key == "unsafe" && only_rate_limits(raw) {
            continue;
        }
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
    warnings
}

/// `unsafe` holds nothing but `bindings` of `type = "ratelimit"`, which
/// Taipan reads (`ratelimits.rs`).
fn only_rate_limits(raw: &RawConfig) -> bool {
    let Some(serde_json::Value::Object(table)) = raw.get("unsafe") else {
        return false;
    };
    let bindings = crate::ratelimits::unsafe_bindings(raw);
    table.keys().all(|k| k == "bindings")
        && !bindings.is_empty()
        && bindings
            .iter()
            .all(|b| b.get("type").and_then(serde_json::Value::as_str) == Some("ratelimit"))
}

#[cfg(test)]
mod tests {
    use crate::fixtures::{TODAY, project};
    use crate::load::load_at;

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
  "ai": { "binding": "AI" },
  "observability": { "enabled": true },
}"#,
        );
        let cfg = load_at(dir.path(), TODAY).unwrap();
        assert_eq!(cfg.vars["GREETING"], "hi");
        assert_eq!(cfg.vars["LIMITS"]["n"], 3);
        assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
        assert!(cfg.warnings[0].contains("`ai`"));
        assert!(cfg.routes.is_empty());
    }
}
