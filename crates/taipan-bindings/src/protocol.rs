//! The wire format of a binding call (`taipan_guest::contract`; the guest's
//! side is `python/_taipan/host.py`): the body is the arguments as one line
//! of JSON, a newline, then the payload if any. The reply mirrors it: a JSON
//! body, or for a payload reply JSON about the payload as one line (`null`
//! for a miss), a newline, then the payload, streamed; failures are 4xx/5xx
//! with `{"name", "message"}` and `HEADER_ERROR`.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;
use taipan_guest::contract::{ERROR_MARK, HEADER_ERROR, STATUS_ROUTE_ERROR};
use taipan_runtime::host::{HostResponse, full_body};
use wasmtime_wasi_http::p2::body::{HyperIncomingBody, HyperOutgoingBody};

/// The largest arguments line a call may send (D1 batches and Durable Object
/// writes carry their SQL and values there; each binding bounds its own
/// parts further).
pub const MAX_ARGS_BYTES: usize = 32 << 20;

/// One call as the binding sees it.
pub struct Call {
    pub args: Value,
    /// The payload: what follows the arguments line.
    pub body: HyperOutgoingBody,
}

impl Call {
    /// Reads the arguments line off the request's body; the rest of the
    /// body, unread, is the payload.
    pub async fn read(request: http::Request<HyperOutgoingBody>) -> Result<Self, BindingError> {
        // Only the body matters: the path (binding/op) is routed already.
        let mut body = request.into_body();
        let mut line = BytesMut::new();
        let rest = loop {
            let frame = match body.frame().await {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => {
                    return Err(BindingError::error(format!("reading the call failed: {e}")));
                }
                None => break Bytes::new(),
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let searched = line.len();
            line.extend_from_slice(&data);
            let end = line[searched..].iter().position(|&b| b == b'\n');
            if end.map_or(line.len(), |end| searched + end) > MAX_ARGS_BYTES {
                return Err(BindingError::range_error(format!(
                    "the call's arguments are over the limit of {MAX_ARGS_BYTES} bytes"
                )));
            }
            if let Some(end) = end {
                let rest = line.split_off(searched + end + 1).freeze();
                line.truncate(searched + end);
                break rest;
            }
        };
        let args = if line.is_empty() {
            Value::Object(Default::default())
        } else {
            serde_json::from_slice(&line).map_err(|e| {
                BindingError::type_error(format!("malformed binding arguments: {e}"))
            })?
        };
        let first =
            futures::stream::iter((!rest.is_empty()).then(|| Ok(http_body::Frame::data(rest))));
        let body = http_body_util::StreamBody::new(
            first.chain(
                body.into_data_stream()
                    .map(|chunk| chunk.map(http_body::Frame::data)),
            ),
        );
        Ok(Self {
            args,
            body: body.boxed_unsync(),
        })
    }

    /// The payload, whole, refused past `limit` bytes.
    pub async fn payload(self, limit: usize, what: &str) -> Result<Bytes, BindingError> {
        let limited = http_body_util::Limited::new(self.body, limit);
        match limited.collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                Err(BindingError::range_error(format!(
                    "{what} is over the limit of {limit} bytes"
                )))
            }
            Err(e) => Err(BindingError::error(format!("reading {what} failed: {e}"))),
        }
    }

    pub fn str_arg(&self, name: &str) -> Result<&str, BindingError> {
        self.args
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| BindingError::type_error(format!("`{name}` must be a string")))
    }

    /// A string argument, or "" when absent.
    pub fn opt_str(&self, name: &str) -> &str {
        self.args.get(name).and_then(Value::as_str).unwrap_or("")
    }

    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, BindingError> {
        match self.args.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| BindingError::type_error(format!("`{name}` must be an integer"))),
        }
    }
}

/// A binding's answer.
pub enum Reply {
    Json(Value),
    /// A reply another node already encoded (a call forwarded to the node
    /// that owns what it addresses), passed on as it is.
    Forwarded(HostResponse),
    /// A payload, with metadata about it (`null` only for a miss: see
    /// `Reply::miss`).
    Payload {
        meta: Value,
        body: HyperIncomingBody,
    },
}

impl Reply {
    /// The answer of a payload op that found nothing: meta `null`, no payload.
    pub fn miss() -> Self {
        Reply::Payload {
            meta: Value::Null,
            body: full_body(Bytes::new()),
        }
    }

    pub fn into_response(self) -> HostResponse {
        match self {
            Reply::Json(value) => http::Response::new(full_body(value.to_string())),
            Reply::Forwarded(response) => response,
            Reply::Payload { meta, body } => {
                // serde_json writes no raw newline (it escapes those in
                // strings), so the first `\n` ends the line.
                let mut line = meta.to_string().into_bytes();
                line.push(b'\n');
                let first = futures::stream::iter([Ok(http_body::Frame::data(Bytes::from(line)))]);
                let frames = first.chain(http_body_util::BodyStream::new(body));
                http::Response::new(http_body_util::StreamBody::new(frames).boxed_unsync())
            }
        }
    }
}

