//! One client connection bound to a socket a worker accepted: the upgrade
//! handshake, a reader that turns each client message into an event in the
//! owner's slot (in order, one at a time), and a writer that sends what the
//! worker queued. Limits: `websocket_max_message` (1009 past it),
//! `websocket_messages_per_second` (reading pauses), `websocket_idle_timeout`
//! (1001).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use taipan_guest::contract::{HEADER_UPGRADE, HEADER_WEBSOCKET, STATUS_GONE};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{Frame, Owner, sockets};
use crate::limits::Limits;
use crate::respond::text_response;
use crate::worker::{Body, Worker};

/// A request asking for a WebSocket, with what the handshake needs.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl Upgrade {
    /// If `parts` is a valid WebSocket upgrade (RFC 6455 §4.2.1), take what
    /// the handshake needs and mark the request for the guest
    /// (`HEADER_UPGRADE`). A client's own `HEADER_UPGRADE` is dropped first.
    pub fn take(parts: &mut http::request::Parts) -> Option<Self> {
        parts.headers.remove(HEADER_UPGRADE);
        let has_token = |name: http::header::HeaderName, token: &str| {
            parts.headers.get_all(name).iter().any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            })
        };
        let valid = parts.method == http::Method::GET
            && has_token(http::header::UPGRADE, "websocket")
            && has_token(http::header::CONNECTION, "upgrade")
            && parts
                .headers
                .get(http::header::SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v == "13");
        let key = parts.headers.get(http::header::SEC_WEBSOCKET_KEY)?.clone();
        if !valid {
            return None;
        }
        let on_upgrade = parts.extensions.remove::<OnUpgrade>()?;
        parts
            .headers
            .insert(HEADER_UPGRADE, HeaderValue::from_static("websocket"));
        Some(Self { key, on_upgrade })
    }
}

/// Turn the worker's answer into what the client gets: a 101 that binds the
/// connection to the accepted socket, or the answer as it is.
pub fn finish(
    worker: &Arc<Worker>,
    upgrade: Option<Upgrade>,
    mut response: Response<Body>,
) -> Response<Body> {
    let id = response
        .headers_mut()
        .remove(HEADER_WEBSOCKET)
        .and_then(|v| v.to_str().ok().map(str::to_string));
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    let Some(upgrade) = upgrade else {
        if let Some(id) = &id {
            release(id);
            super::remote::remotes().claim(id);
        }
        tracing::warn!(worker = %worker.name, "the worker answered 101 to a request that is not a WebSocket upgrade; 500");
        return text_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the worker answered 101 to a request that is not a WebSocket upgrade\n",
        );
    };
    let Some(id) = id else {
        return not_accepted(worker);
    };
    if let Some(dial) = super::remote::remotes().claim(&id) {
        // Accepted on another node: this one relays.
        let switching = switching(&upgrade.key, &response);
        tokio::spawn(super::remote::relay(upgrade.on_upgrade, dial));
        return switching;
    }
    bind_here(worker, upgrade, &id, &response)
}

/// Bind the upgraded connection to socket `id`, accepted in this process
/// (never relayed: the internal listener binds what another node relays
/// here with this).
pub fn bind_here(
    worker: &Arc<Worker>,
    upgrade: Upgrade,
    id: &str,
    response: &Response<Body>,
) -> Response<Body> {
    let Some((owner, frames)) = sockets().claim(id) else {
        return not_accepted(worker);
    };
    let limits = owner
        .worker
        .upgrade()
        .map_or_else(|| worker.limits().clone(), |w| w.limits().clone());
    let switching = switching(&upgrade.key, response);
    tokio::spawn(run(
        id.to_string(),
        owner,
        frames,
        upgrade.on_upgrade,
        limits,
    ));
    switching
}

fn not_accepted(worker: &Arc<Worker>) -> Response<Body> {
    tracing::warn!(worker = %worker.name, "the worker answered 101 without a WebSocket it accepted; 500");
    text_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the worker answered 101 without an accepted WebSocket: call server.accept() (or ctx.acceptWebSocket(server)) before returning the client end\n",
    )
}

/// The 101 the client gets for the handshake with `key`, with the
/// subprotocol the worker chose in `response`.
fn switching(key: &HeaderValue, response: &Response<Body>) -> Response<Body> {
    let mut switching = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *switching.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = switching.headers_mut();
    headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = response.headers().get(http::header::SEC_WEBSOCKET_PROTOCOL) {
        headers.insert(http::header::SEC_WEBSOCKET_PROTOCOL, protocol.clone());
    }
    switching
}

