//! Durable Objects (`durable_objects.bindings`): `env.NS.get(id)` gives a
//! stub; its RPC calls and `fetch` run in the object's own sandbox (see
//! `Worker::durable_object`: one live instance per id, one call at a time),
//! and `ctx.storage` keeps the object's data in a SQLite file of its own —
//! a key-value table (`get`/`put`/`delete`/`list`) beside the object's own
//! SQL tables (`ctx.storage.sql.exec`).

use std::sync::Arc;

use futures::future::BoxFuture;
use rusqlite::OptionalExtension;
use serde_json::{Value, json};
use taipan_guest::contract::{AUTHORITY_DURABLE, HEADER_DO_ID, HEADER_WEBSOCKET, OP_FETCH, OP_RPC};
use taipan_runtime::host::{HostFuture, HostResponse};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::Binding;
use crate::alarms::Alarms;
use crate::d1;
use crate::protocol::{BindingError, Call, Reply};
use crate::service::{Services, binding_error};
use crate::store::{Database, Stores};

/// The binding name of storage calls (not an identifier, so no user
/// binding can take it).
pub use taipan_guest::contract::STORAGE_BINDING;

/// Cloudflare's limits for SQLite-backed objects' key-value storage.
const MAX_KEY_BYTES: usize = 2048;
const MAX_VALUE_BYTES: usize = 2 * 1024 * 1024;
const MAX_KEYS_PER_CALL: usize = 128;

/// Worker-lifetime: one `durable_objects` binding (a namespace).
pub struct Namespace {
    pub class: String,
    /// The worker whose main module defines `class`.
    pub script: String,
    pub services: Arc<dyn Services>,
    /// Cluster mode: an object runs on the node holding its lease.
    pub placement: Option<Arc<crate::placement::Placement>>,
}

/// The lease name of an object (cluster mode).
pub fn lease_name(script: &str, class: &str, id: &str) -> String {
    format!("do:{script}/{class}/{id}")
}

/// Turn a stub's call into the object's own request (`Worker::durable_object`).
pub fn object_request(
    class: &str,
    id: &str,
    op: &str,
    mut parts: http::request::Parts,
    body: HyperOutgoingBody,
) -> Result<
    http::Request<HyperOutgoingBody>,
    wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
> {
    let uri = format!("http://{AUTHORITY_DURABLE}/{class}/{id}/{op}");
    parts.uri = uri.parse().map_err(|_| {
        wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::InternalError(None)
    })?;
    parts.headers.insert(
        http::header::HOST,
        http::HeaderValue::from_static(AUTHORITY_DURABLE),
    );
    Ok(http::Request::from_parts(parts, body))
}

impl Namespace {
    /// A stub's call (`op` is `rpc` or `fetch`), run in the object.
    pub fn call(&self, op: &str, request: http::Request<HyperOutgoingBody>) -> HostFuture {
        let worker = self.services.worker(&self.script);
        let (class, script, op) = (self.class.clone(), self.script.clone(), op.to_string());
        let placement = self.placement.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let id = parts
                .headers
                .remove(HEADER_DO_ID)
                .and_then(|v| v.to_str().ok().map(str::to_string))
                .unwrap_or_default();
            if !valid_id(&id) {
                return Ok(binding_error(format!(
                    "{id:?} is not a Durable Object id (64 hex digits)"
                )));
            }
            if op != OP_RPC && op != OP_FETCH {
                return Ok(binding_error(format!("a stub has no operation {op:?}")));
            }
            let Some(worker) = worker else {
                return Ok(binding_error(format!(
                    "the worker {script:?} that defines {class} is not running on this server"
                )));
            };
            if let Some(placement) = placement {
                let name = lease_name(&script, &class, &id);
                match placement.place(&name).await {
                    Ok(crate::placement::Place::Here { fresh, .. }) => {
                        if fresh {
                            worker.forget_object(&format!("{class}/{id}"));
                        }
                    }
                    Ok(crate::placement::Place::There(url)) => {
                        let path = format!("/do/{script}/{class}/{id}/{op}");
                        return Ok(match placement.forward(&url, &path, parts, body).await {
                            Ok(response) => crate::service::from_callee(remote_websocket(
                                &placement, &url, &script, response,
                            )),
                            Err(e) => e.into_response(),
                        });
                    }
                    Err(e) => return Ok(e.into_response()),
                }
            }
            let request = object_request(&class, &id, &op, parts, body)?;
            Ok(crate::service::from_callee(
                worker
                    .durable_object(&format!("{class}/{id}"), request)
                    .await,
            ))
        })
    }
}

