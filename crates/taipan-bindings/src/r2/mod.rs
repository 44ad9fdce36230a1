//! R2 buckets (`r2_buckets`): put, get (whole or a range), head, delete
//! (one key or many), list (prefix, delimiter, cursor).
//!
//! The binding here checks arguments against R2's limits, gives the error
//! messages and encodes the replies; an [`R2Store`] keeps the objects: on a
//! single node an index in SQLite and a file per object in the state folder
//! ([`local`]), in cluster mode an index in the cluster database and each
//! object's bytes in the cluster's object storage ([`cluster`]).
//!
//! Bodies stream both ways: `put` hands the guest's body to the store chunk
//! by chunk ([`Upload`], hashing it for the ETag, MD5 as R2 does), and `get`
//! streams the object (or a range of it) back. No object is ever held whole
//! in memory.

pub mod cluster;
pub mod local;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use wasmtime_wasi_http::p2::body::{HyperIncomingBody, HyperOutgoingBody};

use crate::Binding;
use crate::protocol::{BindingError, Call, Reply};
use crate::store::Database;

/// R2's limits: keys up to 1024 bytes; one `put` up to 5 GiB; list up to 1000.
pub const MAX_KEY_BYTES: usize = 1024;
pub const MAX_OBJECT_BYTES: u64 = 5 * 1024 * 1024 * 1024;
pub const MAX_LIST_LIMIT: i64 = 1000;
pub const MAX_CUSTOM_METADATA_BYTES: usize = 2048;

/// The most records `list` asks its store for at once: a full page and
/// the one that tells whether there are more.
const LIST_PAGE: usize = MAX_LIST_LIMIT as usize + 1;

/// An object's record, as `put`, `head` and `list` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct R2Object {
    pub key: String,
    pub size: u64,
    /// The body's MD5, in hex.
    pub etag: String,
    /// Milliseconds since the epoch.
    pub uploaded: i64,
    /// JSON objects, as `put` was given them.
    pub http_metadata: Value,
    pub custom_metadata: Value,
    /// Unique to each write.
    pub version: String,
}

impl R2Object {
    /// The record as the guest reads it.
    pub fn to_json(&self) -> Value {
        json!({
            "key": self.key,
            "size": self.size,
            "etag": self.etag,
            "uploaded": self.uploaded,
            "httpMetadata": self.http_metadata,
            "customMetadata": self.custom_metadata,
            "version": self.version,
        })
    }
}

/// What `get` found: the record, and the bytes asked for (`length` bytes
/// from `offset`), streamed.
pub struct Found {
    pub object: R2Object,
    pub offset: u64,
    pub length: u64,
    pub body: HyperIncomingBody,
}

/// `range` as R2 takes it: `{offset, length}`, `{offset}`, or `{suffix}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    Whole,
    /// The last bytes (all of them when the object is shorter).
    Suffix(u64),
    /// From `offset` (which must be within the object), `length` bytes or
    /// to the end.
    From {
        offset: u64,
        length: Option<u64>,
    },
}

impl ByteRange {
    /// The `range` argument: absent or null is the whole object.
    pub fn parse(range: Option<&Value>) -> Self {
        let Some(range) = range.filter(|r| !r.is_null()) else {
            return Self::Whole;
        };
        let field = |name: &str| range.get(name).and_then(Value::as_u64);
        match field("suffix") {
            Some(suffix) => Self::Suffix(suffix),
            None => Self::From {
                offset: field("offset").unwrap_or(0),
                length: field("length"),
            },
        }
    }

    /// `(offset, length)` within an object of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<(u64, u64), BindingError> {
        match self {
            Self::Whole => Ok((0, size)),
            Self::Suffix(suffix) => {
                let length = suffix.min(size);
                Ok((size - length, length))
            }
            Self::From { offset, length } => {
                if offset > size {
                    return Err(BindingError::range_error(format!(
                        "R2 get: the range starts at {offset}, past the object's {size} bytes"
                    )));
                }
                Ok((offset, length.unwrap_or(size - offset).min(size - offset)))
            }
        }
    }
}

/// A `put`'s body as a store reads it: chunk by chunk, hashed for the ETag,
/// refused once past [`MAX_OBJECT_BYTES`].
pub struct Upload {
    body: HyperOutgoingBody,
    hasher: Md5,
    size: u64,
}

impl Upload {
    pub fn new(body: HyperOutgoingBody) -> Self {
        Self {
            body,
            hasher: Md5::new(),
            size: 0,
        }
    }

    /// The next chunk of the body, None at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, BindingError> {
        while let Some(frame) = self.body.frame().await {
            let frame = frame.map_err(|e| {
                BindingError::error(format!("R2 put: reading the body failed: {e}"))
            })?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.size += data.len() as u64;
            if self.size > MAX_OBJECT_BYTES {
                return Err(BindingError::range_error(format!(
                    "R2 put: the object is over {MAX_OBJECT_BYTES} bytes"
                )));
            }
            self.hasher.update(&data);
            return Ok(Some(data));
        }
        Ok(None)
    }

    /// `(size, MD5 hex)` of what was read.
    pub fn finish(self) -> (u64, String) {
        let etag = self
            .hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (self.size, etag)
    }
}