/// How a connection ended, for the worker's close event.
struct Ended {
    code: u16,
    reason: String,
    clean: bool,
}

async fn run(
    id: String,
    owner: Owner,
    frames: mpsc::Receiver<Frame>,
    on_upgrade: OnUpgrade,
    limits: Limits,
) {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!("a WebSocket upgrade failed: {e}");
            end(&id, &owner, None).await;
            return;
        }
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(limits.websocket_max_message))
        .max_frame_size(Some(limits.websocket_max_message));
    let socket =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    pump(id, owner, frames, socket, limits).await;
}

/// Carry socket `id` over `socket` until either side closes it: the
/// client's messages become events in the owner, the owner's frames go out.
pub(crate) async fn pump<S>(
    id: String,
    owner: Owner,
    mut frames: mpsc::Receiver<Frame>,
    socket: WebSocketStream<S>,
    limits: Limits,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = socket.split();
    let started = Instant::now();
    let active = Arc::new(AtomicU64::new(0));
    let touch = {
        let active = active.clone();
        move || active.store(started.elapsed().as_millis() as u64, Ordering::Relaxed)
    };

    let writer = {
        let touch = touch.clone();
        tokio::spawn(async move {
            while let Some(frame) = frames.recv().await {
                let close = matches!(frame, Frame::Close(..));
                if sink.send(message(frame)).await.is_err() {
                    return;
                }
                touch();
                if close {
                    break;
                }
            }
            // The close handshake, and a client that no longer reads, get
            // CLOSE_GRACE; then the connection is dropped.
            let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
        })
    };

    let mut pace = Pace::new(limits.websocket_messages_per_second);
    let idle = limits.websocket_idle_timeout;
    let mut closed_at: Option<Instant> = None;
    let ended = loop {
        let waited = tokio::time::timeout(idle.min(Duration::from_secs(5)), stream.next()).await;
        let message = match waited {
            Err(_) => {
                let now = started.elapsed().as_millis() as u64;
                let quiet =
                    Duration::from_millis(now.saturating_sub(active.load(Ordering::Relaxed)));
                // A close was sent (by the worker or here): the client's
                // answer gets CLOSE_GRACE.
                if sockets().closing(&id) {
                    let since = *closed_at.get_or_insert_with(Instant::now);
                    if since.elapsed() >= CLOSE_GRACE {
                        break None;
                    }
                } else if quiet >= idle {
                    let reason = "idle timeout";
                    sockets().close_from_host(&id, 1001, reason);
                    break Some(Ended {
                        code: 1001,
                        reason: reason.into(),
                        clean: false,
                    });
                }
                continue;
            }
            Ok(None) => break None,
            Ok(Some(Err(WsError::Capacity(_)))) => {
                let reason = "message too big";
                sockets().close_from_host(&id, 1009, reason);
                break Some(Ended {
                    code: 1009,
                    reason: reason.into(),
                    clean: false,
                });
            }
            Ok(Some(Err(e))) => {
                // A protocol error or a broken connection: the worker hears
                // of it (an error event), then of the close (1006).
                tracing::debug!("WebSocket {id}: {e}");
                let event = json!({ "event": "error", "message": e.to_string() });
                deliver(&id, &owner, event).await;
                break None;
            }
            Ok(Some(Ok(message))) => message,
        };
        touch();
        let event = match message {
            Message::Text(text) => {
                if let Some(reply) = sockets().auto_response(&owner, text.as_str()) {
                    let _ = sockets().send(&owner.worker, &id, Frame::Text(reply));
                    continue;
                }
                json!({ "event": "message", "text": text.as_str() })
            }
            Message::Binary(data) => json!({
                "event": "message",
                "binary": base64::engine::general_purpose::STANDARD.encode(&data),
            }),
            Message::Close(frame) => {
                break Some(match frame {
                    Some(frame) => Ended {
                        code: frame.code.into(),
                        reason: frame.reason.to_string(),
                        clean: true,
                    },
                    None => Ended {
                        code: 1005,
                        reason: String::new(),
                        clean: true,
                    },
                });
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        };
        pace.wait().await;
        if !deliver(&id, &owner, event).await {
            // The owner no longer has it (its sandbox crashed, the worker
            // was replaced): no close event can be delivered either.
            sockets().close_from_host(&id, 1011, "the worker lost this socket");
            release(&id);
            let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
            return;
        }
    };
    end(&id, &owner, ended).await;
    let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
}

/// How long a close handshake, or a final flush to a client, may take.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(10);

/// The connection is over: the owner gets its close event (whoever closed:
/// the client, the worker, or the host for a limit), then the socket is
/// forgotten, and a socket-only slot goes with its last socket.
async fn end(id: &str, owner: &Owner, ended: Option<Ended>) {
    let ended = ended.unwrap_or(Ended {
        code: 1006,
        reason: String::new(),
        clean: false,
    });
    let event = json!({
        "event": "close",
        "code": ended.code,
        "reason": ended.reason,
        "wasClean": ended.clean,
    });
    deliver(id, owner, event).await;
    release(id);
}

/// Forget socket `id`; a slot that held only sockets (not a Durable
/// Object's) goes with its last one, and its sandbox with it.
pub(crate) fn release(id: &str) {
    let Some(owner) = sockets().remove(id) else {
        return;
    };
    // Not while a call holds the slot: that call may be the one that will
    // move its sandbox in (it accepts another socket after a failed one).
    if !owner.object
        && let Some(worker) = owner.worker.upgrade()
        && sockets().count(&owner.worker, &owner.key).0 == 0
    {
        worker.socket_slots.remove_if_idle(&owner.key);
    }
}

/// Run one event in the owner; false if the owner no longer has the socket
/// (its sandbox was lost, or the worker was replaced).
async fn deliver(id: &str, owner: &Owner, mut event: Value) -> bool {
    let Some(worker) = owner.worker.upgrade() else {
        return false;
    };
    let Some((tags, attachment)) = sockets().describe(id) else {
        return false;
    };
    event["id"] = json!(id);
    event["hibernatable"] = json!(owner.hibernatable);
    event["tags"] = json!(tags);
    event["attachment"] = attachment
        .and_then(|a| serde_json::from_str(&a).ok())
        .unwrap_or(Value::Null);
    let response = worker
        .socket_event(owner, Bytes::from(event.to_string()))
        .await;
    let status = response.status();
    // Wait for the call to end before the next event (the body is empty).
    let _ = response.into_body().collect().await;
    if status.as_u16() == STATUS_GONE {
        return false;
    }
    if !status.is_success() {
        tracing::warn!(worker = %worker.name, "WebSocket {id}: the event handler failed ({status})");
    }
    true
}

fn message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::Text(text.into()),
        Frame::Binary(data) => Message::Binary(data),
        Frame::Close(code, reason) => Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        })),
    }
}

