//! `hyperdrive` bindings: what `env.DB` tells the worker about its database
//! (`connectionString`, `host`, `port`, `user`, `password`, `database`), and
//! the one private destination a binding lets `taipan serve` reach.
//!
//! The guest holds these values itself (like `version_metadata`): there is
//! no host call. The worker connects with its own driver (pg8000, …) over
//! the sandbox's TCP sockets, straight to the origin: Taipan has no pooler.
//!
//! Where the origin's connection string comes from:
//! - `taipan dev`, as `wrangler dev`: the environment variable
//!   `CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_<BINDING>` (or the older
//!   `WRANGLER_HYPERDRIVE_LOCAL_CONNECTION_STRING_<BINDING>`), else the
//!   binding's `localConnectionString`; neither is an error at start-up.
//! - `taipan serve`: the worker's secret `HYPERDRIVE_<BINDING>` (`taipan
//!   secret put HYPERDRIVE_DB`), never the config's local value (a
//!   production credential does not belong in a committed file). Missing,
//!   the worker still deploys and `env.DB` raises an error naming the
//!   secret when it is read.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Result, bail};
use serde_json::{Value, json};
use taipan_config::Bindings;
use taipan_config::hyperdrive::check_connection_string;

/// The environment variables `taipan dev` reads, in order (wrangler's names).
pub const DEV_ENV_PREFIXES: [&str; 2] = [
    "CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_",
    "WRANGLER_HYPERDRIVE_LOCAL_CONNECTION_STRING_",
];

/// The secret `taipan serve` reads a binding's connection string from.
pub fn secret_name(binding: &str) -> String {
    format!("HYPERDRIVE_{binding}")
}

/// A database, as a connection string and its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub connection_string: String,
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Origin {
    /// Parse `scheme://user:password@host:port/database?options`; the port
    /// defaults to the scheme's (5432, MySQL 3306), user and password are
    /// percent-decoded.
    pub fn parse(connection_string: &str) -> Result<Self, String> {
        check_connection_string(connection_string)?;
        let url =
            url::Url::parse(connection_string).map_err(|e| format!("is not a valid URL ({e})"))?;
        let scheme = url.scheme().to_ascii_lowercase();
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err("names no host".into()),
        };
        let default_port = if scheme == "mysql" { 3306 } else { 5432 };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Ok(Self {
            connection_string: connection_string.to_string(),
            host,
            port: url.port().unwrap_or(default_port),
            user: decode(url.username()),
            password: decode(url.password().unwrap_or("")),
            database: decode(url.path().trim_start_matches('/')),
            scheme,
        })
    }

    fn describe(&self) -> Value {
        json!({
            "kind": "hyperdrive",
            "connectionString": self.connection_string,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        })
    }

    /// Whether a connection to `addr` is one to this origin (its host
    /// resolved now, as the guest's own lookup just did).
    async fn is(&self, addr: SocketAddr) -> bool {
        if addr.port() != self.port {
            return false;
        }
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return same_ip(ip, addr.ip());
        }
        match tokio::net::lookup_host((host, self.port)).await {
            Ok(mut addrs) => addrs.any(|a| same_ip(a.ip(), addr.ip())),
            Err(_) => false,
        }
    }
}

/// `ip` and `other` name the same address (an IPv4-mapped IPv6 address is its IPv4 one).
fn same_ip(ip: IpAddr, other: IpAddr) -> bool {
    ip.to_canonical() == other.to_canonical()
}

/// A worker's `hyperdrive` bindings, resolved for how it runs.
#[derive(Debug, Default)]
pub struct Hyperdrive {
    /// binding → its origin, or why it has none (serve without the secret).
    entries: BTreeMap<String, Result<Origin, String>>,
}

impl Hyperdrive {
    /// Resolve every binding of `config`: `dev` reads `env` (the process
    /// environment) and the config; serve reads `secrets`.
    pub fn resolve(
        config: &Bindings,
        dev: bool,
        secrets: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let mut entries = BTreeMap::new();
        for binding in &config.hyperdrive {
            let name = &binding.binding;
            let entry = if dev {
                let from_env = DEV_ENV_PREFIXES.iter().find_map(|prefix| {
                    let var = format!("{prefix}{name}");
                    env(&var).filter(|v| !v.is_empty()).map(|v| (var, v))
                });
                let (source, value) = match (from_env, &binding.local_connection_string) {
                    (Some((var, value)), _) => (format!("the environment variable {var}"), value),
                    (None, Some(value)) => ("localConnectionString".to_string(), value.clone()),
                    (None, None) => bail!(
                        "the hyperdrive binding `{name}` has no database for `taipan dev`: set \
                         localConnectionString = \"postgres://user:password@localhost:5432/db\" in \
                         its [[hyperdrive]] entry, or the environment variable {}{name}",
                        DEV_ENV_PREFIXES[0]
                    ),
                };
                match Origin::parse(&value) {
                    Ok(origin) => Ok(origin),
                    Err(problem) => bail!(
                        "the connection string of hyperdrive binding `{name}` (from {source}) {problem}"
                    ),
                }
            } else {
                let secret = secret_name(name);
                match secrets.get(&secret) {
                    Some(value) => Origin::parse(value).map_err(|problem| {
                        format!(
                            "the secret {secret} (the connection string of hyperdrive binding \
                             `{name}`) {problem}"
                        )
                    }),
                    None => Err(format!(
                        "the hyperdrive binding `{name}` has no database: taipan serve reads its \
                         connection string from the worker's secret {secret} (taipan secret put \
                         {secret}, then the value on standard input)"
                    )),
                }
            };
            entries.insert(name.clone(), entry);
        }
        Ok(Self { entries })
    }

