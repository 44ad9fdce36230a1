//! Route patterns, as wrangler writes them: `example.com/*`,
//! `*.example.com/api/*`, `{ pattern = "...", custom_domain = true }`,
//! and the `route` / `routes` keys that list them.

use std::fmt;

use serde_json::Value;

use crate::error::ConfigError;
use crate::raw::RawConfig;

/// A host pattern plus an optional path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    /// Lowercase host; a leading `*` matches any prefix (`*.example.com`, `*example.com`).
    pub host: String,
    /// Path prefix; a trailing `*` matches anything after it. "/*" when absent.
    pub path: String,
}

impl RoutePattern {
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let trimmed = pattern.trim();
        let without_scheme = trimmed
            .strip_prefix("https://")
            .or_else(|| trimmed.strip_prefix("http://"))
            .unwrap_or(trimmed);
        let (host, path) = match without_scheme.find('/') {
            Some(i) => (&without_scheme[..i], &without_scheme[i..]),
            None => (without_scheme, "/*"),
        };
        let host = host.to_ascii_lowercase();
        let bare = host.trim_start_matches('*').trim_start_matches('.');
        if host.is_empty() || host.contains('*') && !host.starts_with('*') || bare.contains('*') {
            return Err(format!(
                "route {pattern:?}: the host may only start with `*`"
            ));
        }
        if !bare.is_empty()
            && !bare
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
        {
            return Err(format!("route {pattern:?}: {host:?} is not a host name"));
        }
        if path[..path.len().saturating_sub(1)].contains('*') {
            return Err(format!("route {pattern:?}: `*` may only end the path"));
        }
        Ok(Self {
            host,
            path: path.to_string(),
        })
    }

    /// Whether a request for `host` (without port) and `path` matches.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        let host_ok = match self.host.strip_prefix('*') {
            Some(suffix) => host.ends_with(suffix),
            None => host.eq_ignore_ascii_case(&self.host),
        };
        let path_ok = match self.path.strip_suffix('*') {
            Some(prefix) => path.starts_with(prefix),
            None => path == self.path,
        };
        host_ok && path_ok
    }

    /// Longer, less wild patterns win over shorter, wilder ones.
    pub fn specificity(&self) -> (usize, usize) {
        let exact_host = usize::from(!self.host.starts_with('*'));
        (exact_host * 10_000 + self.host.len(), self.path.len())
    }
}

impl fmt::Display for RoutePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.host, self.path)
    }
}

/// Read `route` and `routes`: one pattern or a list, each a string or a `{ pattern }` table.
pub(crate) fn parse(raw: &RawConfig) -> Result<Vec<RoutePattern>, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TODAY, project};
    use crate::load::load_at;

    #[test]
    fn parses_and_matches() {
        let r = RoutePattern::parse("example.com/api/*").unwrap();
        assert!(r.matches("example.com", "/api/x"));
        assert!(r.matches("EXAMPLE.com", "/api/"));
        assert!(!r.matches("example.com", "/other"));
        assert!(!r.matches("www.example.com", "/api/x"));
        let r = RoutePattern::parse("*.example.com/*").unwrap();
        assert!(r.matches("a.example.com", "/"));
        assert!(!r.matches("example.com", "/"));
        let r = RoutePattern::parse("shop.test").unwrap();
        assert_eq!(r.path, "/*");
        assert!(r.matches("shop.test", "/anything"));
        let r = RoutePattern::parse("https://exact.test/only").unwrap();
        assert!(r.matches("exact.test", "/only") && !r.matches("exact.test", "/only/x"));
    }

    #[test]
    fn rejects_bad_patterns() {
        assert!(RoutePattern::parse("exa*mple.com/*").is_err());
        assert!(RoutePattern::parse("example.com/*/x").is_err());
        assert!(RoutePattern::parse("").is_err());
        assert!(RoutePattern::parse("bad host/*").is_err());
    }

    #[test]
    fn specificity_orders_exact_before_wild() {
        let exact = RoutePattern::parse("a.example.com/*").unwrap();
        let wild = RoutePattern::parse("*.example.com/*").unwrap();
        let deeper = RoutePattern::parse("a.example.com/api/*").unwrap();
        assert!(exact.specificity() > wild.specificity());
        assert!(deeper.specificity() > exact.specificity());
    }

    #[test]
    fn routes_from_the_config() {
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\nroutes = [\"a.test/*\", { pattern = \"b.test/api/*\", zone_name = \"b.test\" }]\n",
        );
        let cfg = load_at(dir.path(), TODAY).unwrap();
        assert_eq!(cfg.routes.len(), 2);
        assert_eq!(cfg.routes[1].path, "/api/*");
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\nroute = \"a*b.test/*\"\n",
        );
        assert_eq!(load_at(dir.path(), TODAY).unwrap_err().line, Some(2));
    }
}
