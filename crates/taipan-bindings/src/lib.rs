//! The bindings on a worker's `env`, and its outbound `fetch`.
//!
//! Every binding follows one template (as wasmtime's `wasi-keyvalue` does):
//! its config (`taipan_config::bindings`) → worker-lifetime state opened
//! from it (a [`Binding`], storage behind [`store::Database`]) → the
//! per-request view (`taipan_runtime::host::RequestView`, which counts calls)
//! → registration in [`WorkerBindings`], which the runtime calls through the
//! [`WorkerHost`] trait.

pub mod alarms;
pub mod assets;
pub mod cache;
pub mod content_type;
pub mod d1;
pub mod d1_cluster;
pub mod durable;
pub mod hyperdrive;
pub mod kv;
pub mod outbound;
pub mod placement;
pub mod protocol;
pub mod queues;
pub mod r2;
pub mod ratelimit;
pub mod service;
pub mod store;
pub mod tasks;
#[cfg(test)]
pub mod testing;
pub mod workflows;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use futures::future::BoxFuture;
use taipan_config::Bindings;
use taipan_runtime::WorkerHost;
use taipan_runtime::host::{AllowFuture, HostFuture};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::OutgoingRequestConfig;

pub use outbound::{FetchLimits, Outbound};
use protocol::{BindingError, Call, Reply};
pub use service::{NoServices, Services};
pub use store::Stores;

/// A binding's worker-lifetime state: answers calls by operation name.
pub trait Binding: Send + Sync + 'static {
    fn call(
        self: Arc<Self>,
        op: &str,
        call: Call,
    ) -> BoxFuture<'static, Result<Reply, BindingError>>;
}

enum Entry {
    Stored(Arc<dyn Binding>),
    Service(taipan_config::bindings::ServiceBinding),
    Assets(Arc<assets::Assets>),
    Durable(durable::Namespace),
}

/// How a worker's outbound requests are treated.
#[derive(Debug, Clone, Copy)]
pub struct FetchPolicy {
    /// Reach loopback/private/link-local addresses (dev, or a config that allows it).
    pub allow_private: bool,
    pub limits: FetchLimits,
}

/// Worker-lifetime: every binding of one worker, opened.
pub struct WorkerBindings {
    entries: HashMap<String, Entry>,
    /// Delivering the queues this worker consumes (stopped when dropped).
    _consumers: tasks::Tasks,
    /// Running the workflows this worker defines (stopped when dropped).
    _engines: tasks::Tasks,
    outbound: Arc<Outbound>,
    services: Arc<dyn Services>,
    assets: Option<Arc<assets::Assets>>,
    /// The TCP destinations policy: private addresses allowed (dev, or
    /// `outbound_private_networks`), else only public ones and the origins
    /// of the `hyperdrive` bindings.
    allow_private: bool,
    hyperdrive: Arc<hyperdrive::Hyperdrive>,
}

