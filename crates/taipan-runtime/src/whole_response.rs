//! `taipan:worker/response.respond`: a whole response in one host call.
//!
//! wasi:http builds a response in nine calls (fields, response, status,
//! body, outparam, stream, write, stream drop, finish). Through
//! componentize-py's runtime each costs the guest 1.5–3 µs of Python object
//! work, which was over half of a warm hello request. The SDK sends a
//! response whose body it holds in full (up to `WHOLE_BODY_MAX` there) with
//! this call, and everything else (streamed bodies, HEAD) through wasi:http.
//! The response is held to the same rules: wasi:http's header checks, the
//! sandbox's field size limit, and a content-length that matches the body.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::p2::WasiHttpHooks;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::HostResponseOutparam;

use crate::sandbox::SandboxState;

mod generated {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "taipan:worker/host-calls",
        imports: { default: trappable },
        require_store_data_send: true,
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
        },
    });
}

use generated::taipan::worker::response;

/// Add `taipan:worker/response` to a sandbox linker.
pub fn add_to_linker(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    response::add_to_linker::<SandboxState, HasSelf>(linker, |state| state)
}

struct HasSelf;

impl HasData for HasSelf {
    type Data<'a> = &'a mut SandboxState;
}

impl response::Host for SandboxState {
    fn respond(
        &mut self,
        out: Resource<HostResponseOutparam>,
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let out = self.table.delete(out)?;
        let limit = self.field_size_limit;
        match build(&mut self.hooks, limit, status, headers, body) {
            Ok(response) => {
                (out.send)(Ok(response));
                Ok(Ok(()))
            }
            Err(message) => {
                (out.send)(Err(ErrorCode::InternalError(Some(message.clone()))));
                Ok(Err(message))
            }
        }
    }
}

/// The response the guest described, or why it cannot be sent.
fn build(
    hooks: &mut dyn WasiHttpHooks,
    field_size_limit: usize,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
) -> Result<http::Response<HyperOutgoingBody>, String> {
    let status = StatusCode::from_u16(status).map_err(|_| format!("invalid status {status}"))?;
    let mut fields = FieldMap::new_mutable(field_size_limit);
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name {name:?}"))?;
        if hooks.is_forbidden_header(&name) {
            return Err(format!("the header {name:?} is not allowed in a response"));
        }
        let value = HeaderValue::from_bytes(&value)
            .map_err(|_| format!("invalid value for the header {name:?}"))?;
        fields
            .append(name, value)
            .map_err(|e| format!("the response's headers: {e}"))?;
    }
    let headers: http::HeaderMap = fields.into();
    if let Some(declared) = headers.get(http::header::CONTENT_LENGTH) {
        // Digits only, as wasi:http reads it (`parse` would take "+3").
        let declared = declared
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok());
        if declared != Some(body.len() as u64) {
            return Err(format!(
                "the content-length header ({}) does not match the body's {} bytes",
                declared.map_or("not a number".to_string(), |n| n.to_string()),
                body.len()
            ));
        }
    }
    let body = Full::new(Bytes::from(body))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Hooks;
    impl WasiHttpHooks for Hooks {
        fn is_forbidden_header(&mut self, name: &HeaderName) -> bool {
            name == "connection"
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[tokio::test]
    async fn a_whole_response_keeps_status_headers_and_body() {
        let response = build(
            &mut Hooks,
            1024,
            201,
            headers(&[("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2")]),
            b"made".to_vec(),
        )
        .unwrap();
        assert_eq!(response.status(), 201);
        let values: Vec<_> = response.headers().get_all("x-a").iter().collect();
        assert_eq!(values, ["1", "2"]);
        assert_eq!(response.headers()["content-type"], "text/plain");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"made");
    }

    #[test]
    fn what_wasi_http_refuses_is_refused() {
        let refused = |status, pairs: &[(&str, &str)], body: &[u8]| {
            build(&mut Hooks, 256, status, headers(pairs), body.to_vec()).unwrap_err()
        };
        assert!(refused(99, &[], b"").contains("status"));
        assert!(refused(200, &[("bad name", "x")], b"").contains("header name"));
        assert!(refused(200, &[("x", "a\nb")], b"").contains("value"));
        assert!(refused(200, &[("connection", "close")], b"").contains("not allowed"));
        assert!(refused(200, &[("x-big", &"v".repeat(300))], b"").contains("headers"));
        assert!(refused(200, &[("content-length", "3")], b"four").contains("content-length"));
        assert!(refused(200, &[("content-length", "x")], b"").contains("not a number"));
        assert!(refused(200, &[("content-length", "+4")], b"four").contains("not a number"));
    }
}