/// An error the worker sees as a Python exception (`JsException`), with the
/// name Workers would give it.
#[derive(Debug, Clone)]
pub struct BindingError {
    pub name: &'static str,
    pub message: String,
    pub status: http::StatusCode,
}

impl BindingError {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            name: "Error",
            message: message.into(),
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn type_error(message: impl Into<String>) -> Self {
        Self {
            name: "TypeError",
            message: message.into(),
            status: http::StatusCode::BAD_REQUEST,
        }
    }

    pub fn range_error(message: impl Into<String>) -> Self {
        Self {
            name: "RangeError",
            message: message.into(),
            status: http::StatusCode::BAD_REQUEST,
        }
    }

    /// A binding's route failed: no such worker, object or entrypoint.
    pub fn route(message: impl Into<String>) -> Self {
        Self {
            name: "Error",
            message: message.into(),
            status: http::StatusCode::from_u16(STATUS_ROUTE_ERROR)
                .unwrap_or(http::StatusCode::BAD_GATEWAY),
        }
    }

    /// The one encoding of a host error (see `taipan_guest::contract`).
    pub fn into_response(self) -> HostResponse {
        let body = serde_json::json!({"name": self.name, "message": self.message});
        let mut response = http::Response::new(full_body(body.to_string()));
        *response.status_mut() = self.status;
        response
            .headers_mut()
            .insert(HEADER_ERROR, http::HeaderValue::from_static(ERROR_MARK));
        response
    }
}

impl From<rusqlite::Error> for BindingError {
    fn from(e: rusqlite::Error) -> Self {
        Self::error(e.to_string())
    }
}

/// A body that streams bytes from any chunk stream.
pub fn stream_body<S>(stream: S) -> HyperIncomingBody
where
    S: futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let frames = stream.map(|chunk| {
        chunk.map(http_body::Frame::data).map_err(|e| {
            wasmtime_wasi_http::p2::bindings::http::types::ErrorCode::InternalError(Some(
                e.to_string(),
            ))
        })
    });
    http_body_util::StreamBody::new(frames).boxed_unsync()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::future::BoxFuture;

    /// A binding that answers with what it was called with.
    struct Echo;

    impl crate::Binding for Echo {
        fn call(
            self: Arc<Self>,
            op: &str,
            call: Call,
        ) -> BoxFuture<'static, Result<Reply, BindingError>> {
            let op = op.to_string();
            Box::pin(async move {
                let payload = call.args.clone();
                let bytes = call.payload(1 << 20, "the payload").await?;
                Ok(Reply::Json(serde_json::json!({
                    "op": op, "args": payload, "payload": String::from_utf8_lossy(&bytes),
                })))
            })
        }
    }

    #[tokio::test]
    async fn arguments_end_at_the_first_newline_whatever_the_frames() {
        let args = serde_json::json!({"sql": "SELECT 'a\nb'", "n": 1});
        let (reply, _) = crate::testing::call(Arc::new(Echo), "exec", args.clone(), b"x\ny\n")
            .await
            .unwrap();
        assert_eq!(
            reply,
            serde_json::json!({"op": "exec", "args": args, "payload": "x\ny\n"})
        );
    }

    #[tokio::test]
    async fn a_malformed_arguments_line_is_a_type_error() {
        let body = http_body_util::Full::new(Bytes::from_static(b"{nope\npayload"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let request = http::Request::post("http://b/op").body(body).unwrap();
        let error = Call::read(request).await.err().unwrap();
        assert_eq!(error.name, "TypeError");
        let empty = http_body_util::Full::new(Bytes::new())
            .map_err(|never| match never {})
            .boxed_unsync();
        let call = Call::read(http::Request::post("http://b/op").body(empty).unwrap())
            .await
            .ok()
            .unwrap();
        assert_eq!(call.args, serde_json::json!({}));
    }

    use super::*;

    /// A payload reply is its meta line, then the payload's own frames,
    /// passed on one by one (streamed, not gathered first).
    #[tokio::test]
    async fn a_payload_reply_is_a_meta_line_then_the_payload() {
        let meta = serde_json::json!({"note": "é\n☃ 😀"});
        let chunks = ["line 1\n", "line 2\n"];
        let payload = stream_body(futures::stream::iter(
            chunks.map(|c| Ok(Bytes::from_static(c.as_bytes()))),
        ));
        let reply = Reply::Payload {
            meta: meta.clone(),
            body: payload,
        };
        let mut body = reply.into_response().into_body();
        let mut frames = Vec::new();
        while let Some(frame) = body.frame().await {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(frames.len(), 3, "the line, then each frame of the payload");
        assert_eq!(frames[0], format!("{meta}\n"));
        let (got, rest) = crate::testing::split_payload(frames.concat().into());
        assert_eq!(got, meta);
        assert_eq!(&rest[..], b"line 1\nline 2\n");

        let body = Reply::miss().into_response().into_body();
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"null\n");
    }
}