/// An owner's answer that accepted a WebSocket (`HEADER_NODE_WEBSOCKET`)
/// becomes the 101 the caller's worker returns; the socket is registered
/// as remote, so the connection that claims it is relayed to the owner.
fn remote_websocket(
    placement: &Arc<crate::placement::Placement>,
    base: &str,
    script: &str,
    mut response: HostResponse,
) -> HostResponse {
    let Some(id) = response
        .headers_mut()
        .remove(crate::placement::HEADER_NODE_WEBSOCKET)
    else {
        return response;
    };
    let Some(id) = id
        .to_str()
        .ok()
        .filter(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return binding_error("the owner node named a malformed WebSocket".to_string());
    };
    taipan_runtime::websocket::remote::remotes()
        .add(id.to_string(), placement.dial_websocket(base, script, id));
    *response.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
    if let Ok(value) = http::HeaderValue::from_str(id) {
        response.headers_mut().insert(HEADER_WEBSOCKET, value);
    }
    response
}

/// An object id: 64 lowercase hex digits, as Workers prints them.
pub fn valid_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Worker-lifetime: `ctx.storage` for every object of a worker's classes.
pub struct ObjectStorage {
    pub stores: Arc<Stores>,
    pub script: String,
    pub alarms: Arc<Alarms>,
}

/// The table `ctx.storage`'s key-value calls keep their data in.
const KV_SCHEMA: &str =
    "CREATE TABLE IF NOT EXISTS _cf_KV (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID";

impl ObjectStorage {
    async fn database(&self, class: &str, id: &str) -> Result<Database, BindingError> {
        if !valid_id(id)
            || class.is_empty()
            || !class
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(BindingError::type_error(
                "storage called with a bad object id",
            ));
        }
        let path = self.stores.object_path(&self.script, class, id);
        if self.stores.placement().is_some() {
            // The object runs here because this node holds its lease.
            let name = lease_name(&self.script, class, id);
            return self.stores.replicated(&name, path, KV_SCHEMA).await;
        }
        let db = self
            .stores
            .database(&path)
            .map_err(|e| BindingError::error(format!("opening the object's storage: {e:#}")))?;
        db.with_blocking(|conn| conn.execute_batch(KV_SCHEMA))
            .map_err(BindingError::from)?;
        Ok(db)
    }
}

impl ObjectStorage {
    /// `setAlarm` / `getAlarm` / `deleteAlarm` (the schedule is the worker's,
    /// not in the object's file: see `alarms`).
    async fn alarm(&self, op: &str, args: Value) -> Result<Value, BindingError> {
        // `database` checked both.
        let text = |name: &str| args.get(name).and_then(Value::as_str).unwrap_or_default();
        let (class, id) = (text("class"), text("id"));
        match op {
            "setAlarm" => {
                let at = args.get("at").and_then(Value::as_f64).ok_or_else(|| {
                    BindingError::type_error(
                        "setAlarm() needs a time: ms since the epoch, or a datetime",
                    )
                })?;
                self.alarms.set(class, id, at as i64).await?;
                Ok(Value::Null)
            }
            "getAlarm" => Ok(json!({ "at": self.alarms.get(class, id).await? })),
            "deleteAlarm" => {
                self.alarms.delete(class, id).await?;
                Ok(Value::Null)
            }
            other => Err(BindingError::type_error(format!(
                "storage has no operation {other:?}"
            ))),
        }
    }
}

