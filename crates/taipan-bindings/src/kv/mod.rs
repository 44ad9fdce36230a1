//! KV namespaces (`kv_namespaces`): get, getWithMetadata, put, delete, list,
//! with expiry. The binding here checks arguments against Cloudflare's
//! documented limits, gives Cloudflare's error messages and encodes the
//! replies; a [`KvStore`] keeps the entries: a SQLite file per namespace on
//! a single node ([`sqlite`]), or the cluster database's shared `kv` table
//! in cluster mode ([`postgres`]).

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use taipan_runtime::host::full_body;

use crate::Binding;
use crate::protocol::{BindingError, Call, Reply};
use crate::store::Database;

/// Cloudflare's KV limits.
pub const MAX_KEY_BYTES: usize = 512;
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
pub const MAX_METADATA_BYTES: usize = 1024;
pub const MIN_TTL_SECONDS: i64 = 60;
pub const MAX_LIST_LIMIT: i64 = 1000;

/// An entry as `get` finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: Vec<u8>,
    /// The metadata as JSON text, as `put` gave it.
    pub metadata: Option<String>,
}

/// An entry as `list` shows it: no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub metadata: Option<String>,
    /// Seconds since the epoch.
    pub expiration: Option<i64>,
}

/// Where one namespace's entries live. Keys are compared and listed by their
/// UTF-8 bytes; an entry whose `expiration` (seconds since the epoch) is at
/// or before `now` is invisible to `get` and `list`. The binding has checked
/// keys and limits already.
pub trait KvStore: Send + Sync + 'static {
    /// The entry at `key`, unless there is none or it has expired at `now`.
    fn get(&self, key: &str, now: i64) -> BoxFuture<'static, Result<Option<Found>, BindingError>>;
    /// Create or replace the entry at `key` (value, metadata and expiration).
    fn put(
        &self,
        key: &str,
        value: Bytes,
        metadata: Option<String>,
        expiration: Option<i64>,
    ) -> BoxFuture<'static, Result<(), BindingError>>;
    /// Remove the entry at `key`, if any.
    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), BindingError>>;
    /// Up to `limit` entries unexpired at `now` whose keys start with
    /// `prefix` (exactly: no character is a wildcard) and sort after `after`
    /// (`""`: from the first), in byte order of their keys.
    fn list(
        &self,
        prefix: &str,
        after: &str,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Listed>, BindingError>>;
}

/// A namespace as a worker's binding.
pub struct KvNamespace {
    store: Arc<dyn KvStore>,
}

impl KvNamespace {
    pub fn new(store: Arc<dyn KvStore>) -> Self {
        Self { store }
    }

    /// A namespace kept in its own SQLite database (a single node's).
    pub fn open(db: Database) -> anyhow::Result<Self> {
        Ok(Self::new(sqlite::SqliteKv::open(db)?))
    }

    async fn get(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?;
        Ok(match self.store.get(key, now()).await? {
            None => Reply::miss(),
            Some(Found { value, metadata }) => {
                let metadata = metadata
                    .and_then(|m| serde_json::from_str::<Value>(&m).ok())
                    .unwrap_or(Value::Null);
                Reply::Payload {
                    meta: json!({"metadata": metadata}),
                    body: full_body(value),
                }
            }
        })
    }

