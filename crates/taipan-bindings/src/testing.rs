//! Calling a binding as the guest does, with no sandbox: the arguments line
//! and payload go through `Call::read` as a request body cut into small
//! frames, so each binding's tests exercise the wire format too (as Spin
//! tests its factors without a guest).

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::Value;

use crate::Binding;
use crate::protocol::{BindingError, Call, Reply};
use crate::store::{Database, Stores};

/// A database in a fresh temporary folder (kept alive by the returned guard).
pub fn database() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let stores = Stores::new(dir.path());
    let db = stores.database(&dir.path().join("t.sqlite")).unwrap();
    (dir, db)
}

/// `binding.call(op)` with `args` and `payload`; the reply as (JSON, no
/// bytes) or (its metadata, the payload).
pub async fn call(
    binding: Arc<dyn Binding>,
    op: &str,
    args: Value,
    payload: &[u8],
) -> Result<(Value, Bytes), BindingError> {
    let mut wire = args.to_string().into_bytes();
    wire.push(b'\n');
    wire.extend_from_slice(payload);
    // Frames of 5 bytes: the newline lands inside a frame, never on its edge.
    let frames: Vec<Result<http_body::Frame<Bytes>, _>> = wire
        .chunks(5)
        .map(|c| Ok(http_body::Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let body =
        http_body_util::StreamBody::new(futures::stream::iter(frames).boxed()).boxed_unsync();
    let request = http::Request::post("http://binding/op").body(body).unwrap();
    let call = Call::read(request).await?;
    match binding.call(op, call).await? {
        Reply::Json(value) => Ok((value, Bytes::new())),
        Reply::Payload { meta, body } => {
            let bytes = body
                .collect()
                .await
                .map_err(|e| BindingError::error(format!("{e:?}")))?
                .to_bytes();
            Ok((meta, bytes))
        }
    }
}