/// Where one bucket's objects live. Keys are compared and listed by their
/// UTF-8 bytes; the binding has checked keys, metadata and limits already.
pub trait R2Store: Send + Sync + 'static {
    /// Store `body` at `key` with its metadata (JSON objects), replacing any
    /// object there: a reader sees the old object or the new one, whole.
    fn put(
        &self,
        key: &str,
        body: Upload,
        http_metadata: Value,
        custom_metadata: Value,
    ) -> BoxFuture<'static, Result<R2Object, BindingError>>;
    /// The object at `key` with the bytes `range` picks (resolved with
    /// [`ByteRange::resolve`]), or None when there is none.
    fn get(
        &self,
        key: &str,
        range: ByteRange,
    ) -> BoxFuture<'static, Result<Option<Found>, BindingError>>;
    /// The record of the object at `key`, if any.
    fn head(&self, key: &str) -> BoxFuture<'static, Result<Option<R2Object>, BindingError>>;
    /// Remove the objects at `keys`, those there are, at once.
    fn delete(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), BindingError>>;
    /// Up to `limit` records whose keys start with `prefix` (exactly: no
    /// character is a wildcard) and sort after `after` (`""`: from the
    /// first), in byte order of their keys.
    fn list(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<R2Object>, BindingError>>;
}

/// A bucket as a worker's binding.
pub struct R2Bucket {
    store: Arc<dyn R2Store>,
}

impl R2Bucket {
    pub fn new(store: Arc<dyn R2Store>) -> Self {
        Self { store }
    }

    /// A bucket kept on this node: its index in `db`, its objects in the
    /// folder `blobs` ([`local`]).
    pub fn open(db: Database, blobs: PathBuf) -> anyhow::Result<Self> {
        Ok(Self::new(local::LocalR2::open(db, blobs)?))
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
        let object = self
            .store
            .put(&key, Upload::new(call.body), http_metadata, custom_metadata)
            .await?;
        Ok(Reply::Json(object.to_json()))
    }

    async fn get(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?.to_string();
        let asked = call.args.get("range").filter(|r| !r.is_null());
        let Some(found) = self.store.get(&key, ByteRange::parse(asked)).await? else {
            return Ok(Reply::miss());
        };
        let mut meta = found.object.to_json();
        if asked.is_some() {
            meta["range"] = json!({"offset": found.offset, "length": found.length});
        }
        Ok(Reply::Payload {
            meta,
            body: found.body,
        })
    }

    async fn head(&self, call: Call) -> Result<Reply, BindingError> {
        let key = check_key(call.str_arg("key")?)?.to_string();
        Ok(Reply::Json(
            self.store
                .head(&key)
                .await?
                .map_or(Value::Null, |o| o.to_json()),
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
        self.store.delete(keys).await?;
        Ok(Reply::Json(Value::Null))
    }

    /// Records in key order, those under `delimiter` after the prefix rolled
    /// up into one `delimitedPrefixes` entry each; `limit` counts both. The
    /// cursor is the last key read, from which the next page goes on.
    async fn list(&self, call: Call) -> Result<Reply, BindingError> {
        let prefix = call.opt_str("prefix").to_string();
        let delimiter = call.opt_str("delimiter").to_string();
        let limit = call.opt_i64("limit")?.unwrap_or(MAX_LIST_LIMIT);
        if !(1..=MAX_LIST_LIMIT).contains(&limit) {
            return Err(BindingError::range_error(format!(
                "R2 list limit must be from 1 to {MAX_LIST_LIMIT}, got {limit}"
            )));
        }
        let limit = limit as usize;
        let mut after = call.opt_str("cursor").to_string();
        let (mut objects, mut prefixes): (Vec<Value>, Vec<String>) = (Vec::new(), Vec::new());
        let mut last: Option<String> = None;
        // Enough for a page without delimited prefixes; more each time
        // records roll up into prefixes.
        let mut page = (limit + 1).min(LIST_PAGE);
        let next = 'pages: loop {
            let records = self.store.list(&prefix, &after, page).await?;
            let more = match records.last() {
                Some(end) if records.len() == page => Some(end.key.clone()),
                _ => None,
            };
            for object in records {
                if objects.len() + prefixes.len() >= limit {
                    break 'pages last;
                }
                let Some(rest) = object.key.strip_prefix(prefix.as_str()) else {
                    continue;
                };
                if !delimiter.is_empty()
                    && let Some(i) = rest.find(&delimiter)
                {
                    let common = format!("{prefix}{}", &rest[..i + delimiter.len()]);
                    if prefixes.last() != Some(&common) {
                        prefixes.push(common);
                    }
                } else {
                    objects.push(object.to_json());
                }
                last = Some(object.key);
            }
            match more {
                Some(end) => after = end,
                None => break None,
            }
            page = (page * 2).min(LIST_PAGE);
        };
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

/// Metadata stored as JSON text, read back (`{}` if it does not parse).
fn parse_metadata(text: &str) -> Value {
    serde_json::from_str::<Value>(text).unwrap_or(json!({}))
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

#[cfg(test)]
mod tests;