impl Binding for ObjectStorage {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            let (class, id) = (
                call.str_arg("class")?.to_string(),
                call.str_arg("id")?.to_string(),
            );
            let db = self.database(&class, &id).await?;
            if op.ends_with("Alarm") {
                return self.alarm(&op, call.args).await.map(Reply::Json);
            }
            let args = call.args;
            let reply = match op.as_str() {
                "get" => {
                    let keys = keys(&args)?;
                    db.with(move |conn| {
                        let mut stmt = conn.prepare_cached("SELECT value FROM _cf_KV WHERE key = ?1")?;
                        let mut values = serde_json::Map::new();
                        for key in keys {
                            let value: Option<String> =
                                stmt.query_row([&key], |r| r.get(0)).optional()?;
                            if let Some(value) = value {
                                values.insert(key, Value::String(value));
                            }
                        }
                        Ok(json!({ "values": values }))
                    })
                    .await?
                }
                "put" => {
                    let entries = args
                        .get("entries")
                        .and_then(Value::as_object)
                        .cloned()
                        .ok_or_else(|| BindingError::type_error("put() needs a key and a value"))?;
                    if entries.len() > MAX_KEYS_PER_CALL {
                        return Err(BindingError::range_error(format!(
                            "put() takes at most {MAX_KEYS_PER_CALL} entries at once"
                        )));
                    }
                    check_entries(&entries)?;
                    db.with(move |conn| write(conn, entries, Vec::new())).await?
                }
                "write" => {
                    // A transaction's writes, committed together.
                    let puts = args
                        .get("puts")
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default();
                    check_entries(&puts)?;
                    let deletes = match args.get("keys") {
                        Some(_) => keys_unbounded(&args)?,
                        None => Vec::new(),
                    };
                    db.with(move |conn| write(conn, puts, deletes)).await?
                }
                "delete" => {
                    let keys = keys(&args)?;
                    db.with(move |conn| {
                        let tx = conn.transaction()?;
                        let mut deleted = 0;
                        for key in keys {
                            deleted += tx.execute("DELETE FROM _cf_KV WHERE key = ?1", [&key])?;
                        }
                        tx.commit()?;
                        Ok(json!({ "deleted": deleted }))
                    })
                    .await?
                }
                "list" => {
                    let text = |name: &str| args.get(name).and_then(Value::as_str).map(str::to_string);
                    let (prefix, start, end) = (text("prefix"), text("start"), text("end"));
                    let reverse = args.get("reverse").and_then(Value::as_bool).unwrap_or(false);
                    let limit = args.get("limit").and_then(Value::as_i64).unwrap_or(-1);
                    db.with(move |conn| {
                        let order = if reverse { "DESC" } else { "ASC" };
                        let sql = format!(
                            "SELECT key, value FROM _cf_KV WHERE (?1 IS NULL OR substr(key, 1, length(?1)) = ?1) AND (?2 IS NULL OR key >= ?2) AND (?3 IS NULL OR key < ?3) ORDER BY key {order} LIMIT ?4"
                        );
                        let mut stmt = conn.prepare(&sql)?;
                        let rows = stmt
                            .query_map((prefix, start, end, limit), |r| {
                                Ok(json!([r.get::<_, String>(0)?, r.get::<_, String>(1)?]))
                            })?
                            .collect::<rusqlite::Result<Vec<_>>>()?;
                        Ok(json!({ "entries": rows }))
                    })
                    .await?
                }
                "deleteAll" => {
                    db.with(|conn| {
                        let tables: Vec<String> = conn
                            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name != '_cf_KV'")?
                            .query_map([], |r| r.get(0))?
                            .collect::<rusqlite::Result<_>>()?;
                        let tx = conn.transaction()?;
                        tx.execute("DELETE FROM _cf_KV", [])?;
                        for table in tables {
                            tx.execute(&format!("DROP TABLE \"{}\"", table.replace('"', "\"\"")), [])?;
                        }
                        tx.commit()?;
                        Ok(Value::Null)
                    })
                    .await?
                }
                "sql" => {
                    let statement = d1::parse_statement(&args)?;
                    if statement.sql.contains("_cf_") {
                        return Err(BindingError::error(
                            "not authorized: tables whose names start with _cf_ are reserved",
                        ));
                    }
                    db.with(move |conn| Ok(d1::run_batch(conn, &[statement])))
                        .await??
                        .pop()
                        .unwrap_or(Value::Null)
                }
                other => {
                    return Err(BindingError::type_error(format!(
                        "storage has no operation {other:?}"
                    )));
                }
            };
            Ok(Reply::Json(reply))
        })
    }
}