    /// What the guest's `env.NAME` holds: the origin's parts, or the error
    /// to raise when it is read.
    pub fn describe(&self, binding: &str) -> Value {
        match self.entries.get(binding) {
            Some(Ok(origin)) => origin.describe(),
            Some(Err(message)) => json!({"kind": "hyperdrive", "error": message}),
            None => {
                json!({"kind": "hyperdrive", "error": format!("no hyperdrive binding {binding:?}")})
            }
        }
    }

    /// Whether `addr` is the origin of one of the bindings: the one private
    /// destination a binding lets `taipan serve` reach.
    pub async fn is_origin(&self, addr: SocketAddr) -> bool {
        for origin in self.entries.values().flatten() {
            if origin.is(addr).await {
                return true;
            }
        }
        false
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taipan_config::hyperdrive::HyperdriveBinding;

    fn config(local: Option<&str>) -> Bindings {
        Bindings {
            hyperdrive: vec![HyperdriveBinding {
                binding: "DB".into(),
                id: "abc".into(),
                local_connection_string: local.map(String::from),
            }],
            ..Bindings::default()
        }
    }

    #[test]
    fn parses_connection_strings() {
        let o =
            Origin::parse("postgres://app%40x:p%3Ass@db.example.com/shop?sslmode=disable").unwrap();
        assert_eq!(
            (
                o.host.as_str(),
                o.port,
                o.user.as_str(),
                o.password.as_str(),
                o.database.as_str()
            ),
            ("db.example.com", 5432, "app@x", "p:ss", "shop")
        );
        let m = Origin::parse("mysql://root@[::1]:3307/db").unwrap();
        assert_eq!(
            (m.host.as_str(), m.port, m.password.as_str()),
            ("::1", 3307, "")
        );
        assert!(Origin::parse("http://x/y").unwrap_err().contains("scheme"));
        assert!(Origin::parse("postgres://u@:5432/db").is_err());
    }

    #[test]
    fn dev_reads_the_environment_then_the_config() {
        let none = BTreeMap::new();
        let env_var = |name: &str| {
            (name == "CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_DB")
                .then(|| "postgres://env@127.0.0.1:6000/e".to_string())
        };
        let from_env =
            Hyperdrive::resolve(&config(Some("postgres://cfg@h/c")), true, &none, env_var).unwrap();
        assert_eq!(from_env.describe("DB")["user"], "env");
        let from_config =
            Hyperdrive::resolve(&config(Some("postgres://cfg@h/c")), true, &none, |_| None)
                .unwrap();
        assert_eq!(from_config.describe("DB")["user"], "cfg");
        assert_eq!(from_config.describe("DB")["port"], 5432);
        let missing = Hyperdrive::resolve(&config(None), true, &none, |_| None).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_DB"),
            "{missing}"
        );
    }

    #[tokio::test]
    async fn serve_reads_the_secret_and_allows_only_its_origin() {
        let local = config(Some("postgres://cfg@127.0.0.1:5432/c"));
        let without = Hyperdrive::resolve(&local, false, &BTreeMap::new(), |_| None).unwrap();
        let error = without.describe("DB")["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(error.contains("HYPERDRIVE_DB"), "{error}");
        assert!(!without.is_origin("127.0.0.1:5432".parse().unwrap()).await);

        let secrets = BTreeMap::from([(
            "HYPERDRIVE_DB".to_string(),
            "postgres://u:p@127.0.0.1:6543/prod".to_string(),
        )]);
        let with = Hyperdrive::resolve(&local, false, &secrets, |_| None).unwrap();
        assert_eq!(with.describe("DB")["database"], "prod");
        assert!(with.is_origin("127.0.0.1:6543".parse().unwrap()).await);
        assert!(
            with.is_origin("[::ffff:127.0.0.1]:6543".parse().unwrap())
                .await
        );
        assert!(!with.is_origin("127.0.0.1:5432".parse().unwrap()).await);
        assert!(!with.is_origin("127.0.0.2:6543".parse().unwrap()).await);
    }
}
