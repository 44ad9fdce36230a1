//! Service bindings (`services`): `env.OTHER.fetch(request)` runs the
//! request through another worker on the same server, without the network;
//! `await env.OTHER.method(args)` calls an RPC method of its entrypoint
//! (`Default`, or the `entrypoint` the binding names).

use std::sync::Arc;

use taipan_config::bindings::ServiceBinding;
use taipan_guest::contract::{
    AUTHORITY_SERVICE, DEFAULT_ENTRYPOINT, HEADER_PREFIX, HEADER_URL, HEADER_WEBSOCKET, OP_FETCH,
    OP_RPC,
};
use taipan_runtime::Worker;
use taipan_runtime::host::{HostFuture, HostResponse};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// Finds the worker a service binding names, at call time (so a redeployed
/// or later-started worker is found).
pub trait Services: Send + Sync + 'static {
    fn worker(&self, name: &str) -> Option<Arc<Worker>>;
}

/// No other workers (a single worker with no service bindings).
pub struct NoServices;

impl Services for NoServices {
    fn worker(&self, _: &str) -> Option<Arc<Worker>> {
        None
    }
}

/// A service binding's call (`op` is `fetch` or `rpc`) run in the worker it
/// names. A fetch to the default entrypoint is a request like one from
/// outside (static assets first); a fetch to a named entrypoint and every RPC
/// call go to that class through `AUTHORITY_SERVICE`.
pub fn call(
    services: &Arc<dyn Services>,
    binding: &ServiceBinding,
    op: &str,
    request: http::Request<HyperOutgoingBody>,
) -> HostFuture {
    let worker = services.worker(&binding.service);
    let service = binding.service.clone();
    let entrypoint = binding.entrypoint.clone();
    let op = op.to_string();
    Box::pin(async move {
        let Some(worker) = worker else {
            return Ok(binding_error(format!(
                "the service binding's worker {service:?} is not running on this server"
            )));
        };
        match (op.as_str(), entrypoint) {
            (OP_FETCH, None) => {
                let Some(request) = addressed(request) else {
                    return Ok(binding_error("the service request has no valid URL".into()));
                };
                Ok(from_callee(worker.handle_from_worker(request).await))
            }
            (OP_FETCH | OP_RPC, entrypoint) => {
                let entrypoint = entrypoint.as_deref().unwrap_or(DEFAULT_ENTRYPOINT);
                let (mut parts, body) = request.into_parts();
                let Ok(uri) = format!("http://{AUTHORITY_SERVICE}/{entrypoint}/{op}").parse()
                else {
                    return Ok(binding_error(format!(
                        "{entrypoint:?} is not an entrypoint name"
                    )));
                };
                parts.uri = uri;
                parts.headers.insert(
                    http::header::HOST,
                    http::HeaderValue::from_static(AUTHORITY_SERVICE),
                );
                Ok(from_callee(
                    worker
                        .entrypoint(http::Request::from_parts(parts, body))
                        .await,
                ))
            }
            (op, _) => Ok(binding_error(format!(
                "a service binding has no operation {op:?}"
            ))),
        }
    })
}

/// The request a guest addressed to a binding, re-addressed to the URL it
/// carries in `HEADER_URL` (with its Host header); `None` without one.
pub fn addressed(
    request: http::Request<HyperOutgoingBody>,
) -> Option<http::Request<HyperOutgoingBody>> {
    let (mut parts, body) = request.into_parts();
    let url = parts
        .headers
        .remove(HEADER_URL)
        .and_then(|v| v.to_str().ok()?.parse::<http::Uri>().ok());
    let url = url?;
    if let Some(host) = url.authority()
        && let Ok(value) = http::HeaderValue::from_str(host.as_str())
    {
        parts.headers.insert(http::header::HOST, value);
    }
    parts.uri = url;
    Some(http::Request::from_parts(parts, body))
}

/// A response another worker (or an upstream) made, made safe to hand to a
/// guest: its `x-taipan-*` headers are dropped, so only the host can mark a
/// response as its own error.
///
/// The one exception: a 101's `HEADER_WEBSOCKET`, the id of the socket the
/// callee accepted, which the caller returns for the host to bind (an id
/// binds only a socket that was accepted and not yet claimed).
pub fn from_callee(mut response: HostResponse) -> HostResponse {
    let switching = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    let internal: Vec<http::HeaderName> = response
        .headers()
        .keys()
        .filter(|name| name.as_str().starts_with(HEADER_PREFIX))
        .filter(|name| !(switching && name.as_str() == HEADER_WEBSOCKET))
        .cloned()
        .collect();
    for name in internal {
        response.headers_mut().remove(name);
    }
    response
}

/// A failed route (no such worker, entrypoint or object) as the guest's
/// `fetch`/RPC call raises it.
pub fn binding_error(message: String) -> HostResponse {
    crate::protocol::BindingError::route(message).into_response()
}