/// Put `puts` and delete `deletes` in one SQLite transaction.
fn write(
    conn: &mut rusqlite::Connection,
    puts: serde_json::Map<String, Value>,
    deletes: Vec<String>,
) -> rusqlite::Result<Value> {
    let tx = conn.transaction()?;
    for (key, value) in puts {
        tx.execute(
            "INSERT INTO _cf_KV (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (&key, value.as_str().unwrap_or("null")),
        )?;
    }
    for key in deletes {
        tx.execute("DELETE FROM _cf_KV WHERE key = ?1", [&key])?;
    }
    tx.commit()?;
    Ok(Value::Null)
}

fn check_entries(entries: &serde_json::Map<String, Value>) -> Result<(), BindingError> {
    for (key, value) in entries {
        check_key(key)?;
        if value.as_str().map_or(0, str::len) > MAX_VALUE_BYTES {
            return Err(BindingError::range_error(format!(
                "the value of {key:?} is over the {MAX_VALUE_BYTES}-byte limit"
            )));
        }
    }
    Ok(())
}

fn keys(args: &Value) -> Result<Vec<String>, BindingError> {
    let keys = keys_unbounded(args)?;
    if keys.len() > MAX_KEYS_PER_CALL {
        return Err(BindingError::range_error(format!(
            "at most {MAX_KEYS_PER_CALL} keys at once"
        )));
    }
    Ok(keys)
}

fn keys_unbounded(args: &Value) -> Result<Vec<String>, BindingError> {
    let keys: Vec<String> = args
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| BindingError::type_error("a key (a string) or a list of keys is needed"))?
        .iter()
        .map(|k| k.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| BindingError::type_error("keys must be strings"))?;
    keys.iter().try_for_each(|k| check_key(k))?;
    Ok(keys)
}

fn check_key(key: &str) -> Result<(), BindingError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(BindingError::range_error(format!(
            "keys are limited to {MAX_KEY_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ctx.storage` as a guest calls it, with no sandbox (`crate::testing`):
    /// pre-encoded values with newlines, list order, SQL beside the KV table.
    #[tokio::test]
    async fn storage_through_the_wire_format() {
        let dir = tempfile::tempdir().unwrap();
        let stores = Stores::new(dir.path());
        let services: Arc<dyn Services> = Arc::new(crate::service::NoServices);
        let storage: Arc<dyn Binding> = Arc::new(ObjectStorage {
            stores: stores.clone(),
            script: "w".into(),
            alarms: Alarms::open(&stores, "w", services),
        });
        let here = json!({"class": "Box", "id": "a".repeat(64)});
        let call = |op: &'static str, extra: Value| {
            let mut args = here.clone();
            args.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            crate::testing::call(storage.clone(), op, args, b"")
        };
        call("put", json!({"entries": {"b": "\"x\\ny\"", "a": "1"}}))
            .await
            .unwrap();
        let (got, _) = call("get", json!({"keys": ["a", "b", "c"]})).await.unwrap();
        assert_eq!(got["values"], json!({"a": "1", "b": "\"x\\ny\""}));
        let (listed, _) = call("list", json!({})).await.unwrap();
        assert_eq!(listed["entries"], json!([["a", "1"], ["b", "\"x\\ny\""]]));
        let (made, _) = call("sql", json!({"sql": "CREATE TABLE t (v)", "params": []}))
            .await
            .unwrap();
        assert!(made.is_object(), "{made}");
        let reserved = call("sql", json!({"sql": "SELECT * FROM _cf_KV", "params": []}))
            .await
            .unwrap_err();
        assert!(
            reserved.message.contains("not authorized"),
            "{}",
            reserved.message
        );
        let bad_id = crate::testing::call(
            storage.clone(),
            "get",
            json!({"class": "Box", "id": "x", "keys": []}),
            b"",
        )
        .await
        .unwrap_err();
        assert_eq!(bad_id.name, "TypeError");
    }
}