impl WorkerBindings {
    /// `assets_dir`: where `[assets]` files are (the project's folder in
    /// dev, the deployed copy in serve).
    pub fn open(
        worker: &str,
        config: &Bindings,
        stores: &Arc<Stores>,
        services: Arc<dyn Services>,
        policy: FetchPolicy,
        assets_dir: Option<&Path>,
        hyperdrive: Arc<hyperdrive::Hyperdrive>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut entries = HashMap::new();
        let assets = match (&config.assets, assets_dir) {
            (Some(assets), Some(dir)) => Some(assets::Assets::open(dir, assets.clone())?),
            _ => None,
        };
        if let (Some(name), Some(assets)) = (
            config.assets.as_ref().and_then(|a| a.binding.clone()),
            &assets,
        ) {
            entries.insert(name, Entry::Assets(assets.clone()));
        }
        for kv in &config.kv {
            // A cluster's nodes share each namespace: its rows in the
            // cluster database; a single node keeps it in a file.
            let store: Arc<dyn kv::KvStore> = match stores.cluster() {
                Some(cluster) => kv::postgres::PostgresKv::new(cluster.db.clone(), &kv.id),
                None => kv::sqlite::SqliteKv::open(stores.database(&stores.kv_path(&kv.id))?)?,
            };
            let binding: Arc<dyn Binding> = Arc::new(kv::KvNamespace::new(store));
            entries.insert(kv.binding.clone(), Entry::Stored(binding));
        }
        for d1 in &config.d1 {
            // In a cluster a database runs on the node that holds it.
            let binding: Arc<dyn Binding> = if stores.placement().is_some() {
                Arc::new(d1_cluster::ClusteredD1 {
                    id: d1.id.clone(),
                    stores: stores.clone(),
                })
            } else {
                let db = stores.database(&stores.d1_path(&d1.id))?;
                Arc::new(d1::D1Database::open(db))
            };
            entries.insert(d1.binding.clone(), Entry::Stored(binding));
        }
        for r2 in &config.r2 {
            // A cluster's nodes share each bucket: its index in the cluster
            // database, its objects in the object storage; a single node
            // keeps both in its state folder.
            let store: Arc<dyn r2::R2Store> = match stores.cluster() {
                Some(cluster) => r2::cluster::ClusterR2::new(
                    cluster.db.clone(),
                    cluster.objects.clone(),
                    &r2.bucket_name,
                ),
                None => r2::local::LocalR2::open(
                    stores.database(&stores.r2_index(&r2.bucket_name))?,
                    stores.r2_blobs(&r2.bucket_name),
                )?,
            };
            let binding: Arc<dyn Binding> = Arc::new(r2::R2Bucket::new(store));
            entries.insert(r2.binding.clone(), Entry::Stored(binding));
        }
        for object in &config.durable_objects {
            let namespace = durable::Namespace {
                class: object.class_name.clone(),
                script: object
                    .script_name
                    .clone()
                    .unwrap_or_else(|| worker.to_string()),
                services: services.clone(),
                placement: stores.placement().cloned(),
            };
            entries.insert(object.binding.clone(), Entry::Durable(namespace));
        }
        // The storage of this worker's own objects (any class it defines).
        let storage: Arc<dyn Binding> = Arc::new(durable::ObjectStorage {
            stores: stores.clone(),
            script: worker.to_string(),
            alarms: alarms::Alarms::open(stores, worker, services.clone()),
        });
        entries.insert(durable::STORAGE_BINDING.to_string(), Entry::Stored(storage));
        // The Cache API: every worker has it, stored per worker.
        let caches: Arc<dyn Binding> = Arc::new(cache::Caches::new(
            stores,
            worker,
            cache::CacheLimits::default(),
        ));
        entries.insert(
            taipan_guest::contract::CACHE_BINDING.to_string(),
            Entry::Stored(caches),
        );
        for service in &config.services {
            entries.insert(service.binding.clone(), Entry::Service(service.clone()));
        }
        let has_queues = !config.queues.producers.is_empty() || !config.queues.consumers.is_empty();
        let queues = if has_queues {
            Some(stores.queues()?)
        } else {
            None
        };
        for producer in &config.queues.producers {
            let binding: Arc<dyn Binding> = Arc::new(queues::producer::QueueProducer {
                queues: queues.clone().expect("opened above"),
                queue: producer.queue.clone(),
                delivery_delay: producer.delivery_delay,
            });
            entries.insert(producer.binding.clone(), Entry::Stored(binding));
        }
        let consumers = match &queues {
            Some(queues) => {
                let deliver = Arc::new(queues::consumer::ToWorker {
                    services: services.clone(),
                    worker: worker.to_string(),
                });
                queues::consumer::start(queues, &config.queues.consumers, deliver)
            }
            None => tasks::Tasks::default(),
        };
        let engines = open_workflows(worker, config, stores, &services, &mut entries)?;
        for limit in &config.ratelimits {
            let binding: Arc<dyn Binding> = Arc::new(ratelimit::RateLimiter {
                counters: stores.rate_limit_counters(&limit.namespace_id),
                limit: limit.limit,
                period: limit.period,
            });
            entries.insert(limit.binding.clone(), Entry::Stored(binding));
        }
        let allow_private = policy.allow_private || config.allow_private_fetch;
        Ok(Arc::new(Self {
            entries,
            _consumers: consumers,
            _engines: engines,
            outbound: Outbound::new(allow_private, policy.limits)?,
            services,
            assets,
            allow_private,
            hyperdrive,
        }))
    }
}

