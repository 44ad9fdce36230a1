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

/// `binding.call(op)` with `args` and `payload`; the reply, as it goes on
/// the wire, read back: a JSON reply as (its JSON, no bytes), a payload
/// reply as (its meta line, the payload) by `split_payload`.
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
    let reply = binding.call(op, call).await?;
    let is_payload = matches!(reply, Reply::Payload { .. });
    let bytes = reply
        .into_response()
        .into_body()
        .collect()
        .await
        .map_err(|e| BindingError::error(format!("{e:?}")))?
        .to_bytes();
    Ok(if is_payload {
        split_payload(bytes)
    } else {
        let value = serde_json::from_slice(&bytes).expect("a JSON reply");
        (value, Bytes::new())
    })
}

/// A payload reply's body, as the guest reads it: the meta line (JSON,
/// `null` for a miss) and the payload after its newline.
pub fn split_payload(body: Bytes) -> (Value, Bytes) {
    let end = body
        .iter()
        .position(|&b| b == b'\n')
        .expect("a payload reply starts with a line");
    let meta = serde_json::from_slice(&body[..end]).expect("the meta line is JSON");
    (meta, body.slice(end + 1..))
}

/// A worker's bindings opened the way a cluster node opens them, on a
/// fresh database and a folder object store (kept alive by the fields).
pub struct ClusteredHost {
    pub cluster: Arc<taipan_cluster::Cluster>,
    pub stores: Arc<crate::Stores>,
    pub host: Arc<crate::WorkerBindings>,
    _database: taipan_cluster::testing::TestDatabase,
    _dir: tempfile::TempDir,
}

pub async fn clustered_host(config: &taipan_config::Bindings) -> ClusteredHost {
    let database = taipan_cluster::testing::TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let objects = url::Url::from_directory_path(dir.path().join("objects")).unwrap();
    let cluster = taipan_cluster::Cluster::connect(&taipan_cluster::ClusterOptions {
        database_url: database.url().to_string(),
        objects_url: objects.to_string(),
        secrets_key: [7; 32],
    })
    .await
    .unwrap();
    let stores = crate::Stores::clustered(dir.path().join("state"), cluster.clone());
    let host = crate::WorkerBindings::open(
        "w",
        config,
        &stores,
        Arc::new(crate::NoServices),
        crate::FetchPolicy {
            allow_private: false,
            limits: crate::FetchLimits::default(),
        },
        None,
        Arc::new(
            crate::hyperdrive::Hyperdrive::resolve(config, false, &Default::default(), |_| None)
                .unwrap(),
        ),
    )
    .unwrap();
    ClusteredHost {
        cluster,
        stores,
        host,
        _database: database,
        _dir: dir,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// KV and R2 signal a miss alike: meta `null` and no payload.
    #[tokio::test]
    async fn a_kv_miss_and_an_r2_miss_both_answer_meta_null() {
        let (dir, db) = database();
        let kv: Arc<dyn Binding> = Arc::new(crate::kv::KvNamespace::open(db.clone()).unwrap());
        let r2: Arc<dyn Binding> =
            Arc::new(crate::r2::R2Bucket::open(db, dir.path().join("blobs")).unwrap());
        for binding in [kv, r2] {
            let (meta, payload) = call(binding, "get", json!({"key": "nope"}), b"")
                .await
                .unwrap();
            assert_eq!((meta, payload), (Value::Null, Bytes::new()));
        }
    }
}
