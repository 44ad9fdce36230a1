//! What a sandbox reaches outside itself: its worker's bindings and the
//! internet. Both arrive as `wasi:http` outgoing requests, so the guest's
//! world stays the standard `wasi:http/proxy` (a Taipan component still runs
//! under `wasmtime serve`):
//!
//! - `POST http://{AUTHORITY_BINDING}/<BINDING>/<op>`: a binding call,
//!   handed to [`WorkerHost::binding`] (the wire format is in
//!   `taipan_guest::contract`);
//! - anything else: an outbound subrequest, handed to [`WorkerHost::fetch`].
//!
//! The per-request view ([`RequestView`]) counts both against named limits.
//!
//! Outbound TCP (`wasi:sockets`, the guest's own `socket` module) does not
//! go through `wasi:http`: the sandbox's WASI context asks
//! [`WorkerHost::tcp_connect_allowed`] for each address a guest connects
//! to, and counts connections against `max_tcp_connections`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use http_body_util::BodyExt;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::{HyperIncomingBody, HyperOutgoingBody};
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, IncomingResponse, OutgoingRequestConfig,
};
use wasmtime_wasi_http::p2::{HttpResult, WasiHttpHooks};

use taipan_guest::contract::{AUTHORITY_BINDING, HEADER_ARGS, WEBSOCKET_BINDING};

use crate::sandbox::Sandbox;
use crate::worker::Worker;

pub type HostResponse = http::Response<HyperIncomingBody>;
pub type HostFuture = Pin<Box<dyn Future<Output = Result<HostResponse, ErrorCode>> + Send>>;
/// Whether a guest may open a TCP connection (the shape `wasi:sockets`' check wants).
pub type AllowFuture = Pin<Box<dyn Future<Output = bool> + Send + Sync>>;

/// Worker-lifetime services a sandbox can call. Implemented by
/// `taipan-bindings`; the runtime only routes to it.
pub trait WorkerHost: Send + Sync + 'static {
    /// A call to binding `name`, operation `op`.
    fn binding(
        &self,
        name: &str,
        op: &str,
        request: http::Request<HyperOutgoingBody>,
    ) -> HostFuture;

    /// An outbound subrequest (`fetch`).
    fn fetch(
        &self,
        request: http::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HostFuture;

    /// A response the host gives instead of running the worker (a static
    /// asset), decided from the request line and headers alone.
    fn before_worker(&self, _request: &http::request::Parts) -> Option<HostFuture> {
        None
    }

    /// Whether the guest may open a TCP connection to `addr` (its own
    /// `socket` module, over `wasi:sockets`). Listening and UDP are never
    /// allowed; by default neither is this.
    fn tcp_connect_allowed(&self, _addr: SocketAddr) -> AllowFuture {
        Box::pin(async { false })
    }
}

/// A worker without bindings; outbound fetch is refused.
pub struct NoHost;

impl WorkerHost for NoHost {
    fn binding(&self, name: &str, _: &str, _: http::Request<HyperOutgoingBody>) -> HostFuture {
        let message = format!("this worker has no binding named {name:?}");
        Box::pin(async move { Err(ErrorCode::InternalError(Some(message))) })
    }

    fn fetch(&self, _: http::Request<HyperOutgoingBody>, _: OutgoingRequestConfig) -> HostFuture {
        Box::pin(async {
            Err(ErrorCode::InternalError(Some(
                "outbound fetch is not available here".into(),
            )))
        })
    }
}

/// Per-request limits on what the guest may ask of the host.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    /// Outbound `fetch` calls per request (Workers' free-plan default: 50).
    pub max_subrequests: u32,
    /// Binding calls per request (Workers allows 1,000 to its own services).
    pub max_binding_calls: u32,
    /// Outbound TCP connections opened per request (`socket.connect`); a
    /// connection kept open across requests by a warm sandbox counts once.
    pub max_tcp_connections: u32,
    /// Bytes read and written over those connections per request.
    pub max_tcp_bytes: u64,
}

impl Default for HostLimits {
    fn default() -> Self {
        Self {
            max_subrequests: 50,
            max_binding_calls: 1000,
            max_tcp_connections: 50,
            max_tcp_bytes: 100 * 1000 * 1000,
        }
    }
}

/// Where the call a sandbox runs came from: what a WebSocket it accepts
/// belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A pooled sandbox (a request, an event, an entrypoint).
    Pool,
    /// The Durable Object `<class>/<id>`'s own sandbox.
    Object(String),
    /// The slot of WebSockets accepted outside a Durable Object.
    Socket(String),
}

