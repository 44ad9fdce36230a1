//! What the end of a guest call becomes for the client: the response held
//! to `max_response_body`, and a failed call's status, text and log line.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::body::LimitedResponse;
use crate::call::classify_trap;
use crate::worker::{Body, Worker};

impl Worker {
    /// Hold a response to `max_response_body`: a declared length over it is
    /// refused outright (500); a body that streams past it is cut off.
    pub(crate) fn limit_response(&self, tag: &str, response: Response<Body>) -> Response<Body> {
        let limit = self.template.limits.max_response_body;
        let declared = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            tracing::warn!(worker = %self.name, "{tag}: the response body is over the max_response_body limit ({limit} bytes); 500");
            return text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the worker's response exceeds its max_response_body limit\n",
            );
        }
        let (name, tag) = (self.name.clone(), tag.to_string());
        response.map(|body| {
            LimitedResponse::wrap(body, limit, move || {
                tracing::warn!(worker = %name, "{tag}: the response body exceeded the max_response_body limit ({limit} bytes); cut off");
            })
        })
    }

    pub(crate) fn log_failure(
        &self,
        tag: &str,
        error: &wasmtime::Error,
    ) -> (StatusCode, &'static str) {
        let (status, what) = classify_trap(error);
        match what {
            Some(limit) => tracing::warn!(
                worker = %self.name,
                "{tag}: exceeded the {limit} limit ({}); sandbox discarded",
                self.describe_limit(limit)
            ),
            None => {
                tracing::error!(worker = %self.name, "{tag}: the sandbox crashed and was discarded: {error:?}")
            }
        }
        let body = match what {
            Some("cpu_time") => "the worker exceeded its CPU time limit\n",
            Some(_) => "the worker exceeded a resource limit\n",
            None => "the worker crashed\n",
        };
        (status, body)
    }

    pub(crate) fn failure_response(&self, tag: &str, error: &wasmtime::Error) -> Response<Body> {
        let (status, body) = self.log_failure(tag, error);
        text_response(status, body)
    }

    fn describe_limit(&self, limit: &str) -> String {
        let limits = &self.template.limits;
        match limit {
            "cpu_time" => format!("{:?}", limits.cpu_time),
            "memory" => format!("{} MiB", limits.memory_bytes >> 20),
            _ => String::new(),
        }
    }
}

pub fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let body = Full::new(Bytes::from_static(text.as_bytes()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
