//! The Cache API (`caches.default`, `await caches.open(name)`): `match`,
//! `put` and `delete` as Cloudflare documents them
//! (developers.cloudflare.com/workers/runtime-apis/cache/), the guest's side
//! being `python/workers/_cache.py`.
//!
//! Every worker has it (no config): the guest calls the internal binding
//! `taipan_guest::contract::CACHE_BINDING`, answered by [`Caches`]. A
//! worker's caches, the default one and every named one, live in one SQLite
//! file, `state/cache/<worker>.sqlite`, opened on the first call.
//!
//! - `key`: what names an entry (its cache and normalized URL);
//! - `policy`: whether `put` stores a response, for how long, and which of
//!   its header fields;
//! - `store`: the SQLite store, `Vary` variants, LRU eviction within
//!   [`CacheLimits`];
//! - `conditional`: what a hit answers (304, 206, 416);
//! - `headers`: header fields as the wire carries them.
//!
//! The wire (see `taipan_guest::contract`):
//! - `match` `{"cache": name|null, "url", "headers": [[name, value]…]}` →
//!   a payload reply: `{"status", "headers"}`, then the body; `null` on a
//!   miss. A hit carries `cf-cache-status: HIT` and its `age`; the request's
//!   `If-None-Match` / `If-Modified-Since` make it a 304, its `Range` a 206.
//! - `put` `{"cache", "url", "requestHeaders", "status", "headers"}`, then
//!   the body → `{"stored": bool, "reason"?}`.
//! - `delete` `{"cache", "url"}` → `{"deleted": bool}` (every variant).

mod conditional;
mod headers;
mod key;
mod policy;
mod store;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use taipan_runtime::host::full_body;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

pub use conditional::answer;
pub use headers::Headers;
pub use key::{MAX_CACHE_NAME_BYTES, MAX_URL_BYTES, cache_key};
pub use policy::{Verdict, default_ttl, freshness};
pub use store::{CacheLimits, CacheStore, Hit, MAX_ENTRY_BYTES, MAX_TOTAL_BYTES, Put};

use crate::Binding;
use crate::protocol::{BindingError, Call, Reply};
use crate::store::{Stores, file_stem};
use key::cache_name;

/// The binding: a worker's caches, opened on the first call.
pub struct Caches {
    stores: Arc<Stores>,
    worker: String,
    limits: CacheLimits,
    store: Mutex<Option<Arc<CacheStore>>>,
}

impl Caches {
    pub fn new(stores: &Arc<Stores>, worker: &str, limits: CacheLimits) -> Self {
        Self {
            stores: stores.clone(),
            worker: worker.to_string(),
            limits,
            store: Mutex::default(),
        }
    }

    /// Where a worker's caches are stored.
    pub fn path(stores: &Stores, worker: &str) -> PathBuf {
        stores
            .root()
            .join("cache")
            .join(format!("{}.sqlite", file_stem(worker)))
    }

    fn store(&self) -> Result<Arc<CacheStore>, BindingError> {
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = &*store {
            return Ok(store.clone());
        }
        let opened = self
            .stores
            .database(&Self::path(&self.stores, &self.worker))
            .and_then(|db| CacheStore::open(db, self.limits))
            .map_err(|e| BindingError::error(format!("opening the cache failed: {e:#}")))?;
        let opened = Arc::new(opened);
        *store = Some(opened.clone());
        Ok(opened)
    }

    async fn match_(&self, call: Call) -> Result<Reply, BindingError> {
        let cache = cache_name(&call.args)?;
        let url = cache_key(call.str_arg("url")?)?;
        let request = headers_arg(&call.args, "headers")?;
        let now = now_ms();
        let Some(hit) = self.store()?.lookup(&cache, &url, &request, now).await? else {
            return Ok(Reply::miss());
        };
        let (status, headers, body) = answer(hit, &request, now);
        Ok(Reply::Payload {
            meta: json!({"status": status, "headers": headers}),
            body: full_body(body),
        })
    }

    async fn put(&self, call: Call) -> Result<Reply, BindingError> {
        let put = Put {
            cache: cache_name(&call.args)?,
            url: cache_key(call.str_arg("url")?)?,
            request_headers: headers_arg(&call.args, "requestHeaders")?,
            status: status_arg(&call.args)?,
            headers: headers_arg(&call.args, "headers")?,
        };
        let now = now_ms();
        // Decided before the body is read: what is not stored is not read.
        if let Verdict::Skip(reason) = freshness(put.status, &put.headers, now)? {
            return Ok(Reply::Json(json!({"stored": false, "reason": reason})));
        }
        let store = self.store()?;
        let Some(body) = read_body(call.body, store.limits.max_entry_bytes).await? else {
            return Ok(Reply::Json(json!({
                "stored": false,
                "reason": format!("the response is over the limit of {} bytes", store.limits.max_entry_bytes),
            })));
        };
        Ok(Reply::Json(match store.put(put, body, now).await? {
            Verdict::Store { .. } => json!({"stored": true}),
            Verdict::Skip(reason) => json!({"stored": false, "reason": reason}),
        }))
    }

