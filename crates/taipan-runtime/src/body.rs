//! The response body limit: a worker may not send more than
//! `max_response_body` bytes, however it produces them.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

use crate::worker::Body;

/// Wraps a response body; once more than `remaining` bytes have passed, it
/// ends with an error (hyper then cuts the connection, so the client sees a
/// truncated response, never a silently short one) and calls `exceeded`.
pub struct LimitedResponse {
    inner: Body,
    remaining: u64,
    exceeded: Option<Box<dyn FnOnce() + Send>>,
}

impl LimitedResponse {
    pub fn wrap(inner: Body, limit: u64, exceeded: impl FnOnce() + Send + 'static) -> Body {
        Self {
            inner,
            remaining: limit,
            exceeded: Some(Box::new(exceeded)),
        }
        .boxed_unsync()
    }
}

impl HttpBody for LimitedResponse {
    type Data = Bytes;
    type Error = ErrorCode;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
        if self.exceeded.is_none() {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            other => return other,
        };
        let len = frame.data_ref().map_or(0, |data| data.len() as u64);
        if len > self.remaining {
            if let Some(exceeded) = self.exceeded.take() {
                exceeded();
            }
            return Poll::Ready(Some(Err(ErrorCode::HttpResponseBodySize(None))));
        }
        self.remaining -= len;
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A body that yields the given chunks one frame each.
    struct Chunks(std::collections::VecDeque<&'static [u8]>);

    impl HttpBody for Chunks {
        type Data = Bytes;
        type Error = ErrorCode;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, ErrorCode>>> {
            Poll::Ready(
                self.0
                    .pop_front()
                    .map(|c| Ok(Frame::data(Bytes::from_static(c)))),
            )
        }
    }

    fn chunks(parts: &[&'static [u8]]) -> Body {
        Chunks(parts.iter().copied().collect()).boxed_unsync()
    }

    #[tokio::test]
    async fn a_body_within_the_limit_passes_whole() {
        let body = Full::new(Bytes::from_static(b"hello"))
            .map_err(|never| match never {})
            .boxed_unsync();
        let collected = LimitedResponse::wrap(body, 5, || panic!("not exceeded"))
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(&collected[..], b"hello");
    }

    #[tokio::test]
    async fn a_stream_past_the_limit_ends_in_an_error_and_reports_once() {
        let hit = Arc::new(AtomicBool::new(false));
        let flag = hit.clone();
        let body = LimitedResponse::wrap(chunks(&[b"abc", b"def", b"ghi"]), 7, move || {
            assert!(!flag.swap(true, Ordering::SeqCst), "reported twice");
        });
        let error = body.collect().await.expect_err("the body must fail");
        assert!(matches!(error, ErrorCode::HttpResponseBodySize(None)));
        assert!(hit.load(Ordering::SeqCst));
    }
}
