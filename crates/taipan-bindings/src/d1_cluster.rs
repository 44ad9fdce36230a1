//! D1 in cluster mode: a database runs on the node holding its lease
//! (`placement`), in a SQLite file whose commits reach the cluster before a
//! query returns (`Stores::replicated`); a query reaching another node is
//! forwarded there. The queries and their results are `d1`'s, unchanged.

use std::sync::Arc;

use futures::future::BoxFuture;
use taipan_runtime::host::full_body;

use crate::Binding;
use crate::d1::D1Database;
use crate::placement::Place;
use crate::protocol::{BindingError, Call, Reply};
use crate::store::Stores;

/// The lease name of a D1 database (by its storage id).
pub fn lease_name(id: &str) -> String {
    format!("d1:{id}")
}

/// Worker-lifetime: one `d1_databases` binding of a cluster node.
pub struct ClusteredD1 {
    pub id: String,
    pub stores: Arc<Stores>,
}

impl ClusteredD1 {
    /// Run the call here: this node holds the database's lease.
    pub async fn local(&self, op: &str, call: Call) -> Result<Reply, BindingError> {
        let db = self
            .stores
            .replicated(&lease_name(&self.id), self.stores.d1_path(&self.id), "")
            .await?;
        Arc::new(D1Database::open(db)).call(op, call).await
    }
}

impl Binding for ClusteredD1 {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>> {
        let op = op.to_string();
        Box::pin(async move {
            let placement = self
                .stores
                .placement()
                .ok_or_else(|| BindingError::error("not a node of a cluster"))?
                .clone();
            match placement.place(&lease_name(&self.id)).await? {
                Place::Here { .. } => self.local(&op, call).await,
                Place::There(url) => {
                    // D1's calls carry everything in their arguments line.
                    let line = format!("{}\n", call.args);
                    let (mut parts, ()) = http::Request::new(()).into_parts();
                    parts.method = http::Method::POST;
                    let path = format!("/d1/{}/{op}", percent(&self.id));
                    let response = placement
                        .forward(&url, &path, parts, full_body(line))
                        .await?;
                    Ok(Reply::Forwarded(response))
                }
            }
        })
    }
}

/// A storage id as one path segment.
pub fn percent(id: &str) -> String {
    percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC).to_string()
}
