//! Cluster mode: which node runs a single-owner thing (a Durable Object, a
//! D1 database), and getting a call to it. A node takes the thing's lease
//! (`taipan_cluster::leases`) when it is free, and renews what it holds
//! every `RENEW_EVERY`; a call that reaches another node is forwarded over
//! the owner's internal listener, authenticated with the nodes' shared
//! secret. Storage writes are fenced with the lease's token, so a node
//! that lost a lease cannot write over its successor.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use taipan_cluster::Cluster;
use taipan_cluster::leases::{self, Holder, Lease};
use taipan_runtime::host::HostResponse;
use taipan_runtime::websocket::remote::Dial;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::protocol::BindingError;

/// The header a forwarded call carries the nodes' shared secret in: a
/// node-to-node header, not part of the host–guest contract (the owner
/// removes it before the object sees the request).
pub const HEADER_NODE_SECRET: &str = "taipan-node-secret";
/// The header an owner's answer carries the id of a WebSocket its Durable
/// Object accepted in (node-to-node; the caller turns it back into a 101).
pub const HEADER_NODE_WEBSOCKET: &str = "taipan-node-websocket";
/// How long before its lease's expiry a node stops using what it holds.
pub const LEASE_MARGIN: Duration = Duration::from_secs(3);
/// How long a forwarded call may take to get its response head.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(60);

/// What is told of a lease this node lost.
type LostHook = Box<dyn Fn(&str) + Send + Sync>;

/// Where a call to a single-owner thing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// On this node. `fresh`: just taken, so its storage must be restored
    /// from the cluster before use.
    Here { lease: Lease, fresh: bool },
    /// On the node at this internal URL.
    There(String),
}

/// Process lifetime: the leases this node holds, and the client that
/// forwards calls to other nodes.
pub struct Placement {
    cluster: Arc<Cluster>,
    node: String,
    secret: String,
    /// Held leases, with when each was last taken or renewed.
    held: Mutex<HashMap<String, (Lease, Instant)>>,
    client: Client<HttpConnector, HyperOutgoingBody>,
    /// Calls sent to other nodes so far.
    forwarded: std::sync::atomic::AtomicU64,
    /// Told the name of each lease this node lost (storage is dropped then).
    on_lost: Mutex<Vec<LostHook>>,
}