/// The `[[workflows]]` bindings, the internal binding runs store their
/// steps through, and the engines of the workflows this worker defines.
fn open_workflows(
    worker: &str,
    config: &Bindings,
    stores: &Arc<Stores>,
    services: &Arc<dyn Services>,
    entries: &mut HashMap<String, Entry>,
) -> anyhow::Result<tasks::Tasks> {
    if config.workflows.is_empty() {
        return Ok(tasks::Tasks::default());
    }
    let store = stores.workflows()?;
    let mut defined = Vec::new();
    for w in &config.workflows {
        let wake = stores.workflow_waker(&w.name);
        let binding: Arc<dyn Binding> = Arc::new(workflows::binding::WorkflowBinding {
            store: store.clone(),
            workflow: w.name.clone(),
            wake: wake.clone(),
        });
        entries.insert(w.binding.clone(), Entry::Stored(binding));
        if w.script_name.as_deref().is_none_or(|s| s == worker) {
            defined.push(workflows::engine::Defined {
                workflow: w.name.clone(),
                class: w.class_name.clone(),
                wake,
            });
        }
    }
    let steps: Arc<dyn Binding> = Arc::new(workflows::binding::WorkflowSteps {
        store: store.clone(),
        workflows: defined.iter().map(|d| d.workflow.clone()).collect(),
    });
    entries.insert(
        taipan_guest::contract::WORKFLOW_BINDING.to_string(),
        Entry::Stored(steps),
    );
    let runner = Arc::new(workflows::engine::ToWorker {
        services: services.clone(),
        worker: worker.to_string(),
    });
    Ok(workflows::engine::start(&store, defined, runner))
}

/// A deployed version, as the `version_metadata` binding shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionMetadata {
    pub id: String,
    pub tag: String,
    /// RFC 3339, UTC.
    pub timestamp: String,
}

impl VersionMetadata {
    /// A version of `taipan dev`: a new id at each (re)load.
    pub fn dev() -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            tag: String::new(),
            timestamp: jiff::Timestamp::now().to_string(),
        }
    }
}

/// `{name: kind}` for the guest, which builds `env` from it; a binding
/// whose value the guest holds itself (`version_metadata`, `hyperdrive`) is
/// `{name: {"kind", …its fields}}`.
pub fn kinds_json(
    config: &Bindings,
    version: &VersionMetadata,
    hyperdrive: &hyperdrive::Hyperdrive,
) -> String {
    let kinds: serde_json::Map<String, serde_json::Value> = config
        .kinds()
        .into_iter()
        .map(|(name, kind)| {
            let value = match kind {
                "version_metadata" => serde_json::json!({
                    "kind": kind,
                    "id": version.id,
                    "tag": version.tag,
                    "timestamp": version.timestamp,
                }),
                "hyperdrive" => hyperdrive.describe(name),
                kind => kind.into(),
            };
            (name.to_string(), value)
        })
        .collect();
    serde_json::Value::Object(kinds).to_string()
}

impl WorkerHost for WorkerBindings {
    fn binding(
        &self,
        name: &str,
        op: &str,
        request: http::Request<HyperOutgoingBody>,
    ) -> HostFuture {
        match self.entries.get(name) {
            Some(Entry::Service(service)) => service::call(&self.services, service, op, request),
            Some(Entry::Durable(namespace)) => namespace.call(op, request),
            Some(Entry::Assets(assets)) => match service::addressed(request) {
                Some(request) => assets.fetch(&request.into_parts().0),
                None => {
                    let response =
                        BindingError::route("the assets request has no URL").into_response();
                    Box::pin(async move { Ok(response) })
                }
            },
            Some(Entry::Stored(binding)) => {
                let binding = binding.clone();
                let op = op.to_string();
                Box::pin(async move {
                    let reply = match Call::read(request).await {
                        Ok(call) => binding.call(&op, call).await,
                        Err(e) => Err(e),
                    };
                    Ok(match reply {
                        Ok(reply) => reply.into_response(),
                        Err(e) => e.into_response(),
                    })
                })
            }
            None => {
                let message = format!("the worker has no binding named {name:?}");
                Box::pin(async move { Ok(BindingError::type_error(message).into_response()) })
            }
        }
    }

    fn fetch(
        &self,
        request: http::Request<HyperOutgoingBody>,
        config: OutgoingRequestConfig,
    ) -> HostFuture {
        self.outbound.fetch(request, config)
    }

    fn before_worker(&self, request: &http::request::Parts) -> Option<HostFuture> {
        self.assets.as_ref()?.before_worker(request)
    }

    /// The same rule as `fetch`: serve refuses loopback, private and
    /// link-local destinations (and port 25, as Workers does) unless the
    /// config allows private networks; a hyperdrive binding's origin is
    /// allowed, being the destination the operator named.
    fn tcp_connect_allowed(&self, addr: SocketAddr) -> AllowFuture {
        if self.allow_private {
            return Box::pin(async { true });
        }
        if outbound::is_public(addr.ip()) {
            let allowed = addr.port() != 25;
            return Box::pin(async move { allowed });
        }
        if self.hyperdrive.is_empty() {
            return Box::pin(async { false });
        }
        let hyperdrive = self.hyperdrive.clone();
        let check = tokio::spawn(async move { hyperdrive.is_origin(addr).await });
        Box::pin(async move { check.await.unwrap_or(false) })
    }
}
