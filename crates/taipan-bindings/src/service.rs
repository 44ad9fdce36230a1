//! Service bindings (`services`): `env.OTHER.fetch(request)` runs the
//! request through another worker on the same server, without the network;
//! `await env.OTHER.method(args)` calls an RPC method of its entrypoint
//! (`Default`, or the `entrypoint` the binding names).

use std::sync::Arc;

use taipan_config::bindings::ServiceBinding;
use taipan_runtime::Worker;
use taipan_runtime::host::{HostFuture, HostResponse, full_body};
use taipan_runtime::worker::SERVICE_AUTHORITY;
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

pub const URL_HEADER: &str = "x-taipan-url";
pub const ERROR_HEADER: &str = "x-taipan-error";

/// A service binding's call (`op` is `fetch` or `rpc`) run in the worker it
/// names. A fetch to the default entrypoint is a request like one from
/// outside (static assets first); a fetch to a named entrypoint and every RPC
/// call go to that class through [`SERVICE_AUTHORITY`].
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
            ("fetch", None) => {
                let Some(request) = addressed(request) else {
                    return Ok(binding_error("the service request has no valid URL".into()));
                };
                Ok(worker.handle(request).await)
            }
            ("fetch" | "rpc", entrypoint) => {
                let entrypoint = entrypoint.as_deref().unwrap_or("Default");
                let (mut parts, body) = request.into_parts();
                let Ok(uri) = format!("http://{SERVICE_AUTHORITY}/{entrypoint}/{op}").parse()
                else {
                    return Ok(binding_error(format!(
                        "{entrypoint:?} is not an entrypoint name"
                    )));
                };
                parts.uri = uri;
                parts.headers.insert(
                    http::header::HOST,
                    http::HeaderValue::from_static(SERVICE_AUTHORITY),
                );
                Ok(worker
                    .entrypoint(http::Request::from_parts(parts, body))
                    .await)
            }
            (op, _) => Ok(binding_error(format!(
                "a service binding has no operation {op:?}"
            ))),
        }
    })
}

/// The request a guest addressed to a binding, re-addressed to the URL it
/// carries in `x-taipan-url` (with its Host header); `None` without one.
pub fn addressed(
    request: http::Request<HyperOutgoingBody>,
) -> Option<http::Request<HyperOutgoingBody>> {
    let (mut parts, body) = request.into_parts();
    let url = parts
        .headers
        .remove(URL_HEADER)
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

pub fn binding_error(message: String) -> HostResponse {
    let mut response = http::Response::new(full_body(message));
    *response.status_mut() = http::StatusCode::BAD_GATEWAY;
    response
        .headers_mut()
        .insert(ERROR_HEADER, http::HeaderValue::from_static("1"));
    response
}
