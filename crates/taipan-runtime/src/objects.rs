//! Durable Objects as the runtime sees them: each object id owns a pinned
//! sandbox (`pinned.rs`) that keeps its memory between calls and runs one
//! call at a time. What an object *is* (storage, alarms, stubs) lives in
//! `taipan-bindings`.

use std::sync::Arc;

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::host::Place;
use crate::respond::text_response;
use crate::websocket::{Owner, sockets};
use crate::worker::{Body, Home, MAX_LIVE_OBJECTS, Worker};
use taipan_guest::contract::{AUTHORITY_DURABLE, AUTHORITY_WEBSOCKET, OP_WEBSOCKET};

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
        if sandbox.is_none() && self.linked().await.is_err() {
            // Logged by `linked`. Not a full pool: evicting another object
            // would lose its state for nothing. The empty slot goes.
            drop(guard);
            self.objects.remove_if_idle(key);
            return text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "the worker could not be started, retry shortly\n",
            );
        }
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
        let home = Home::Slot(Place::Object(key.to_string()), guard);
        self.run(sandbox, request, tag, home).await
    }

    /// One event (the JSON `contract::AUTHORITY_WEBSOCKET` describes) of a
    /// WebSocket `owner` accepted, run in the owner's slot: the Durable
    /// Object's, or the sandbox that accepted it.
    pub async fn socket_event(self: &Arc<Self>, owner: &Owner, event: Bytes) -> Response<Body> {
        if owner.object {
            let uri = format!("http://{AUTHORITY_DURABLE}/{}/{OP_WEBSOCKET}", owner.key);
            let request = http::Request::post(uri)
                .header(http::header::HOST, AUTHORITY_DURABLE)
                .body(Full::new(event));
            return match request {
                Ok(request) => self.durable_object(&owner.key, request).await,
                Err(_) => text_response(StatusCode::BAD_REQUEST, "bad object key\n"),
            };
        }
        let Some(slot) = self.socket_slots.slot(&owner.key) else {
            return text_response(StatusCode::SERVICE_UNAVAILABLE, "no slot\n");
        };
        let mut guard = slot.lock_owned().await;
        let sandbox = match self.or_fresh(guard.take()).await {
            Ok(sandbox) => sandbox,
            Err(response) => return response,
        };
        let request = http::Request::post(format!("http://{AUTHORITY_WEBSOCKET}/"))
            .header(http::header::HOST, AUTHORITY_WEBSOCKET)
            .body(Full::new(event));
        let Ok(request) = request else {
            *guard = Some(sandbox);
            return text_response(StatusCode::BAD_REQUEST, "bad event\n");
        };
        let home = Home::Slot(Place::Socket(owner.key.clone()), guard);
        self.run(sandbox, request, "websocket event".into(), home)
            .await
    }

    /// Start (once) the task that lets Durable Objects hibernate: an object
    /// whose WebSockets are all hibernatable and that had no call for
    /// `websocket_hibernate_after` gives its sandbox up.
    pub(crate) fn start_hibernation(self: &Arc<Self>) {
        if self
            .hibernation
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let worker = Arc::downgrade(self);
        let after = self.limits().websocket_hibernate_after;
        let tick = (after / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(this) = worker.upgrade() else { return };
                let gone = this.objects.evict_older_than(after, |key| {
                    let (all, hibernatable) = sockets().count(&worker, key);
                    all > 0 && all == hibernatable
                });
                for key in gone {
                    tracing::debug!(worker = %this.name, "{key}: hibernated");
                }
            }
        });
    }

    /// Forget the in-memory instance of object `key` (`Class/id`): in a
    /// cluster, when this node takes the object's lease afresh, so the
    /// object is rebuilt from its storage rather than from what this node
    /// remembered before another node owned it. A call running now keeps
    /// its sandbox; the next call gets a new one.
    pub fn forget_object(&self, key: &str) {
        self.objects.remove(key);
    }

    /// Live Durable Objects (for tests and stats).
    pub fn live_objects(&self) -> usize {
        self.objects.len()
    }
}
