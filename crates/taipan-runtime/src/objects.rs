//! Durable Objects as the runtime sees them: each object id owns a pinned
//! sandbox (`pinned.rs`) that keeps its memory between calls and runs one
//! call at a time. What an object *is* (storage, alarms, stubs) lives in
//! `taipan-bindings`.

use std::sync::Arc;

use bytes::Bytes;
use http::{Response, StatusCode};

use crate::respond::text_response;
use crate::worker::{Body, Home, MAX_LIVE_OBJECTS, Worker};

impl Worker {
    /// A call into the Durable Object `key` (`<class>/<id>`): `request` is
    /// addressed to `AUTHORITY_DURABLE`. Each object lives in a sandbox of
    /// its own, kept between calls (its in-memory state survives), and runs
    /// one call at a time.
    pub async fn durable_object<B>(
        self: &Arc<Self>,
        key: &str,
        request: http::Request<B>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let Some(slot) = self.objects.slot(key) else {
            tracing::warn!(worker = %self.name, "{key}: over {MAX_LIVE_OBJECTS} live Durable Objects, all busy; 503");
            return text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many live Durable Objects, retry shortly\n",
            );
        };
        let mut guard = slot.lock_owned().await;
        let mut sandbox = guard.take();
        if sandbox.is_none() {
            sandbox = self.fresh_sandbox().await.ok();
            if sandbox.is_none() {
                // The sandbox pool (shared by every worker) may be full of
                // idle objects: let one go, then try once more below.
                self.objects.evict_one();
            }
        }
        let sandbox = match self.or_fresh(sandbox).await {
            Ok(sandbox) => sandbox,
            Err(response) => return response,
        };
        let tag = format!("{} {}", request.method(), request.uri().path());
        self.run(sandbox, request, tag, Home::Object(guard)).await
    }

    /// Live Durable Objects (for tests and stats).
    pub fn live_objects(&self) -> usize {
        self.objects.len()
    }
}
