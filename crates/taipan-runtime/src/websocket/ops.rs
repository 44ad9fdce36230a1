//! The guest's WebSocket calls (`contract::WEBSOCKET_BINDING`), answered
//! while the guest's `outgoing-handler.handle` call is still running: a
//! socket's sends reach its outbox in the order the guest made them, and
//! `ws.send()` needs no wait (it is synchronous on Workers too).
//!
//! Ops, arguments in `HEADER_ARGS` as JSON:
//! - `accept {hibernate, tags}` → `{"id"}`: register the server end of a
//!   pair. In a Durable Object its owner is the object; elsewhere a slot of
//!   its own that the calling sandbox moves into when its call ends.
//! - `send {frames: [{id, text | binary (base64) | close: [code, reason]}]}`
//!   → `{"closed": [id…]}`: the sockets that were already closed. (What a
//!   socket's event handlers send comes back in the event's reply instead,
//!   `{"frames": [...]}`, sparing a call per send.)
//! - `attach {id, attachment}`: set a socket's attachment (JSON or null).
//! - `list {tag}` → `[{id, tags, attachment}]`: the object's open sockets.
//! - `auto {request, response}` (or `{}` to clear): the object's automatic
//!   reply.
//! - `connect {url, headers}` → `{"id", "status", "headers", "protocol"}`:
//!   an outbound socket (`connect.rs`), the one op answered asynchronously.

use std::sync::{Arc, Mutex, Weak};

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use super::{Frame, MAX_TAG_LEN, MAX_TAGS, Owner, PENDING_TTL, SendError, sockets};
use crate::host::{Adopted, HostFuture, HostResponse, Place, WorkerHost, full_body};
use crate::worker::Worker;

/// What a call needs of the request it is made in.
pub(crate) struct Caller<'a> {
    pub worker: &'a Weak<Worker>,
    pub place: &'a Place,
    pub adopted: &'a Mutex<Option<Adopted>>,
    pub max_websockets: usize,
}

/// Answer one call.
pub(crate) fn call(caller: Caller<'_>, op: &str, args: &str) -> HostResponse {
    let args: Value = match serde_json::from_str(args) {
        Ok(args) => args,
        Err(e) => return error("TypeError", format!("bad WebSocket call arguments: {e}")),
    };
    let answer = match op {
        "accept" => accept(caller, &args),
        "send" => send(caller.worker, &args),
        "attach" => attach(caller.worker, &args),
        "list" => list(caller, &args),
        "auto" => auto(caller, &args),
        _ => Err(("TypeError", format!("no WebSocket operation {op:?}"))),
    };
    match answer {
        Ok(value) => reply(value),
        Err((name, message)) => error(name, message),
    }
}

fn reply(value: Value) -> HostResponse {
    let mut response = http::Response::new(full_body(value.to_string()));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

type Answer = Result<Value, (&'static str, String)>;

fn accept(caller: Caller<'_>, args: &Value) -> Answer {
    let hibernate = args["hibernate"].as_bool().unwrap_or(false);
    let tags = tags(&args["tags"])?;
    let (worker, owner) = owner_for(&caller, hibernate)?;
    let id = sockets()
        .accept(owner, tags, caller.max_websockets)
        .map_err(|e| ("Error", e))?;
    if hibernate {
        worker.start_hibernation();
    }
    let pending = id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(PENDING_TTL).await;
        if sockets().unclaimed(&pending) {
            super::session::release(&pending);
        }
    });
    Ok(json!({ "id": id }))
}

/// Who a socket opened in this call belongs to: the Durable Object the
/// call runs in, the socket slot it runs in, or a new slot the calling
/// sandbox moves into when its call ends.
fn owner_for(
    caller: &Caller<'_>,
    hibernate: bool,
) -> Result<(Arc<Worker>, Owner), (&'static str, String)> {
    let worker = caller
        .worker
        .upgrade()
        .ok_or(("Error", "the worker is gone".into()))?;
    let owner = |key: &str, object: bool| Owner {
        worker: caller.worker.clone(),
        key: key.to_string(),
        object,
        hibernatable: hibernate && object,
    };
    let owner = match caller.place {
        Place::Object(key) => owner(key, true),
        Place::Pool | Place::Socket(_) if hibernate => {
            return Err((
                "TypeError",
                "ctx.acceptWebSocket() is for Durable Objects; elsewhere call server.accept()"
                    .into(),
            ));
        }
        Place::Socket(key) => owner(key, false),
        Place::Pool => {
            // The first socket of this call makes the slot the sandbox will
            // move into; it is locked until then, so an early event waits.
            let mut adopted = caller.adopted.lock().unwrap_or_else(|e| e.into_inner());
            if adopted.is_none() {
                let held = worker.socket_slots.len();
                let max = worker.limits().max_socket_sandboxes;
                if held >= max {
                    return Err((
                        "Error",
                        format!(
                            "this worker holds {held} WebSockets in sandboxes of their own, its \
                             max_socket_sandboxes limit; accept many sockets in a Durable Object \
                             (ctx.acceptWebSocket), where they share one sandbox"
                        ),
                    ));
                }
                let key = format!("ws:{}", super::random_id());
                let slot = worker.socket_slots.slot(&key).ok_or((
                    "Error",
                    "too many WebSockets are open, try again later".into(),
                ))?;
                let guard = slot
                    .try_lock_owned()
                    .map_err(|_| ("Error", "the socket's slot is busy".to_string()))?;
                *adopted = Some(Adopted { key, slot: guard });
            }
            let key = adopted.as_ref().map(|a| a.key.clone()).unwrap_or_default();
            owner(&key, false)
        }
    };
    Ok((worker, owner))
}

