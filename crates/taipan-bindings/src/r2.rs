//! R2 buckets (`r2_buckets`): objects as files, metadata in SQLite.
//!
//! Bodies stream both ways: `put` writes the guest's body to a temporary
//! file chunk by chunk (hashing it for the ETag, MD5 as R2 does) and renames
//! it into place; `get` streams the file (or a range of it) back. No object
//! is ever held whole in memory.

use std::io::SeekFrom;
use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use crate::Binding;
use crate::protocol::{BindingError, Call, Reply, stream_body};
use crate::store::Database;

/// R2's limits: keys up to 1024 bytes; one `put` up to 5 GiB; list up to 1000.
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
pub const MAX_LIST_LIMIT: i64 = 1000;
pub const MAX_CUSTOM_METADATA_BYTES: usize = 2048;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    uploaded INTEGER NOT NULL,
    http_metadata TEXT NOT NULL,
    custom_metadata TEXT NOT NULL,
    version TEXT NOT NULL
) WITHOUT ROWID;";

pub struct R2Bucket {
    db: Database,
    blobs: PathBuf,
}

impl R2Bucket {
    pub fn open(db: Database, blobs: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&blobs)?;
        db.with_blocking(|conn| conn.execute_batch(SCHEMA))?;
        Ok(Self { db, blobs })
    }

    fn blob_path(&self, key: &str) -> PathBuf {
        let digest = Sha256::digest(key.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.blobs.join(&hex[..2]).join(hex)
    }

    async fn head_row(&self, key: String) -> Result<Option<Value>, BindingError> {
        self.db
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, size, etag, uploaded, http_metadata, custom_metadata, version FROM objects WHERE key = ?1",
                )?;
                let mut rows = stmt.query([key])?;
                Ok(match rows.next()? {
                    Some(row) => Some(object_json(row)?),
                    None => None,
                })
            })
            .await
    }

    async fn put(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?.to_string();
        let http_metadata = call.args.get("httpMetadata").cloned().unwrap_or(json!({}));
        let custom_metadata = call
            .args
            .get("customMetadata")
            .cloned()
            .unwrap_or(json!({}));
        if !custom_metadata.is_object() || !http_metadata.is_object() {
            return Err(BindingError::type_error(
                "httpMetadata and customMetadata must be dicts",
            ));
        }
        if custom_metadata.to_string().len() > MAX_CUSTOM_METADATA_BYTES {
            return Err(BindingError::range_error(format!(
                "customMetadata is over {MAX_CUSTOM_METADATA_BYTES} bytes"
            )));
        }
        let target = self.blob_path(&key);
        let dir = target.parent().map(PathBuf::from).unwrap_or_default();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| BindingError::error(format!("R2 put failed: {e}")))?;
        let temp = dir.join(format!(".upload-{}", unique()));
        let written = write_stream(call.body, &temp).await;
        let (size, etag) = match written {
            Ok(done) => done,
            Err(e) => {
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(e);
            }
        };
        tokio::fs::rename(&temp, &target)
            .await
            .map_err(|e| BindingError::error(format!("R2 put failed: {e}")))?;
        let uploaded = jiff::Timestamp::now().as_millisecond();
        let version = unique();
        let row = json!({
            "key": key, "size": size, "etag": etag, "uploaded": uploaded,
            "httpMetadata": http_metadata, "customMetadata": custom_metadata, "version": version,
        });
        let (h, c) = (http_metadata.to_string(), custom_metadata.to_string());
        self.db
            .with(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO objects (key, size, etag, uploaded, http_metadata, custom_metadata, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(key) DO UPDATE SET size = excluded.size, etag = excluded.etag,
                       uploaded = excluded.uploaded, http_metadata = excluded.http_metadata,
                       custom_metadata = excluded.custom_metadata, version = excluded.version",
                )?
                .execute(rusqlite::params![key, size as i64, etag, uploaded, h, c, version])
            })
            .await?;
        Ok(Reply::Json(row))
    }

    async fn get(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?.to_string();
        let Some(mut object) = self.head_row(key.clone()).await? else {
            return Ok(Reply::miss());
        };
        let size = object["size"].as_u64().unwrap_or(0);
        let (offset, length) = range(call.args.get("range"), size)?;
        let mut file = tokio::fs::File::open(self.blob_path(&key))
            .await
            .map_err(|e| BindingError::error(format!("R2 get failed: {e}")))?;
        file.seek(SeekFrom::Start(offset))
            .await
            .map_err(|e| BindingError::error(format!("R2 get failed: {e}")))?;
        if call.args.get("range").is_some_and(|r| !r.is_null()) {
            object["range"] = json!({"offset": offset, "length": length});
        }
        let stream = tokio_util::io::ReaderStream::new(file.take(length));
        Ok(Reply::Payload {
            meta: object,
            body: stream_body(stream),
        })
    }

    async fn head(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?.to_string();
        Ok(Reply::Json(
            self.head_row(key).await?.unwrap_or(Value::Null),
        ))
    }

    async fn delete(&self, call: Call) -> Result<Reply, BindingError> {
        let keys: Vec<String> = match call.args.get("keys") {
            Some(Value::Array(keys)) => keys
                .iter()
                .map(|k| k.as_str().map(str::to_string))
                .collect::<Option<_>>()
                .ok_or_else(|| {
                    BindingError::type_error("delete() takes a key or a list of keys")
                })?,
            _ => vec![call.str_arg("key")?.to_string()],
        };
        for key in &keys {
            check_key(key)?;
        }
        let paths: Vec<PathBuf> = keys.iter().map(|k| self.blob_path(k)).collect();
        self.db
            .with(move |conn| {
                let tx = conn.transaction()?;
                for key in &keys {
                    tx.execute("DELETE FROM objects WHERE key = ?1", [key])?;
                }
                tx.commit()
            })
            .await?;
        for path in paths {
            let _ = tokio::fs::remove_file(path).await;
        }
        Ok(Reply::Json(Value::Null))
    }

    async fn list(&self, call: Call) -> Result<Reply, BindingError> {
        let prefix = call.opt_str("prefix").to_string();
        let delimiter = call.opt_str("delimiter").to_string();
        let limit = call.opt_i64("limit")?.unwrap_or(MAX_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(BindingError::range_error(format!(
                "R2 list limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}"
            )));
        }
        let after = call.opt_str("cursor").to_string();
        let (objects, prefixes, next) = self
            .db
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT key, size, etag, uploaded, http_metadata, custom_metadata, version FROM objects
                     WHERE key > ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
                )?;
                let mut rows = stmt.query(rusqlite::params![after, prefix])?;
                let (mut objects, mut prefixes): (Vec<Value>, Vec<String>) = (Vec::new(), Vec::new());
                let mut last = None;
                while let Some(row) = rows.next()? {
                    if (objects.len() + prefixes.len()) as i64 >= limit {
                        return Ok((objects, prefixes, last));
                    }
                    let key: String = row.get(0)?;
                    let rest = &key[prefix.len()..];
                    if !delimiter.is_empty() && let Some(i) = rest.find(&delimiter) {
                        let common = format!("{prefix}{}", &rest[..i + delimiter.len()]);
                        if prefixes.last() != Some(&common) {
                            prefixes.push(common);
                        }
                    } else {
                        objects.push(object_json(row)?);
                    }
                    last = Some(key);
                }
                Ok((objects, prefixes, None))
            })
            .await?;
        let mut result = json!({
            "objects": objects,
            "delimitedPrefixes": prefixes,
            "truncated": next.is_some(),
        });
        if let Some(cursor) = next {
            result["cursor"] = json!(cursor);
        }
        Ok(Reply::Json(result))
    }
}