    async fn put(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?.to_string();
        let now = now();
        let expiration = match (call.opt_i64("expiration")?, call.opt_i64("expirationTtl")?) {
            (_, Some(ttl)) if ttl < MIN_TTL_SECONDS => {
                return Err(BindingError::range_error(format!(
                    "KV PUT failed: 400 Invalid expiration_ttl of {ttl}. Expiration TTL must be at least {MIN_TTL_SECONDS}."
                )));
            }
            (_, Some(ttl)) => Some(now + ttl),
            (Some(at), None) if at < now + MIN_TTL_SECONDS => {
                return Err(BindingError::range_error(format!(
                    "KV PUT failed: 400 Invalid expiration of {at}. Expiration times must be at least {MIN_TTL_SECONDS} seconds in the future."
                )));
            }
            (at, None) => at,
        };
        let metadata = match call.args.get("metadata") {
            None | Some(Value::Null) => None,
            Some(m) => {
                let text = m.to_string();
                if text.len() > MAX_METADATA_BYTES {
                    return Err(BindingError::range_error(format!(
                        "KV PUT failed: 413 Metadata length of {} exceeds limit of {MAX_METADATA_BYTES}.",
                        text.len()
                    )));
                }
                Some(text)
            }
        };
        let value = call.payload(MAX_VALUE_BYTES, "the KV value").await?;
        self.store.put(&key, value, metadata, expiration).await?;
        Ok(Reply::Json(Value::Null))
    }

    async fn delete(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?;
        self.store.delete(key).await?;
        Ok(Reply::Json(Value::Null))
    }

    async fn list(&self, call: Call) -> Result<Reply, BindingError> {
        let prefix = call.opt_str("prefix");
        let limit = call.opt_i64("limit")?.unwrap_or(MAX_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(BindingError::range_error(format!(
                "KV list failed: Invalid key_count_limit of {limit}; the limit must be from 1 to {MAX_LIST_LIMIT}"
            )));
        }
        let limit = limit as usize;
        let after = match call.opt_str("cursor") {
            "" => String::new(),
            cursor => decode_cursor(cursor)
                .ok_or_else(|| BindingError::type_error("KV list failed: invalid cursor"))?,
        };
        // One more than asked: whether it comes tells if the list is complete.
        let rows = self.store.list(prefix, &after, now(), limit + 1).await?;
        let complete = rows.len() <= limit;
        let mut keys = Vec::new();
        for Listed {
            key,
            metadata,
            expiration,
        } in rows.into_iter().take(limit)
        {
            let mut entry = json!({"name": key});
            if let Some(e) = expiration {
                entry["expiration"] = json!(e);
            }
            if let Some(m) = metadata.and_then(|m| serde_json::from_str::<Value>(&m).ok()) {
                entry["metadata"] = m;
            }
            keys.push(entry);
        }
        let mut result = json!({"keys": keys, "list_complete": complete});
        if !complete && let Some(last) = keys.last().and_then(|k| k["name"].as_str()) {
            result["cursor"] = json!(encode_cursor(last));
        }
        Ok(Reply::Json(result))
    }
}

impl Binding for KvNamespace {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            match op.as_str() {
                "get" => self.get(call).await,
                "put" => self.put(call).await,
                "delete" => self.delete(call).await,
                "list" => self.list(call).await,
                other => Err(BindingError::type_error(format!(
                    "KV has no operation {other:?}"
                ))),
            }
        })
    }
}