/// `fetch` with `Upgrade: websocket`: register the socket for this call's
/// owner now (in call order), connect in the background of the reply.
pub(crate) fn connect(caller: Caller<'_>, args: &str, host: Arc<dyn WorkerHost>) -> HostFuture {
    let prepared = (|| {
        let args: Value = serde_json::from_str(args)
            .map_err(|e| ("TypeError", format!("bad WebSocket call arguments: {e}")))?;
        let (worker, owner) = owner_for(&caller, false)?;
        let id = sockets()
            .accept(owner.clone(), Vec::new(), caller.max_websockets)
            .map_err(|e| ("Error", e))?;
        let (_, frames) = sockets()
            .claim(&id)
            .ok_or(("Error", "the socket vanished".to_string()))?;
        Ok((args, worker.limits().clone(), owner, id, frames))
    })();
    Box::pin(async move {
        let (args, limits, owner, id, frames) = match prepared {
            Ok(prepared) => prepared,
            Err((name, message)) => return Ok(error(name, message)),
        };
        Ok(
            match super::connect::connect(id, owner, frames, args, host, limits).await {
                Ok(value) => reply(value),
                Err(message) => error("Error", message),
            },
        )
    })
}

fn tags(value: &Value) -> Result<Vec<String>, (&'static str, String)> {
    let tags: Vec<String> = match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|t| t.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or(("TypeError", "WebSocket tags must be strings".to_string()))?,
        _ => return Err(("TypeError", "WebSocket tags must be a list".into())),
    };
    if tags.len() > MAX_TAGS || tags.iter().any(|t| t.len() > MAX_TAG_LEN || t.is_empty()) {
        return Err((
            "Error",
            format!(
                "a WebSocket may have at most {MAX_TAGS} tags of 1 to {MAX_TAG_LEN} characters"
            ),
        ));
    }
    Ok(tags)
}

/// Queue `args.frames`, each on its own socket: a closed socket's or a full
/// one's frame is reported, the others still go.
pub(crate) fn send(worker: &Weak<Worker>, args: &Value) -> Answer {
    let (mut closed, mut full) = (Vec::new(), Vec::new());
    for frame in args["frames"].as_array().into_iter().flatten() {
        let id = frame["id"].as_str().unwrap_or_default();
        let out = if let Some(text) = frame["text"].as_str() {
            Frame::Text(text.to_string())
        } else if let Some(data) = frame["binary"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|_| ("TypeError", "bad binary frame".to_string()))?;
            Frame::Binary(Bytes::from(bytes))
        } else if let Some(close) = frame["close"].as_array() {
            let code = close.first().and_then(Value::as_u64).unwrap_or(1000);
            let reason = close.get(1).and_then(Value::as_str).unwrap_or_default();
            check_close(code, reason)?;
            Frame::Close(code as u16, reason.to_string())
        } else {
            return Err(("TypeError", "a frame needs text, binary or close".into()));
        };
        match sockets().send(worker, id, out) {
            Ok(()) => {}
            Err(SendError::Closed) => closed.push(id.to_string()),
            Err(SendError::Full) => full.push(id.to_string()),
        }
    }
    Ok(json!({ "closed": closed, "full": full }))
}

/// Close codes a worker may send (RFC 6455 §7.4: 1000, 3000–4999, and the
/// defined ones that are not reserved for the endpoint's own use).
fn check_close(code: u64, reason: &str) -> Result<(), (&'static str, String)> {
    let allowed = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !allowed {
        return Err(("TypeError", format!("invalid WebSocket close code {code}")));
    }
    if reason.len() > 123 {
        return Err((
            "TypeError",
            "a close reason may be at most 123 bytes".into(),
        ));
    }
    Ok(())
}

fn attach(worker: &Weak<Worker>, args: &Value) -> Answer {
    let id = args["id"].as_str().unwrap_or_default();
    let attachment = match &args["attachment"] {
        Value::Null => None,
        value => Some(value.to_string()),
    };
    sockets()
        .set_attachment(worker, id, attachment)
        .map_err(|e| ("Error", e))?;
    Ok(Value::Null)
}

fn object_key<'a>(caller: &'a Caller<'_>, what: &str) -> Result<&'a str, (&'static str, String)> {
    match caller.place {
        Place::Object(key) => Ok(key),
        Place::Pool | Place::Socket(_) => {
            Err(("TypeError", format!("{what} is for Durable Objects")))
        }
    }
}

fn list(caller: Caller<'_>, args: &Value) -> Answer {
    let key = object_key(&caller, "ctx.getWebSockets()")?;
    let listed = sockets().list(caller.worker, key, args["tag"].as_str());
    Ok(serde_json::to_value(listed).unwrap_or_default())
}

fn auto(caller: Caller<'_>, args: &Value) -> Answer {
    let key = object_key(&caller, "ctx.setWebSocketAutoResponse()")?;
    let pair = match (args["request"].as_str(), args["response"].as_str()) {
        (Some(request), Some(response)) => Some((request.to_string(), response.to_string())),
        _ => None,
    };
    sockets().set_auto_response(caller.worker, key, pair);
    Ok(Value::Null)
}

fn error(name: &str, message: String) -> HostResponse {
    let body = json!({ "name": name, "message": message }).to_string();
    let mut response = http::Response::new(full_body(body));
    *response.status_mut() = http::StatusCode::BAD_REQUEST;
    response.headers_mut().insert(
        taipan_guest::contract::HEADER_ERROR,
        http::HeaderValue::from_static(taipan_guest::contract::ERROR_MARK),
    );
    response
}