impl Placement {
    /// `node` is the node's id; leases are held in the name of this
    /// process (`<node>#<random>`), so a second process with the same id
    /// (a copied data dir) can never share a lease's token with this one.
    pub async fn new(cluster: Arc<Cluster>, node: &str) -> anyhow::Result<Arc<Self>> {
        let secret = taipan_cluster::nodes::shared_secret(&cluster.db).await?;
        let node = format!("{node}#{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        Ok(Arc::new(Self {
            cluster,
            node,
            secret,
            held: Mutex::default(),
            client,
            forwarded: Default::default(),
            on_lost: Mutex::default(),
        }))
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Whether `secret` is the nodes' shared secret (constant time).
    pub fn authentic(&self, secret: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        secret.ct_eq(self.secret.as_bytes()).into()
    }

    /// The lease of `name` if this node holds it: renewed recently enough
    /// that it cannot have expired yet (by this node's clock, with a margin;
    /// an owner cut off from the database stops using what it held).
    pub fn held(&self, name: &str) -> Option<Lease> {
        self.lock()
            .get(name)
            .filter(|(_, renewed)| renewed.elapsed() < leases::LEASE_TTL - LEASE_MARGIN)
            .map(|(lease, _)| lease.clone())
    }

    /// How many calls this node has forwarded to others.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many leases this node holds.
    pub fn held_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Lease, Instant)>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Call `f` with the name of every lease this node loses.
    pub fn on_lost(&self, f: impl Fn(&str) + Send + Sync + 'static) {
        self.on_lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Where `name` runs: here (taking its lease if it is free) or on its owner.
    pub async fn place(&self, name: &str) -> Result<Place, BindingError> {
        if let Some(lease) = self.held(name) {
            return Ok(Place::Here {
                lease,
                fresh: false,
            });
        }
        let holder = leases::acquire(&self.cluster.db, name, &self.node)
            .await
            .map_err(|e| BindingError::error(format!("the cluster database failed: {e:#}")))?;
        match holder {
            Holder::Me(lease) => {
                // Fresh only for the call that took it under this token: two
                // first calls at once must not both rebuild the object.
                let mut held = self.lock();
                let fresh = held.get(name).is_none_or(|(l, _)| l.token != lease.token);
                held.insert(name.to_string(), (lease.clone(), Instant::now()));
                Ok(Place::Here { lease, fresh })
            }
            Holder::Node {
                internal_url: Some(url),
                ..
            } => Ok(Place::There(url)),
            Holder::Node { id, .. } => Err(BindingError::error(format!(
                "{name} runs on node {id}, which has no --internal-listen address to reach it at"
            ))),
        }
    }

    /// Forget a lease (its storage failed): the next call takes it afresh.
    pub fn drop_lease(&self, name: &str) {
        if self.lock().remove(name).is_some() {
            self.notify_lost(name);
        }
    }

    fn notify_lost(&self, name: &str) {
        for f in self
            .on_lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            f(name);
        }
    }

    /// Send a call to the node at `base` (its internal URL), at `path`.
    pub async fn forward(
        &self,
        base: &str,
        path: &str,
        mut parts: http::request::Parts,
        body: HyperOutgoingBody,
    ) -> Result<HostResponse, BindingError> {
        let uri = format!("{}{path}", base.trim_end_matches('/'));
        parts.uri = uri
            .parse()
            .map_err(|_| BindingError::error(format!("{uri:?} is not a node's URL")))?;
        parts.headers.remove(http::header::HOST);
        parts.headers.insert(
            HEADER_NODE_SECRET,
            http::HeaderValue::from_str(&self.secret).expect("hex"),
        );
        let request = http::Request::from_parts(parts, body);
        self.forwarded
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = tokio::time::timeout(FORWARD_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| BindingError::error(format!("the owner node at {base} did not answer in time")))?
            .map_err(|e| {
                BindingError::error(format!(
                    "the owner node at {base} is unreachable ({e}); it moves to another node once its lease expires: retry"
                ))
            })?;
        match response.status() {
            http::StatusCode::MISDIRECTED_REQUEST => {
                return Err(BindingError::error(format!(
                    "the owner node at {base} gave the object up while the call was on its way: retry"
                )));
            }
            http::StatusCode::UNAUTHORIZED => {
                return Err(BindingError::error(format!(
                    "the node at {base} refused this node's secret (another cluster?)"
                )));
            }
            _ => {}
        }
        Ok(response.map(|body| {
            body.map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
                .boxed_unsync()
        }))
    }

    /// How to reach WebSocket `id`, accepted by a Durable Object of worker
    /// `script` on the node at `base`: a WebSocket handshake with its
    /// internal listener (`GET /ws/<script>/<id>`), whose connection then
    /// carries the client's frames as they are.
    pub fn dial_websocket(self: &Arc<Self>, base: &str, script: &str, id: &str) -> Dial {
        let this = self.clone();
        let uri = format!("{}/ws/{script}/{id}", base.trim_end_matches('/'));
        Box::new(move || {
            Box::pin(async move {
                let key: [u8; 16] = *uuid::Uuid::new_v4().as_bytes();
                let key = base64::engine::general_purpose::STANDARD.encode(key);
                let request = http::Request::get(&uri)
                    .header(http::header::CONNECTION, "upgrade")
                    .header(http::header::UPGRADE, "websocket")
                    .header(http::header::SEC_WEBSOCKET_VERSION, "13")
                    .header(http::header::SEC_WEBSOCKET_KEY, key)
                    .header(HEADER_NODE_SECRET, &this.secret)
                    .body(
                        http_body_util::Empty::new()
                            .map_err(|never| match never {})
                            .boxed_unsync(),
                    )
                    .map_err(|e| format!("{uri:?}: {e}"))?;
                let mut response =
                    tokio::time::timeout(FORWARD_TIMEOUT, this.client.request(request))
                        .await
                        .map_err(|_| format!("the node at {uri} did not answer in time"))?
                        .map_err(|e| format!("the node at {uri} is unreachable: {e}"))?;
                if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                    return Err(format!(
                        "the node at {uri} answered {} instead of taking the WebSocket",
                        response.status()
                    ));
                }
                hyper::upgrade::on(&mut response)
                    .await
                    .map_err(|e| format!("the WebSocket upgrade with {uri} failed: {e}"))
            })
        })
    }

    /// Renew every held lease each `RENEW_EVERY` until the task is aborted;
    /// a lease that could not be renewed is lost.
    pub fn start_renewing(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let placement = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(leases::RENEW_EVERY).await;
                let Some(placement) = placement.upgrade() else {
                    return;
                };
                let held: Vec<Lease> = placement.lock().values().map(|(l, _)| l.clone()).collect();
                let asked = Instant::now();
                match leases::renew(&placement.cluster.db, &placement.node, &held).await {
                    Ok(lost) => {
                        let mut renewed = placement.lock();
                        for lease in &held {
                            if let Some(entry) = renewed.get_mut(&lease.name)
                                && entry.0.token == lease.token
                            {
                                entry.1 = asked;
                            }
                        }
                        drop(renewed);
                        for name in lost {
                            tracing::warn!("lost the lease of {name}");
                            placement.drop_lease(&name);
                        }
                    }
                    // Leases are only good until they expire: past that,
                    // without renewal, they are not ours any more.
                    Err(e) => tracing::warn!("renewing leases failed: {e:#}"),
                }
            }
        })
    }

    /// Give every lease up (a node stopping): others take them at once.
    pub async fn release_all(&self) {
        let names: Vec<String> = self.lock().drain().map(|(name, _)| name).collect();
        for name in &names {
            self.notify_lost(name);
        }
        if let Err(e) = leases::release_all(&self.cluster.db, &self.node).await {
            tracing::warn!("releasing leases failed: {e:#}");
        }
    }
}