fn check_key(key: &str) -> Result<&str, BindingError> {
    if key.is_empty() || key == "." || key == ".." {
        return Err(BindingError::type_error(format!(
            "KV key {key:?} is not allowed: keys must not be empty, \".\" or \"..\""
        )));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(BindingError::range_error(format!(
            "KV key is {} bytes; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    Ok(key)
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn encode_cursor(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        assert_eq!(
            decode_cursor(&encode_cursor("a/b ☃")).as_deref(),
            Some("a/b ☃")
        );
        assert!(decode_cursor("!!").is_none());
    }

    /// A call as the guest makes it, through the wire format
    /// (`crate::testing`); a failed call panics.
    async fn call(kv: &Arc<dyn Binding>, op: &str, args: Value, payload: &[u8]) -> (Value, Bytes) {
        crate::testing::call(kv.clone(), op, args.clone(), payload)
            .await
            .unwrap_or_else(|e| panic!("{op} {args}: {}: {}", e.name, e.message))
    }

    async fn fails(kv: &Arc<dyn Binding>, op: &str, args: Value, payload: &[u8]) -> BindingError {
        match crate::testing::call(kv.clone(), op, args.clone(), payload).await {
            Ok(reply) => panic!("{op} {args} succeeded: {reply:?}"),
            Err(e) => e,
        }
    }

    /// The names a list call answers, and its cursor.
    async fn names(kv: &Arc<dyn Binding>, args: Value) -> (Vec<String>, Option<String>) {
        let (list, _) = call(kv, "list", args, b"").await;
        let names = list["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["name"].as_str().expect("a name").to_string())
            .collect();
        let cursor = list["cursor"].as_str().map(String::from);
        assert_eq!(list["list_complete"], cursor.is_none(), "{list}");
        (names, cursor)
    }

    /// What every backend must do, checked through the binding as a guest
    /// calls it, and through the store alone where the binding cannot go
    /// (entries that expire in the past, thousands of keys quickly).
    async fn behaves_as_workers_kv(store: Arc<dyn KvStore>) {
        let kv: Arc<dyn Binding> = Arc::new(KvNamespace::new(store.clone()));

        // A value with newlines: only the first one ends the arguments.
        let meta = json!({"note": "é\n☃"});
        let args = json!({"key": "a", "metadata": meta});
        call(&kv, "put", args, b"line 1\nline 2\n").await;
        let (got, value) = call(&kv, "get", json!({"key": "a"}), b"").await;
        assert_eq!(got, json!({"metadata": meta}));
        assert_eq!(&value[..], b"line 1\nline 2\n");
        // Overwriting replaces value and metadata alike.
        let every_byte: Vec<u8> = (0..=255).collect();
        call(&kv, "put", json!({"key": "a"}), &every_byte).await;
        let (got, value) = call(&kv, "get", json!({"key": "a"}), b"").await;
        assert_eq!(
            (got, &value[..]),
            (json!({"metadata": null}), &every_byte[..])
        );
        // A miss is meta null (as R2's), with no payload.
        let (missing, nothing) = call(&kv, "get", json!({"key": "b"}), b"").await;
        assert_eq!((missing, &nothing[..]), (Value::Null, &b""[..]));
        // An empty value is a value.
        call(&kv, "put", json!({"key": "c"}), b"").await;
        let (found, empty) = call(&kv, "get", json!({"key": "c"}), b"").await;
        assert_eq!((found, &empty[..]), (json!({"metadata": null}), &b""[..]));
        call(&kv, "delete", json!({"key": "a"}), b"").await;
        let (gone, _) = call(&kv, "get", json!({"key": "a"}), b"").await;
        assert_eq!(gone, Value::Null);
        call(&kv, "delete", json!({"key": "a"}), b"").await;
        call(&kv, "delete", json!({"key": "c"}), b"").await;

        // Byte order, and prefixes whose characters are SQL wildcards or
        // escapes elsewhere, or the last code point.
        let mut keys = [
            "B",
            "a",
            "a%",
            "a%b",
            "a_",
            "a_b",
            "ab",
            "a\\",
            "a\\b",
            "a\\%",
            "z",
            "\u{7f}",
            "é",
            "😀",
            "a%\u{10FFFF}",
            "\u{10FFFF}",
            "\u{10FFFF}x",
            "%",
            "_",
        ]
        .map(String::from);
        for key in &keys {
            call(
                &kv,
                "put",
                json!({"key": key, "metadata": {"k": key}}),
                key.as_bytes(),
            )
            .await;
        }
        keys.sort();
        let (all, _) = names(&kv, json!({})).await;
        assert_eq!(all, keys);
        let under = |prefix: &str| -> Vec<String> {
            keys.iter()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        };
        for prefix in [
            "a%",
            "a_",
            "a\\",
            "%",
            "_",
            "é",
            "\u{10FFFF}",
            "a",
            "ab",
            "q",
        ] {
            let (found, _) = names(&kv, json!({"prefix": prefix})).await;
            assert_eq!(found, under(prefix), "prefix {prefix:?}");
        }
        assert_eq!(under("a_"), ["a_", "a_b"]);
        // Entries carry their metadata and expiration.
        let (list, _) = call(&kv, "list", json!({"prefix": "é"}), b"").await;
        assert_eq!(list["keys"], json!([{"name": "é", "metadata": {"k": "é"}}]));
        let ttl = json!({"key": "é", "expirationTtl": 3600});
        call(&kv, "put", ttl, b"v").await;
        let (list, _) = call(&kv, "list", json!({"prefix": "é"}), b"").await;
        let expiration = list["keys"][0]["expiration"]
            .as_i64()
            .expect("an expiration");
        assert!(
            (now() + 3590..=now() + 3600).contains(&expiration),
            "{list}"
        );
        assert_eq!(list["keys"][0].get("metadata"), None, "{list}");

        // Expired entries are invisible, to the binding (now) and the store.
        let past = now() - 1;
        store
            .put("gone", Bytes::from_static(b"x"), None, Some(past))
            .await
            .unwrap();
        let (missing, _) = call(&kv, "get", json!({"key": "gone"}), b"").await;
        assert_eq!(missing, Value::Null);
        let (all, _) = names(&kv, json!({"prefix": "go"})).await;
        assert!(all.is_empty(), "{all:?}");
        store
            .put("later", Bytes::from_static(b"y"), None, Some(1000))
            .await
            .unwrap();
        let before = store.get("later", 999).await.unwrap();
        assert_eq!(before.map(|f| f.value), Some(b"y".to_vec()));
        assert_eq!(store.get("later", 1000).await.unwrap(), None);
        let listed = store.list("lat", "", 999, 10).await.unwrap();
        assert_eq!(
            listed.iter().map(|l| l.expiration).collect::<Vec<_>>(),
            [Some(1000)]
        );
        assert!(store.list("lat", "", 1000, 10).await.unwrap().is_empty());
        // Overwriting an expired entry brings it back for good.
        store
            .put("gone", Bytes::from_static(b"z"), None, None)
            .await
            .unwrap();
        let (found, value) = call(&kv, "get", json!({"key": "gone"}), b"").await;
        assert_eq!((found, &value[..]), (json!({"metadata": null}), &b"z"[..]));

        // Over a thousand keys: pages of 1000 (the default), and of 250, by
        // cursor, cover each key once, in order, and nothing outside the
        // prefix ("pagf" sorts right after every "page/…").
        let paged: Vec<String> = (0..1005).map(|i| format!("page/{i:04}")).collect();
        for key in paged
            .iter()
            .rev()
            .map(String::as_str)
            .chain(["pagf", "pag"])
        {
            store
                .put(key, Bytes::from_static(b"p"), None, None)
                .await
                .unwrap();
        }
        let (first, cursor) = names(&kv, json!({"prefix": "page/"})).await;
        assert_eq!(first, paged[..1000]);
        let cursor = cursor.expect("a cursor past the first 1000");
        let (rest, end) = names(&kv, json!({"prefix": "page/", "cursor": cursor})).await;
        assert_eq!((rest, end), (paged[1000..].to_vec(), None));
        let (mut walked, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let mut args = json!({"prefix": "page/", "limit": 250});
            if let Some(c) = &cursor {
                args["cursor"] = json!(c);
            }
            let (page, next) = names(&kv, args).await;
            assert!(page.len() <= 250);
            walked.extend(page);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(walked, paged);
        // The limit is Cloudflare's.
        for limit in [0, 1001] {
            let e = fails(&kv, "list", json!({"limit": limit}), b"").await;
            assert_eq!(e.name, "RangeError", "{}", e.message);
        }

        // Errors carry the name Workers gives them.
        assert_eq!(
            fails(&kv, "get", json!({"key": ".."}), b"").await.name,
            "TypeError"
        );
        let short = json!({"key": "k", "expirationTtl": 59});
        assert_eq!(fails(&kv, "put", short, b"").await.name, "RangeError");
        let cursor = json!({"cursor": "!!"});
        assert_eq!(fails(&kv, "list", cursor, b"").await.name, "TypeError");
        let unknown = fails(&kv, "frob", json!({}), b"").await;
        assert!(
            unknown.message.contains("no operation"),
            "{}",
            unknown.message
        );
    }

    #[tokio::test]
    async fn the_sqlite_store_behaves_as_workers_kv() {
        let (_dir, db) = crate::testing::database();
        behaves_as_workers_kv(sqlite::SqliteKv::open(db).unwrap()).await;
    }

    #[tokio::test]
    async fn the_postgres_store_behaves_as_workers_kv() {
        let database = taipan_cluster::testing::TestDatabase::create().await;
        let db = database.connect().await;
        behaves_as_workers_kv(postgres::PostgresKv::new(db, "ns")).await;
    }

    /// Namespaces share the cluster's table, never their entries; keys
    /// PostgreSQL cannot hold (NUL) are refused, not mangled.
    #[tokio::test]
    async fn postgres_namespaces_are_apart() {
        let database = taipan_cluster::testing::TestDatabase::create().await;
        let db = database.connect().await;
        let (one, two) = (
            postgres::PostgresKv::new(db.clone(), "one"),
            postgres::PostgresKv::new(db, "one%"),
        );
        let value = |v: &'static [u8]| Bytes::from_static(v);
        one.put("k", value(b"1"), Some("{}".into()), None)
            .await
            .unwrap();
        two.put("k", value(b"2"), None, None).await.unwrap();
        two.put("only-two", value(b"2"), None, None).await.unwrap();
        assert_eq!(one.get("k", 0).await.unwrap().unwrap().value, b"1");
        let keys = |rows: Vec<Listed>| rows.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(keys(one.list("", "", 0, 10).await.unwrap()), ["k"]);
        assert_eq!(
            keys(two.list("", "", 0, 10).await.unwrap()),
            ["k", "only-two"]
        );
        two.delete("k").await.unwrap();
        assert!(one.get("k", 0).await.unwrap().is_some());

        let kv: Arc<dyn Binding> = Arc::new(KvNamespace::new(one.clone()));
        let e = fails(&kv, "put", json!({"key": "a\u{0}b"}), b"v").await;
        assert!(e.message.contains("NUL"), "{}", e.message);
        let (miss, _) = call(&kv, "get", json!({"key": "a\u{0}b"}), b"").await;
        assert_eq!(miss, Value::Null);
        call(&kv, "delete", json!({"key": "a\u{0}b"}), b"").await;
        assert!(one.list("k\0", "", 0, 10).await.unwrap().is_empty());
        assert_eq!(keys(one.list("", "\0", 0, 10).await.unwrap()), ["k"]);
    }

    /// A worker of a node in a cluster writes its namespace to the cluster
    /// database, under the namespace's id, and to no file.
    #[tokio::test]
    async fn clustered_stores_open_namespaces_in_the_cluster_database() {
        use http_body_util::BodyExt as _;
        use taipan_runtime::WorkerHost as _;

        let mut config = taipan_config::Bindings::default();
        config.kv.push(taipan_config::bindings::KvNamespace {
            binding: "NOTES".into(),
            id: "notes-id".into(),
        });
        let clustered = crate::testing::clustered_host(&config).await;
        let (cluster, stores, host) = (&clustered.cluster, &clustered.stores, &clustered.host);
        let body = http_body_util::Full::new(Bytes::from_static(b"{\"key\":\"k\"}\nhello"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::post("http://binding/put")
            .body(body)
            .unwrap();
        let response = host.binding("NOTES", "put", request).await.unwrap();
        let status = response.status();
        let reply = response.into_body().collect().await.unwrap().to_bytes();
        assert!(status.is_success(), "{status}: {reply:?}");

        let client = cluster.db.client().await.unwrap();
        let row = client
            .query_one(
                "SELECT value FROM kv WHERE namespace = 'notes-id' AND key = 'k'",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, Vec<u8>>(0), b"hello");
        assert!(!stores.kv_path("notes-id").exists());
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("").is_err());
        assert!(check_key("..").is_err());
        assert!(check_key(&"k".repeat(513)).is_err());
        assert!(check_key("user:1").is_ok());
    }
}