impl Binding for R2Bucket {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            match op.as_str() {
                "put" => self.put(call).await,
                "get" => self.get(call).await,
                "head" => self.head(call).await,
                "delete" => self.delete(call).await,
                "list" => self.list(call).await,
                other => Err(BindingError::type_error(format!(
                    "R2 has no operation {other:?}"
                ))),
            }
        })
    }
}

fn object_json(row: &rusqlite::Row<'_>) -> rusqlite::Result<Value> {
    let parse = |text: String| serde_json::from_str::<Value>(&text).unwrap_or(json!({}));
    Ok(json!({
        "key": row.get::<_, String>(0)?,
        "size": row.get::<_, i64>(1)?,
        "etag": row.get::<_, String>(2)?,
        "uploaded": row.get::<_, i64>(3)?,
        "httpMetadata": parse(row.get(4)?),
        "customMetadata": parse(row.get(5)?),
        "version": row.get::<_, String>(6)?,
    }))
}

/// Stream `body` into `path`: (size, MD5 hex), refused past MAX_OBJECT_BYTES.
async fn write_stream(
    mut body: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    path: &std::path::Path,
) -> Result<(u64, String), BindingError> {
    let io = |e: std::io::Error| BindingError::error(format!("R2 put failed: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    let mut hasher = Md5::new();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| BindingError::error(format!("R2 put: reading the body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            size += data.len() as u64;
            if size > MAX_OBJECT_BYTES {
                return Err(BindingError::range_error(format!(
                    "R2 put: the object is over {MAX_OBJECT_BYTES} bytes"
                )));
            }
            hasher.update(&data);
            file.write_all(&data).await.map_err(io)?;
        }
    }
    file.sync_all().await.map_err(io)?;
    let etag: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((size, etag))
}

