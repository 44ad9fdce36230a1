//! Service bindings (`services`): `env.OTHER.fetch(request)` runs the
//! request through another worker on the same server, without the network.

use std::sync::Arc;

use taipan_runtime::Worker;
use taipan_runtime::host::{HostFuture, HostResponse, full_body};
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

/// Forward `request` (addressed to the binding) to the worker `service`.
pub fn forward(
    services: &Arc<dyn Services>,
    service: &str,
    request: http::Request<HyperOutgoingBody>,
) -> HostFuture {
    let worker = services.worker(service);
    let service = service.to_string();
    Box::pin(async move {
        let Some(worker) = worker else {
            return Ok(binding_error(format!(
                "the service binding's worker {service:?} is not running on this server"
            )));
        };
        let Some(request) = addressed(request) else {
            return Ok(binding_error("the service request has no valid URL".into()));
        };
        let response = worker.handle(request).await;
        Ok(response)
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
