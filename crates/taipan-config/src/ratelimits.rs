//! `ratelimits` (and the older `[[unsafe.bindings]]` with `type =
//! "ratelimit"`): `env.NAME.limit(key=…)` allows `limit` calls per key in
//! each `period` seconds.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::bindings::{is_identifier, optional_string};
use crate::error::ConfigError;
use crate::raw::RawConfig;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub binding: String,
    /// Counters are shared by every binding with this namespace.
    pub namespace_id: String,
    pub limit: u64,
    /// Seconds: 10 or 60, as on Cloudflare.
    pub period: u64,
}

pub(crate) fn parse(raw: &RawConfig) -> Result<Vec<RateLimit>, ConfigError> {
    let mut out = Vec::new();
    if let Some(value) = raw.get("ratelimits") {
        let Value::Array(items) = value else {
            return Err(raw
                .error("ratelimits", "`ratelimits` must be a list of tables")
                .hint("write [[ratelimits]] entries with name, namespace_id and simple = { limit, period }"));
        };
        for item in items {
            out.push(one(raw, "ratelimits", item)?);
        }
    }
    for item in unsafe_bindings(raw) {
        if item.get("type").and_then(Value::as_str) == Some("ratelimit") {
            out.push(one(raw, "unsafe", &Value::Object(item.clone()))?);
        }
    }
    Ok(out)
}

/// `[[unsafe.bindings]]` entries (only `type = "ratelimit"` is acted on).
pub(crate) fn unsafe_bindings(raw: &RawConfig) -> Vec<&Map<String, Value>> {
    raw.get("unsafe")
        .and_then(|u| u.get("bindings"))
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default()
}

fn one(raw: &RawConfig, key: &str, item: &Value) -> Result<RateLimit, ConfigError> {
    let Value::Object(entry) = item else {
        return Err(raw.error(key, format!("each entry of `{key}` must be a table")));
    };
    let binding = optional_string(raw, key, entry, "name")?
        .or(optional_string(raw, key, entry, "binding")?)
        .filter(|b| is_identifier(b))
        .ok_or_else(|| {
            raw.error(key, "a rate limiting binding needs `name`, an identifier")
                .hint("name = \"MY_RATE_LIMITER\" is what the worker reads: env.MY_RATE_LIMITER")
        })?;
    let namespace_id = match entry.get("namespace_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(raw
                .error(
                    key,
                    format!("the rate limiting binding `{binding}` has no `namespace_id`"),
                )
                .hint("namespace_id = \"1001\": bindings with the same id share their counters"));
        }
    };
    let simple = entry.get("simple").and_then(Value::as_object);
    let field = |name: &str| simple.and_then(|s| s.get(name)).and_then(Value::as_u64);
    let (Some(limit), Some(period)) = (field("limit"), field("period")) else {
        return Err(raw
            .error(
                key,
                format!(
                    "the rate limiting binding `{binding}` needs `simple = {{ limit, period }}`"
                ),
            )
            .hint("e.g. simple = { limit = 100, period = 60 }"));
    };
    if limit == 0 || !matches!(period, 10 | 60) {
        return Err(raw
            .error(
                key,
                format!("the rate limiting binding `{binding}` has limit {limit}, period {period}"),
            )
            .hint("limit is a positive number of calls; period is 10 or 60 seconds"));
    }
    Ok(RateLimit {
        binding,
        namespace_id,
        limit,
        period,
    })
}

#[cfg(test)]
mod tests {
    use crate::fixtures::load_toml as load;

    #[test]
    fn both_forms_and_version_metadata() {
        let cfg = load(
            "[version_metadata]\nbinding = \"VERSION\"\n\
             [[ratelimits]]\nname = \"LIMITER\"\nnamespace_id = \"1001\"\nsimple = { limit = 5, period = 10 }\n\
             [[unsafe.bindings]]\nname = \"OLD\"\ntype = \"ratelimit\"\nnamespace_id = 1002\nsimple = { limit = 100, period = 60 }\n",
        )
        .unwrap();
        let r = &cfg.bindings.ratelimits;
        assert_eq!(
            (
                r[0].binding.as_str(),
                r[0].namespace_id.as_str(),
                r[0].limit,
                r[0].period
            ),
            ("LIMITER", "1001", 5, 10)
        );
        assert_eq!(
            (r[1].binding.as_str(), r[1].namespace_id.as_str()),
            ("OLD", "1002")
        );
        assert_eq!(cfg.bindings.version_metadata.as_deref(), Some("VERSION"));
        let kinds = cfg.bindings.kinds();
        assert!(
            kinds.contains(&("LIMITER", "ratelimit"))
                && kinds.contains(&("VERSION", "version_metadata"))
        );
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }

    #[test]
    fn other_unsafe_bindings_still_warn() {
        let cfg = load("[[unsafe.bindings]]\nname = \"X\"\ntype = \"something\"\n").unwrap();
        assert!(
            cfg.warnings.iter().any(|w| w.contains("unsafe")),
            "{:?}",
            cfg.warnings
        );
    }

    #[test]
    fn bad_rate_limits_are_errors() {
        for (body, needle) in [
            (
                "[[ratelimits]]\nname = \"L\"\nnamespace_id = \"1\"\nsimple = { limit = 5, period = 30 }\n",
                "period is 10 or 60",
            ),
            (
                "[[ratelimits]]\nname = \"L\"\nsimple = { limit = 5, period = 10 }\n",
                "no `namespace_id`",
            ),
            (
                "[[ratelimits]]\nname = \"L\"\nnamespace_id = \"1\"\n",
                "simple = {",
            ),
            ("[version_metadata]\nbinding = 3\n", "needs `binding`"),
        ] {
            let err = load(body).unwrap_err().to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