    async fn delete(&self, call: Call) -> Result<Reply, BindingError> {
        let cache = cache_name(&call.args)?;
        let url = cache_key(call.str_arg("url")?)?;
        let deleted = self.store()?.delete(&cache, &url, now_ms()).await?;
        Ok(Reply::Json(json!({"deleted": deleted})))
    }
}

impl Binding for Caches {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            match op.as_str() {
                "match" => self.match_(call).await,
                "put" => self.put(call).await,
                "delete" => self.delete(call).await,
                other => Err(BindingError::type_error(format!(
                    "the Cache API has no operation {other:?}"
                ))),
            }
        })
    }
}

fn headers_arg(args: &Value, name: &str) -> Result<Headers, BindingError> {
    let bad =
        || BindingError::type_error(format!("`{name}` must be a list of [name, value] pairs"));
    match args.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(pairs)) => pairs
            .iter()
            .map(|pair| match pair.as_array().map(Vec::as_slice) {
                Some([Value::String(n), Value::String(v)]) => {
                    Ok((n.to_ascii_lowercase(), v.clone()))
                }
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

fn status_arg(args: &Value) -> Result<u16, BindingError> {
    args.get("status")
        .and_then(Value::as_u64)
        .filter(|s| *s == 101 || (200..=599).contains(s))
        .map(|s| s as u16)
        .ok_or_else(|| BindingError::type_error("`status` must be a status from 200 to 599"))
}

/// The body, whole; None past `limit` bytes (the rest is left unread).
async fn read_body(body: HyperOutgoingBody, limit: u64) -> Result<Option<Bytes>, BindingError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(Some(collected.to_bytes())),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Ok(None)
        }
        Err(e) => Err(BindingError::error(format!(
            "reading the response to cache failed: {e}"
        ))),
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// What the submodules' tests share.
#[cfg(test)]
mod test_support {
    use super::Headers;

    /// 2024-01-10 10:34:45 UTC, in ms.
    pub const NOW: i64 = 1_704_882_885_000;

    pub fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The binding as the guest calls it (`crate::testing`): the wire format.
    #[tokio::test]
    async fn match_put_delete_through_the_wire_format() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::new(dir.path());
        let caches: Arc<dyn Binding> = Arc::new(Caches::new(&stores, "w", CacheLimits::default()));
        let call = |op: &'static str, args: Value, payload: &'static [u8]| {
            crate::testing::call(caches.clone(), op, args, payload)
        };
        let url = "https://A.test/page";
        let (miss, _) = call("match", json!({"url": url}), b"").await.unwrap();
        assert_eq!(miss, Value::Null);
        let (put, _) = call(
            "put",
            json!({"url": url, "status": 200, "requestHeaders": [],
                   "headers": [["Cache-Control", "max-age=60"], ["ETag", "\"1\""]]}),
            b"line 1\nline 2",
        )
        .await
        .unwrap();
        assert_eq!(put, json!({"stored": true}));
        assert!(Caches::path(&stores, "w").exists());
        let (meta, body) = call(
            "match",
            json!({"url": "https://a.test/page#top", "headers": []}),
            b"",
        )
        .await
        .unwrap();
        assert_eq!(meta["status"], 200);
        assert!(
            meta["headers"]
                .as_array()
                .unwrap()
                .contains(&json!(["cf-cache-status", "HIT"]))
        );
        assert_eq!(&body[..], b"line 1\nline 2");
        let (not_modified, empty) = call(
            "match",
            json!({"url": url, "headers": [["if-none-match", "\"1\""]]}),
            b"",
        )
        .await
        .unwrap();
        assert_eq!(
            (not_modified["status"].clone(), &empty[..]),
            (json!(304), &b""[..])
        );
        // Another cache of the same worker does not see it.
        let (other, _) = call("match", json!({"url": url, "cache": "other"}), b"")
            .await
            .unwrap();
        assert_eq!(other, Value::Null);
        let (skipped, _) = call(
            "put",
            json!({"url": url, "status": 200, "headers": [["cache-control", "private"]]}),
            b"x",
        )
        .await
        .unwrap();
        assert_eq!(
            skipped,
            json!({"stored": false, "reason": "Cache-Control: private"})
        );
        let (deleted, _) = call("delete", json!({"url": url}), b"").await.unwrap();
        assert_eq!(deleted, json!({"deleted": true}));
        let (again, _) = call("delete", json!({"url": url}), b"").await.unwrap();
        assert_eq!(again, json!({"deleted": false}));
        // Errors carry the name Workers gives them.
        let refused = call("put", json!({"url": url, "status": 206}), b"")
            .await
            .unwrap_err();
        assert_eq!(refused.name, "TypeError");
        let relative = call("match", json!({"url": "/page"}), b"")
            .await
            .unwrap_err();
        assert!(
            relative.message.contains("fully-qualified"),
            "{}",
            relative.message
        );
        let unknown = call("keys", json!({}), b"").await.unwrap_err();
        assert!(
            unknown.message.contains("no operation"),
            "{}",
            unknown.message
        );
    }
}
