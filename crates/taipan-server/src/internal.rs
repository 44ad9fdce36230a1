//! The internal listener of a cluster node (`--internal-listen`): where
//! other nodes forward calls to the single-owner things this node holds
//! (`taipan_bindings::placement`). Every request must carry the nodes'
//! shared secret; nothing here is reachable with the admin token.
//!
//! ```text
//! POST /do/<script>/<class>/<id>/<rpc|fetch>   a Durable Object call
//! POST /d1/<database id>/<batch|exec>           a D1 query (a binding call's body)
//! GET  /ws/<script>/<socket id>                 a WebSocket an object here accepted
//! ```
//!
//! A Durable Object call that accepts a WebSocket answers 200 with the
//! socket's id (`HEADER_NODE_WEBSOCKET`) rather than a 101, which is
//! hop-by-hop; the calling node then dials `/ws/…` with the client's
//! upgrade and relays the connection's bytes, and the socket is bound here
//! as if the client had connected directly.

use std::net::SocketAddr;
use std::sync::Arc;

use http::StatusCode;
use hyper::body::Incoming;
use taipan_bindings::d1_cluster;
use taipan_bindings::durable::{self, lease_name};
use taipan_bindings::placement::{HEADER_NODE_SECRET, HEADER_NODE_WEBSOCKET, Place};
use taipan_bindings::protocol::{BindingError, Call};
use taipan_guest::contract::HEADER_WEBSOCKET;
use taipan_runtime::websocket::session::{self, Upgrade};
use taipan_runtime::websocket::sockets;
use taipan_runtime::worker::{Body, text_response};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use crate::front::Handler;
use crate::serve::ServeState;

pub struct InternalFront(pub Arc<ServeState>);

impl Handler for InternalFront {
    async fn handle(
        self: Arc<Self>,
        request: http::Request<Incoming>,
        _peer: SocketAddr,
    ) -> http::Response<Body> {
        let Some(placement) = self.0.stores.placement() else {
            return text_response(StatusCode::NOT_FOUND, "not a cluster node\n");
        };
        let secret = request
            .headers()
            .get(HEADER_NODE_SECRET)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !placement.authentic(secret) {
            return text_response(
                StatusCode::UNAUTHORIZED,
                "not from a node of this cluster\n",
            );
        }
        let path = request.uri().path().to_string();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if let ["ws", script, id] = segments[..] {
            return websocket(&self.0, script, id, request);
        }
        if let ["d1", id, op] = segments[..] {
            let id = percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned();
            return d1(&self.0, &id, op, request).await;
        }
        let ["do", script, class, id, op] = segments[..] else {
            return text_response(StatusCode::NOT_FOUND, "no such internal route\n");
        };
        if !durable::valid_id(id) {
            return text_response(StatusCode::BAD_REQUEST, "not a Durable Object id\n");
        }
        // Forwarded here because this node held the lease; it may have
        // moved since (expired, released on drain): then say so, and the
        // caller's next try finds the new owner.
        let fresh = match placement.place(&lease_name(script, class, id)).await {
            Ok(Place::Here { fresh, .. }) => fresh,
            Ok(Place::There(_)) => {
                return text_response(
                    StatusCode::MISDIRECTED_REQUEST,
                    "this node no longer owns the object: retry\n",
                );
            }
            Err(e) => return e.into_response(),
        };
        let Some(deployed) = self.0.registry.get(script) else {
            return BindingError::route(format!(
                "the worker {script:?} is not deployed on the node that owns the object"
            ))
            .into_response();
        };
        if fresh {
            deployed.worker.forget_object(&format!("{class}/{id}"));
        }
        let (mut parts, body) = request.into_parts();
        parts.headers.remove(HEADER_NODE_SECRET);
        let uri = format!(
            "http://{}/{class}/{id}/{op}",
            taipan_guest::contract::AUTHORITY_DURABLE
        );
        let Ok(uri) = uri.parse() else {
            return text_response(StatusCode::BAD_REQUEST, "a bad object path\n");
        };
        parts.uri = uri;
        parts.headers.insert(
            http::header::HOST,
            http::HeaderValue::from_static(taipan_guest::contract::AUTHORITY_DURABLE),
        );
        self.0.metrics.forwarded_in();
        let mut response = deployed
            .worker
            .durable_object(
                &format!("{class}/{id}"),
                http::Request::from_parts(parts, body),
            )
            .await;
        // The relay header is the host's alone: a guest's copy is dropped.
        response.headers_mut().remove(HEADER_NODE_WEBSOCKET);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(socket) = response.headers_mut().remove(HEADER_WEBSOCKET)
        {
            *response.status_mut() = StatusCode::OK;
            response.headers_mut().insert(HEADER_NODE_WEBSOCKET, socket);
        }
        response
    }
}

/// Bind the connection of another node relaying a client to socket `id`,
/// which a Durable Object of `script` accepted here.
fn websocket(
    state: &Arc<ServeState>,
    script: &str,
    id: &str,
    request: http::Request<Incoming>,
) -> http::Response<Body> {
    let (mut parts, _body) = request.into_parts();
    let Some(upgrade) = Upgrade::take(&mut parts) else {
        return text_response(StatusCode::BAD_REQUEST, "not a WebSocket upgrade\n");
    };
    let Some(deployed) = state.registry.get(script) else {
        return text_response(StatusCode::NOT_FOUND, "no such worker here\n");
    };
    if !sockets().waiting_for(id, script) {
        return text_response(
            StatusCode::NOT_FOUND,
            "no WebSocket of that worker with that id is waiting for its connection here\n",
        );
    }
    let accepted = text_response(StatusCode::SWITCHING_PROTOCOLS, "");
    session::bind_here(&deployed.worker, upgrade, id, &accepted)
}

/// A D1 query forwarded here: run it if this node still holds the database.
async fn d1(
    state: &Arc<ServeState>,
    id: &str,
    op: &str,
    request: http::Request<Incoming>,
) -> http::Response<Body> {
    use http_body_util::BodyExt as _;
    let Some(placement) = state.stores.placement() else {
        return text_response(StatusCode::NOT_FOUND, "not a cluster node\n");
    };
    match placement.place(&d1_cluster::lease_name(id)).await {
        Ok(Place::Here { .. }) => {}
        Ok(Place::There(_)) => {
            return text_response(
                StatusCode::MISDIRECTED_REQUEST,
                "this node no longer owns the database: retry\n",
            );
        }
        Err(e) => return e.into_response(),
    }
    let request = request.map(|body| {
        body.map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
            .boxed_unsync()
    });
    let call = match Call::read(request).await {
        Ok(call) => call,
        Err(e) => return e.into_response(),
    };
    state.metrics.forwarded_in();
    let database = d1_cluster::ClusteredD1 {
        id: id.to_string(),
        stores: state.stores.clone(),
    };
    match database.local(op, call).await {
        Ok(reply) => reply.into_response(),
        Err(e) => e.into_response(),
    }
}