/// `websocket_messages_per_second` for one socket: a message past the
/// budget waits for the next slot (reading pauses; the client's sends back
/// up in TCP), nothing is dropped.
struct Pace {
    gap: Duration,
    next: Instant,
}

impl Pace {
    fn new(per_second: u32) -> Self {
        Self {
            gap: Duration::from_secs(1) / per_second.max(1),
            next: Instant::now(),
        }
    }

    async fn wait(&mut self) {
        let now = Instant::now();
        // Allow a burst of up to one second's budget.
        let floor = now.checked_sub(Duration::from_secs(1)).unwrap_or(now);
        self.next = self.next.max(floor);
        if self.next > now {
            tokio::time::sleep_until(self.next.into()).await;
        }
        self.next += self.gap;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pace_spaces_messages_past_the_budget() {
        let mut pace = Pace::new(100);
        let start = Instant::now();
        for _ in 0..20 {
            pace.wait().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(180),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn only_valid_upgrades_are_taken() {
        let request = |method: &str, headers: &[(&str, &str)]| {
            let mut builder = http::Request::builder().method(method).uri("/");
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            let (parts, ()) = builder.body(()).unwrap().into_parts();
            parts
        };
        let good = [
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            (HEADER_UPGRADE, "spoofed"),
        ];
        // Without hyper's upgrade handle (not a server connection) nothing is
        // taken, but the client's own marker is always dropped.
        let mut parts = request("GET", &good);
        assert!(Upgrade::take(&mut parts).is_none());
        assert!(parts.headers.get(HEADER_UPGRADE).is_none());
        let mut post = request("POST", &good);
        assert!(Upgrade::take(&mut post).is_none());
    }
}