/// The slot a pooled sandbox moves into when its call ends, because it
/// accepted a WebSocket (`websocket::ops`); locked until then.
pub struct Adopted {
    pub key: String,
    pub slot: tokio::sync::OwnedMutexGuard<Option<Sandbox>>,
}

/// The request-lifetime view: the worker's host plus this request's counters.
pub struct RequestView {
    host: Arc<dyn WorkerHost>,
    limits: HostLimits,
    subrequests: u32,
    binding_calls: u32,
    worker: Weak<Worker>,
    max_websockets: usize,
    place: Place,
    adopted: std::sync::Mutex<Option<Adopted>>,
}

impl RequestView {
    pub fn new(
        host: Arc<dyn WorkerHost>,
        limits: HostLimits,
        worker: Weak<Worker>,
        max_websockets: usize,
    ) -> Self {
        Self {
            host,
            limits,
            subrequests: 0,
            binding_calls: 0,
            worker,
            max_websockets,
            place: Place::Pool,
            adopted: std::sync::Mutex::new(None),
        }
    }

    /// A new request starts with fresh counters.
    pub fn reset(&mut self, place: Place) {
        self.subrequests = 0;
        self.binding_calls = 0;
        self.place = place;
        *self.adopted.get_mut().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The slot this call's sandbox must move into, if it accepted a
    /// WebSocket outside a Durable Object.
    pub fn take_adopted(&mut self) -> Option<Adopted> {
        self.adopted
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn count_subrequest(&mut self) -> Result<(), ErrorCode> {
        self.subrequests += 1;
        if self.subrequests > self.limits.max_subrequests {
            return Err(ErrorCode::InternalError(Some(format!(
                "too many subrequests in one request (the max_subrequests limit is {})",
                self.limits.max_subrequests
            ))));
        }
        Ok(())
    }

    fn route(
        &mut self,
        request: http::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> Result<HostFuture, ErrorCode> {
        let internal = request
            .uri()
            .authority()
            .is_some_and(|a| a.as_str() == AUTHORITY_BINDING);
        if internal {
            let path = request.uri().path().trim_start_matches('/').to_string();
            let (name, op) = path.split_once('/').unwrap_or((&path, ""));
            // WebSocket calls are bounded by the sockets' own limits (open
            // sockets, buffered frames), not max_binding_calls: a broadcast
            // is one call per member. An outbound connect is a subrequest.
            if name == WEBSOCKET_BINDING {
                if op == "connect" {
                    self.count_subrequest()?;
                }
                let args = request
                    .headers()
                    .get(HEADER_ARGS)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("{}");
                let caller = crate::websocket::ops::Caller {
                    worker: &self.worker,
                    place: &self.place,
                    adopted: &self.adopted,
                    max_websockets: self.max_websockets,
                };
                if op == "connect" {
                    let host = self.host.clone();
                    return Ok(crate::websocket::ops::connect(caller, args, host));
                }
                let response = crate::websocket::ops::call(caller, op, args);
                return Ok(Box::pin(async move { Ok(response) }));
            }
            self.binding_calls += 1;
            if self.binding_calls > self.limits.max_binding_calls {
                return Err(ErrorCode::InternalError(Some(format!(
                    "too many binding calls in one request (the max_binding_calls limit is {})",
                    self.limits.max_binding_calls
                ))));
            }
            return Ok(self.host.binding(name, op, request));
        }
        self.count_subrequest()?;
        Ok(self.host.fetch(request, config))
    }
}

/// Headers that describe one connection, not the request: never passed on.
/// (wasmtime's default list also hides `host`, which Workers code reads.)
pub const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "http2-settings",
];

impl WasiHttpHooks for RequestView {
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        HOP_BY_HOP.contains(&name.as_str())
    }

    fn send_request(
        &mut self,
        request: http::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        let between_bytes_timeout = config.between_bytes_timeout;
        let future = self.route(request, config)?;
        let handle = wasmtime_wasi::runtime::spawn(async move {
            Ok(future.await.map(|resp| IncomingResponse {
                resp,
                worker: None,
                between_bytes_timeout,
            }))
        });
        Ok(HostFutureIncomingResponse::pending(handle))
    }
}

/// A complete body for a host response.
pub fn full_body(bytes: impl Into<bytes::Bytes>) -> HyperIncomingBody {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
