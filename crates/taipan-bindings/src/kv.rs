//! KV namespaces (`kv_namespaces`): get, getWithMetadata, put, delete, list,
//! with expiry, stored in SQLite. Limits are Cloudflare's documented ones.

use std::sync::Arc;

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

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    metadata TEXT,
    expiration INTEGER
) WITHOUT ROWID;";

/// The storage behind a namespace.
pub struct KvNamespace {
    db: Database,
}

impl KvNamespace {
    pub fn open(db: Database) -> anyhow::Result<Self> {
        db.with_blocking(|conn| conn.execute_batch(SCHEMA))?;
        Ok(Self { db })
    }

    async fn get(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?.to_string();
        let now = now();
        let row = self
            .db
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT value, metadata FROM kv WHERE key = ?1 AND (expiration IS NULL OR expiration > ?2)",
                )?;
                let mut rows = stmt.query(rusqlite::params![key, now])?;
                match rows.next()? {
                    Some(row) => Ok(Some((row.get::<_, Vec<u8>>(0)?, row.get::<_, Option<String>>(1)?))),
                    None => Ok(None),
                }
            })
            .await?;
        Ok(match row {
            None => Reply::miss(),
            Some((value, metadata)) => {
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
        self.db
            .with(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO kv (key, value, metadata, expiration) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value,
                       metadata = excluded.metadata, expiration = excluded.expiration",
                )?
                .execute(rusqlite::params![key, &value[..], metadata, expiration])
            })
            .await?;
        Ok(Reply::Json(Value::Null))
    }

    async fn delete(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?.to_string();
        self.db
            .with(move |conn| {
                conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                    .execute([key])
            })
            .await?;
        Ok(Reply::Json(Value::Null))
    }

    async fn list(&self, call: Call) -> Result<Reply, BindingError> {
        let prefix = call.opt_str("prefix").to_string();
        let limit = call.opt_i64("limit")?.unwrap_or(MAX_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(BindingError::range_error(format!(
                "KV list failed: Invalid key_count_limit of {limit}; the limit must be from 1 to {MAX_LIST_LIMIT}"
            )));
        }
        let after = match call.opt_str("cursor") {
            "" => String::new(),
            cursor => decode_cursor(cursor)
                .ok_or_else(|| BindingError::type_error("KV list failed: invalid cursor"))?,
        };
        let now = now();
        let rows = self
            .db
            .with(move |conn| {
                // Keys come back in lexicographic (byte) order, as on Workers.
                let mut stmt = conn.prepare_cached(
                    "SELECT key, metadata, expiration FROM kv
                     WHERE key > ?1 AND substr(key, 1, length(?2)) = ?2
                       AND (expiration IS NULL OR expiration > ?3)
                     ORDER BY key LIMIT ?4",
                )?;
                let rows = stmt
                    .query_map(rusqlite::params![after, prefix, now, limit + 1], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, Option<String>>(1)?,
                            row.get::<_, Option<i64>>(2)?,
                        ))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        let complete = rows.len() as i64 <= limit;
        let mut keys = Vec::new();
        for (name, metadata, expiration) in rows.into_iter().take(limit as usize) {
            let mut entry = json!({"name": name});
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

    /// The binding as a guest calls it, with no sandbox (`crate::testing`).
    #[tokio::test]
    async fn put_get_list_delete_through_the_wire_format() {
        let (_dir, db) = crate::testing::database();
        let kv: Arc<dyn Binding> = Arc::new(KvNamespace::open(db).unwrap());
        let call = |op: &'static str, args: Value, payload: &'static [u8]| {
            crate::testing::call(kv.clone(), op, args, payload)
        };
        // A value with newlines: only the first one ends the arguments.
        let meta = json!({"note": "é\n☃"});
        call(
            "put",
            json!({"key": "a", "metadata": meta}),
            b"line 1\nline 2\n",
        )
        .await
        .unwrap();
        let (got, value) = call("get", json!({"key": "a"}), b"").await.unwrap();
        assert_eq!(got, json!({"metadata": meta}));
        assert_eq!(&value[..], b"line 1\nline 2\n");
        // A miss is meta null (as R2's), with no payload.
        let (missing, nothing) = call("get", json!({"key": "b"}), b"").await.unwrap();
        assert_eq!((missing, &nothing[..]), (Value::Null, &b""[..]));
        // A value stored without metadata still is found: metadata null.
        call("put", json!({"key": "c"}), b"").await.unwrap();
        let (found, empty) = call("get", json!({"key": "c"}), b"").await.unwrap();
        assert_eq!((found, &empty[..]), (json!({"metadata": null}), &b""[..]));
        let (list, _) = call("list", json!({"prefix": ""}), b"").await.unwrap();
        assert_eq!(list["keys"][0]["name"], "a");
        call("delete", json!({"key": "a"}), b"").await.unwrap();
        let (gone, _) = call("get", json!({"key": "a"}), b"").await.unwrap();
        assert_eq!(gone, Value::Null);
        // Errors carry the name Workers gives them.
        let bad = call("get", json!({"key": ".."}), b"").await.unwrap_err();
        assert_eq!(bad.name, "TypeError");
        let unknown = call("frob", json!({}), b"").await.unwrap_err();
        assert!(
            unknown.message.contains("no operation"),
            "{}",
            unknown.message
        );
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("").is_err());
        assert!(check_key("..").is_err());
        assert!(check_key(&"k".repeat(513)).is_err());
        assert!(check_key("user:1").is_ok());
    }
}