/// `range` as R2 takes it: `{offset, length}`, `{offset}`, or `{suffix}`.
fn range(range: Option<&Value>, size: u64) -> Result<(u64, u64), BindingError> {
    let Some(range) = range.filter(|r| !r.is_null()) else {
        return Ok((0, size));
    };
    let field = |name: &str| range.get(name).and_then(Value::as_u64);
    if let Some(suffix) = field("suffix") {
        let length = suffix.min(size);
        return Ok((size - length, length));
    }
    let offset = field("offset").unwrap_or(0);
    if offset > size {
        return Err(BindingError::range_error(format!(
            "R2 get: the range starts at {offset}, past the object's {size} bytes"
        )));
    }
    let length = field("length").unwrap_or(size - offset).min(size - offset);
    Ok((offset, length))
}

fn check_key(key: &str) -> Result<&str, BindingError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(BindingError::type_error(format!(
            "R2 keys are 1 to {MAX_KEY_BYTES} bytes, got {}",
            key.len()
        )));
    }
    Ok(key)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}{:x}{:x}",
        jiff::Timestamp::now().as_nanosecond(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binding as a guest calls it, with no sandbox (`crate::testing`).
    #[tokio::test]
    async fn put_get_head_delete_through_the_wire_format() {
        let (dir, db) = crate::testing::database();
        let r2: Arc<dyn Binding> = Arc::new(R2Bucket::open(db, dir.path().join("blobs")).unwrap());
        let call = |op: &'static str, args: Value, payload: &'static [u8]| {
            crate::testing::call(r2.clone(), op, args, payload)
        };
        let custom = json!({"owner": "é"});
        let (object, _) = call(
            "put",
            json!({"key": "a/b.txt", "customMetadata": custom}),
            b"0123456789\n",
        )
        .await
        .unwrap();
        assert_eq!(object["size"], 11);
        let (meta, body) = call(
            "get",
            json!({"key": "a/b.txt", "range": {"offset": 2, "length": 3}}),
            b"",
        )
        .await
        .unwrap();
        assert_eq!(&body[..], b"234");
        assert_eq!(meta["customMetadata"], custom);
        assert_eq!(meta["range"], json!({"offset": 2, "length": 3}));
        let (meta, body) = call("get", json!({"key": "a/b.txt"}), b"").await.unwrap();
        assert_eq!(&body[..], b"0123456789\n");
        assert_eq!((meta["size"].clone(), meta.get("range")), (json!(11), None));
        let (head, _) = call("head", json!({"key": "a/b.txt"}), b"").await.unwrap();
        assert_eq!(head["size"], 11);
        call("delete", json!({"key": "a/b.txt"}), b"")
            .await
            .unwrap();
        let (gone, body) = call("get", json!({"key": "a/b.txt"}), b"").await.unwrap();
        assert_eq!((gone, body.len()), (Value::Null, 0));
    }

    #[test]
    fn ranges() {
        assert_eq!(range(None, 10).unwrap(), (0, 10));
        assert_eq!(
            range(Some(&json!({"offset": 2, "length": 3})), 10).unwrap(),
            (2, 3)
        );
        assert_eq!(range(Some(&json!({"offset": 8})), 10).unwrap(), (8, 2));
        assert_eq!(range(Some(&json!({"suffix": 4})), 10).unwrap(), (6, 4));
        assert_eq!(range(Some(&json!({"suffix": 40})), 10).unwrap(), (0, 10));
        assert!(range(Some(&json!({"offset": 11})), 10).is_err());
    }
}
