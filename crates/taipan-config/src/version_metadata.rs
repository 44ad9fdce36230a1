//! `version_metadata`: the binding that tells a worker which deployed
//! version it is.

use serde_json::Value;

use crate::bindings::is_identifier;
use crate::error::ConfigError;
use crate::raw::RawConfig;

/// `version_metadata`: `env.BINDING` holds the deployed version's id, tag
/// and upload time.
pub(crate) fn parse(raw: &RawConfig) -> Result<Option<String>, ConfigError> {
    const KEY: &str = "version_metadata";
    let Some(value) = raw.get(KEY) else {
        return Ok(None);
    };
    match value.get("binding").and_then(Value::as_str) {
        Some(name) if is_identifier(name) => Ok(Some(name.to_string())),
        _ => Err(raw
            .error(KEY, "`version_metadata` needs `binding`, an identifier")
            .hint("[version_metadata]\nbinding = \"CF_VERSION_METADATA\"")),
    }
}
