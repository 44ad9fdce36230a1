//! `hyperdrive`: `env.DB` describes a PostgreSQL (or MySQL) database the
//! worker connects to with its own driver over TCP (`connectionString`,
//! `host`, `port`, `user`, `password`, `database`).
//!
//! On Cloudflare the binding names a Hyperdrive configuration (`id`) that
//! pools connections to the origin. Taipan has no pooler: the worker
//! connects to the origin itself, and where the origin's connection string
//! comes from depends on how the worker runs (`taipan_bindings::hyperdrive`):
//! `taipan dev` takes it as `wrangler dev` does (the environment variable
//! `CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_<BINDING>`, else
//! `localConnectionString`), `taipan serve` from the worker's secret
//! `HYPERDRIVE_<BINDING>`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::bindings::{binding_name, optional_string};
use crate::error::ConfigError;
use crate::raw::RawConfig;

const KEY: &str = "hyperdrive";

/// The schemes a connection string may have.
pub const SCHEMES: [&str; 3] = ["postgres", "postgresql", "mysql"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HyperdriveBinding {
    pub binding: String,
    /// The Hyperdrive configuration's id (kept; Taipan has no pooler to name).
    pub id: String,
    /// `localConnectionString`: the database `taipan dev` connects to.
    #[serde(default)]
    pub local_connection_string: Option<String>,
}

/// `[[hyperdrive]]` entries: `{ binding, id, localConnectionString }`.
pub(crate) fn parse(raw: &RawConfig) -> Result<Vec<HyperdriveBinding>, ConfigError> {
    let Some(value) = raw.get(KEY) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(raw
            .error(KEY, "`hyperdrive` must be a list of tables")
            .hint("[[hyperdrive]]\nbinding = \"DB\"\nid = \"<HYPERDRIVE_ID>\"\nlocalConnectionString = \"postgres://user:password@localhost:5432/app\""));
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(entry) = item else {
            return Err(raw.error(KEY, "each entry of `hyperdrive` must be a table"));
        };
        let binding = binding_name(raw, KEY, entry)?;
        let id = optional_string(raw, KEY, entry, "id")?.ok_or_else(|| {
            raw.error(KEY, format!("the hyperdrive binding `{binding}` has no `id`"))
                .hint("id = \"<HYPERDRIVE_ID>\": the id `wrangler hyperdrive create` printed (any string for Taipan)")
        })?;
        let local_connection_string = optional_string(raw, KEY, entry, "localConnectionString")?;
        if let Some(url) = &local_connection_string
            && let Err(problem) = check_connection_string(url)
        {
            return Err(raw
                .error(
                    KEY,
                    format!(
                        "the localConnectionString of hyperdrive binding `{binding}` {problem}"
                    ),
                )
                .hint("write it as postgres://user:password@host:5432/database"));
        }
        out.push(HyperdriveBinding {
            binding,
            id,
            local_connection_string,
        });
    }
    Ok(out)
}

/// Whether `url` looks like a database connection string: a known scheme
/// and a host. (The full parse is where it is used.)
pub fn check_connection_string(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("is not a URL (scheme://user:password@host:port/database)".into());
    };
    if !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "has the scheme {scheme:?}; use one of {}",
            SCHEMES.join(", ")
        ));
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err("names no host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::fixtures::load_toml as load;

    #[test]
    fn bindings_and_their_errors() {
        let cfg = load(
            "[[hyperdrive]]\nbinding = \"DB\"\nid = \"abc123\"\n\
             localConnectionString = \"postgres://app:secret@localhost:5432/app\"\n\
             [[hyperdrive]]\nbinding = \"OTHER\"\nid = \"def\"\n",
        )
        .unwrap();
        let h = &cfg.bindings.hyperdrive;
        assert_eq!((h[0].binding.as_str(), h[0].id.as_str()), ("DB", "abc123"));
        assert_eq!(
            h[0].local_connection_string.as_deref(),
            Some("postgres://app:secret@localhost:5432/app")
        );
        assert_eq!(h[1].local_connection_string, None);
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        assert!(cfg.bindings.kinds().contains(&("DB", "hyperdrive")));

        let no_id = load("[[hyperdrive]]\nbinding = \"DB\"\n").unwrap_err();
        assert!(no_id.to_string().contains("has no `id`"), "{no_id}");
        let scheme = load(
            "[[hyperdrive]]\nbinding = \"DB\"\nid = \"x\"\nlocalConnectionString = \"redis://h:1\"\n",
        )
        .unwrap_err();
        assert!(scheme.to_string().contains("\"redis\""), "{scheme}");
        let no_host = load(
            "[[hyperdrive]]\nbinding = \"DB\"\nid = \"x\"\nlocalConnectionString = \"postgres://u:p@:5432/db\"\n",
        )
        .unwrap_err();
        assert!(no_host.to_string().contains("no host"), "{no_host}");
        let twice =
            load("[vars]\nDB = \"x\"\n[[hyperdrive]]\nbinding = \"DB\"\nid = \"x\"\n").unwrap_err();
        assert!(twice.to_string().contains("used twice"), "{twice}");
    }
}
