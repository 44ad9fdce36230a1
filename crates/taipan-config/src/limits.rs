//! `[limits]`: a worker's overrides of the server's per-worker defaults.

use serde_json::Value;

use crate::error::ConfigError;
use crate::raw::RawConfig;

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
    /// WebSockets open at once (a Taipan extension).
    pub max_websockets: Option<u64>,
    /// How long a Durable Object with only hibernatable WebSockets stays in
    /// memory without events, in milliseconds (a Taipan extension; Workers
    /// hibernates after about 10 s).
    pub websocket_hibernate_ms: Option<u64>,
    /// Bytes one request may move over TCP sockets, in MB (a Taipan extension).
    pub tcp_mb: Option<u64>,
}

/// Read `[limits]`, checking each number against its range.
pub(crate) fn parse(raw: &RawConfig) -> Result<ConfigLimits, ConfigError> {
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
        max_websockets: number("max_websockets", 1, 100_000)?,
        websocket_hibernate_ms: number("websocket_hibernate_ms", 10, 3_600_000)?,
        tcp_mb: number("tcp_mb", 1, 100_000)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{TODAY, project};
    use crate::load::load_at;

    #[test]
    fn limits_are_read_and_checked() {
        let dir = project(
            "wrangler.toml",
            "main = \"src/entry.py\"\n[limits]\ncpu_ms = 50\nmemory_mb = 64\nresponse_body_mb = 5\n",
        );
        let cfg = load_at(dir.path(), TODAY).unwrap();
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
            "main = \"src/entry.py\"\n[limits]\ncpu_ms = 0\n",
        );
        assert!(
            load_at(dir.path(), TODAY)
                .unwrap_err()
                .message
                .contains("cpu_ms")
        );
    }
}
