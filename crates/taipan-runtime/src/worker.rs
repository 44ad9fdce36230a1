//! A deployed worker: its compiled component and a pool of warm sandboxes.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use taipan_guest::Artifact;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::call::{Detached, WAIT_GRACE, WaitedPastLimit};
use crate::engine::{Code, Runtime};
use crate::host::Place;
use crate::limits::Limits;
use crate::pinned::{self, Pinned};
use crate::pool::{Permit, Pool, PoolLimits, Refused, Taken};
pub use crate::respond::text_response;
use crate::sandbox::{BoundRequest, Sandbox, SandboxState, SandboxTemplate};
pub use crate::settings::WorkerSettings;
use taipan_guest::contract::{
    self, AUTHORITY_QUEUE, AUTHORITY_SCHEDULED, AUTHORITY_WARMUP, AUTHORITY_WORKFLOW,
    INTERNAL_HOST_PREFIX,
};

/// Worker-lifetime state: one per deployed build.
pub struct Worker {
    pub name: Arc<str>,
    pub artifact_id: String,
    /// The linked component its sandboxes start from: its base's code and
    /// its snapshot, the memory image mapped from a file. `None` once the
    /// worker is dormant (`start_idle_sweep` drops it, and with it the
    /// image and the slots its sandboxes used); the next sandbox links it
    /// again (`linked`).
    pre: Arc<std::sync::Mutex<Option<ProxyPre<SandboxState>>>>,
    /// What linking it again needs: the compiled code, held here (not
    /// looked up in the runtime's bases, which may be busy compiling).
    code: Code,
    /// Held while linking: one at a time. Holds the last failure: requests
    /// within `RELINK_BACKOFF` of it get it too rather than link again.
    linking: tokio::sync::Mutex<Option<(std::time::Instant, String)>>,
    pub(crate) template: SandboxTemplate,
    /// Warm and standby sandboxes, permits and the wait queue.
    pool: Pool<Sandbox>,
    /// Live Durable Objects by `<class>/<id>`, each in a sandbox of its own.
    pub(crate) objects: Pinned<Sandbox>,
    /// Sandboxes holding WebSockets accepted outside a Durable Object, by
    /// `ws:<id>`: never evicted (their listeners live there); bounded by
    /// `max_websockets`.
    pub(crate) socket_slots: Pinned<Sandbox>,
    /// The hibernation sweeper runs (started with the first hibernatable
    /// WebSocket).
    pub(crate) hibernation: AtomicBool,
}

pub type Body = HyperOutgoingBody;

/// How long a failure to link a dormant worker again is answered without
/// trying again (every waiting request would otherwise try in turn).
const RELINK_BACKOFF: Duration = Duration::from_secs(1);

/// Make the component from `code` (its base's code with its snapshot) and
/// link it with the host's interfaces. Blocking.
fn link(code: &Code) -> Result<ProxyPre<SandboxState>> {
    let started = std::time::Instant::now();
    let component = code.component()?;
    let made = started.elapsed();
    let mut linker = Linker::<SandboxState>::new(code.engine());
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    crate::tcp::count_bytes(&mut linker)?;
    crate::whole_response::add_to_linker(&mut linker)?;
    let pre = linker
        .instantiate_pre(&component)
        .map_err(anyhow::Error::from)
        .context("linking the worker")?;
    let pre = ProxyPre::new(pre)
        .map_err(anyhow::Error::from)
        .context("the component does not export wasi:http/incoming-handler")?;
    tracing::debug!(
        "component made in {} µs, linked in {} µs",
        made.as_micros(),
        (started.elapsed() - made).as_micros()
    );
    Ok(pre)
}

/// Where a sandbox goes after a request.
pub(crate) enum Home {
    /// The worker's pool (with the uses it has served); the permit is
    /// released.
    Pool(Permit, u64),
    /// A pinned sandbox (a Durable Object's, or a WebSocket's): back into
    /// its slot, which stays locked (calls to it wait) until the call is over.
    Slot(Place, tokio::sync::OwnedMutexGuard<Option<Sandbox>>),
}

/// Durable Objects a worker keeps live at once, each in its own sandbox;
/// past this (or when the sandbox pool is full), an idle one is evicted: its
/// storage stays, its memory goes, as on Workers.
pub const MAX_LIVE_OBJECTS: usize = pinned::MAX_LIVE;

impl Worker {
    /// Compile (or load the compiled) component and pre-link it. Blocking.
    pub fn load(
        runtime: &Runtime,
        artifact: &Artifact,
        settings: WorkerSettings,
    ) -> Result<Arc<Self>> {
        let code = runtime.artifact_code(artifact)?;
        let pre = if settings.start_dormant {
            None
        } else {
            Some(link(&code)?)
        };
        let mut env = vec![
            (contract::ENV_VARS.to_string(), settings.vars_json.clone()),
            (
                contract::ENV_BINDINGS.to_string(),
                settings.bindings_json.clone(),
            ),
        ];
        if settings.dev {
            env.push((contract::ENV_DEV.into(), contract::ENV_DEV_ON.into()));
        }
        let name: Arc<str> = settings.name.as_str().into();
        let start_dormant = settings.start_dormant;
        let worker = Arc::new_cyclic(|me| Self {
            name: name.clone(),
            artifact_id: artifact.id.clone(),
            pre: Arc::new(std::sync::Mutex::new(pre)),
            code,
            linking: tokio::sync::Mutex::new(None),
            template: SandboxTemplate {
                name,
                mounts: artifact.mounts(&runtime.python),
                env,
                limits: settings.limits.clone(),
                log: settings.log.clone(),
                host: settings.host.clone(),
                host_limits: settings.host_limits,
                worker: me.clone(),
            },
            pool: Pool::new(PoolLimits {
                max_active: settings.limits.max_sandboxes,
                max_queue: settings.limits.max_queue,
                reuse: settings.reuse_sandboxes,
                idle_timeout: settings.limits.idle_timeout,
                max_uses: settings.limits.max_requests_per_sandbox,
                standby: settings.standby_sandboxes,
            }),
            objects: Pinned::default(),
            socket_slots: Pinned::with_max(usize::MAX),
            hibernation: AtomicBool::new(false),
        });
        if start_dormant {
            worker.pool.set_dormant();
        }
        Ok(worker)
    }

    pub fn limits(&self) -> &Limits {
        &self.template.limits
    }

    /// A sandbox straight from the snapshot, unused.
    pub async fn fresh_sandbox(&self) -> wasmtime::Result<Sandbox> {
        let pre = self
            .linked()
            .await
            .map_err(|e| wasmtime::Error::msg(format!("{e:#}")))?;
        Sandbox::new(&pre, &self.template).await
    }

    /// The linked component, linked again if the worker was dormant.
    pub(crate) async fn linked(&self) -> Result<ProxyPre<SandboxState>> {
        if let Some(pre) = self.current_pre() {
            return Ok(pre);
        }
        let mut last_failure = self.linking.lock().await;
        if let Some(pre) = self.current_pre() {
            return Ok(pre);
        }
        if let Some((at, error)) = &*last_failure
            && at.elapsed() < RELINK_BACKOFF
        {
            anyhow::bail!("{error}");
        }
        // Expanding the memory image reads and writes ~10 MiB: not on a
        // request thread. The task stores what it links itself, so a
        // request that gives up waiting does not throw the work away.
        let (code, slot) = (self.code.clone(), self.pre.clone());
        let linked = tokio::task::spawn_blocking(move || {
            let pre = link(&code)?;
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(pre.clone());
            Ok(pre)
        })
        .await
        .map_err(anyhow::Error::from)
        .and_then(|linked| linked);
        match linked {
            Ok(pre) => {
                *last_failure = None;
                tracing::debug!(worker = %self.name, "linked again after being dormant");
                Ok(pre)
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::error!(worker = %self.name, "linking the worker again failed: {error}");
                *last_failure = Some((std::time::Instant::now(), error));
                Err(e)
            }
        }
    }

    fn current_pre(&self) -> Option<ProxyPre<SandboxState>> {
        self.pre.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Start filling the standby and sweeping idle sandboxes (call once,
    /// from inside the tokio runtime).
    pub fn start_standby(self: &Arc<Self>) {
        self.refill_standby();
        self.start_idle_sweep();
    }

    /// Every so often, drop warm sandboxes unused for `idle_timeout`; once
    /// the worker has had no request for that long, its standby sandboxes
    /// too, and its linked component: the memory image it mapped and the
    /// memory its pooled slots kept go with it (wasmtime purges a dropped
    /// module's slots). An idle worker holds no sandbox and no image; its
    /// next request links the component again (`linked`, ~10 ms), starts a
    /// fresh sandbox and refills the standby.
    fn start_idle_sweep(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let worker = Arc::downgrade(self);
        let tick = (self.limits().idle_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(15));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(this) = worker.upgrade() else { return };
                let swept = this.pool.sweep();
                // Dormant: drop the component (once; the next sandbox links
                // it again). A sandbox taken meanwhile holds its own
                // reference: the component stays until it is dropped too.
                // Durable Objects and WebSockets keep their sandboxes (and
                // so the component) past dormancy: dropping it then would
                // only make the next sandbox link a second copy.
                let pre =
                    if swept.dormant && !this.objects.holds_any() && !this.socket_slots.holds_any()
                    {
                        this.pre.lock().unwrap_or_else(|e| e.into_inner()).take()
                    } else {
                        None
                    };
                let release = pre.is_some();
                if swept.items.is_empty() && !release {
                    continue;
                }
                // Dropping sandboxes resets their slots (copying pages back)
                // and dropping the component remaps them: not on a request
                // thread.
                let name = this.name.clone();
                drop(this);
                let _ = tokio::task::spawn_blocking(move || {
                    let dropped = swept.items.len();
                    drop(swept.items);
                    if release {
                        drop(pre);
                        tracing::debug!(worker = %name, "idle: released {dropped} sandboxes, the component and their memory");
                    }
                })
                .await;
            }
        });
    }

    /// Top the standby up. Called when a request's guest call is done, not
    /// when its sandbox is taken: instantiating beside a running request
    /// slows it (both contend for the process's memory map), measured at
    /// 0.56 ms vs 1.9 ms.
    fn refill_standby(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        while self.pool.claim_standby_start() {
            // Hold only a weak reference: a replaced worker stops refilling.
            let worker = Arc::downgrade(self);
            tokio::spawn(async move {
                let Some(this) = worker.upgrade() else { return };
                let Ok(pre) = this.linked().await else {
                    // Logged by `linked`; the next request tries again.
                    this.pool.standby_abandoned();
                    return;
                };
                let warmed = this.warm(&pre).await;
                if let Err(e) = this.pool.standby_started(warmed) {
                    tracing::debug!(worker = %this.name, "warming a standby sandbox failed: {e:#}");
                }
            });
        }
    }

    /// A fresh sandbox that has run its per-sandbox start-up (reseeding,
    /// reading vars, importing the main module) through an internal request
    /// that no user handler sees.
    pub async fn warmed_sandbox(&self) -> anyhow::Result<Sandbox> {
        let pre = self.linked().await?;
        self.warm(&pre).await
    }

    /// A fresh sandbox of `pre`, warmed up (`warmed_sandbox`).
    async fn warm(&self, pre: &ProxyPre<SandboxState>) -> anyhow::Result<Sandbox> {
        let mut sandbox = Sandbox::new(pre, &self.template)
            .await
            .map_err(anyhow::Error::from)?;
        let request = http::Request::get(format!("http://{AUTHORITY_WARMUP}/"))
            .body(Full::new(Bytes::new()).map_err(|never| -> ErrorCode { match never {} }))?;
        let bound = sandbox
            .bind_request(request, &self.template.limits, Place::Pool)
            .map_err(anyhow::Error::from)?;
        sandbox
            .proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut sandbox.store, bound.request, bound.out)
            .await
            .map_err(anyhow::Error::from)?;
        // A started sandbox answers nothing (`AUTHORITY_WARMUP`). The call
        // has returned, so an answer would be here: whether the guest has
        // dropped its response slot yet or not, an empty one is a start.
        let mut answer = bound.response;
        match answer.try_recv() {
            Err(_) => Ok(sandbox),
            Ok(Ok(response)) => anyhow::bail!("the warm-up answered {}", response.status()),
            Ok(Err(code)) => anyhow::bail!("the warm-up failed: {code:?}"),
        }
    }

    pub fn standby_count(&self) -> usize {
        self.pool.standby_count()
    }

    /// Serve one request from outside in a warm sandbox, or a fresh one from
    /// the snapshot. Internal host names are refused. A WebSocket upgrade
    /// that the worker answers with an accepted socket is carried out here.
    pub async fn handle<B>(self: &Arc<Self>, request: http::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let (mut parts, body) = request.into_parts();
        let upgrade = crate::websocket::session::Upgrade::take(&mut parts);
        let response = self
            .handle_from_worker(http::Request::from_parts(parts, body))
            .await;
        crate::websocket::session::finish(self, upgrade, response)
    }

    /// [`Worker::handle`] for a request another worker sends (a service
    /// binding's `fetch`): the same checks, but a WebSocket upgrade stays
    /// marked for the worker (`HEADER_UPGRADE`) and its 101 goes back to the
    /// caller, whose own response the outermost `handle` carries out.
    pub async fn handle_from_worker<B>(
        self: &Arc<Self>,
        request: http::Request<B>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // Both the Host header and an absolute-form URI's authority are
        // checked: wasi-http gives the guest the URI's authority first.
        let internal = |name: &[u8]| {
            name.len() >= INTERNAL_HOST_PREFIX.len()
                && name[..INTERNAL_HOST_PREFIX.len()]
                    .eq_ignore_ascii_case(INTERNAL_HOST_PREFIX.as_bytes())
        };
        let header = request
            .headers()
            .get(http::header::HOST)
            .map(|h| h.as_bytes());
        let authority = request.uri().host().map(str::as_bytes);
        if header.is_some_and(internal) || authority.is_some_and(internal) {
            return text_response(StatusCode::BAD_REQUEST, "bad host\n");
        }
        let (parts, body) = request.into_parts();
        if let Some(response) = self.template.host.before_worker(&parts) {
            return match response.await {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(worker = %self.name, "serving a static asset failed: {e:?}");
                    text_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
                }
            };
        }
        self.serve(http::Request::from_parts(parts, body)).await
    }

    /// Fire a cron trigger: the worker's `scheduled` handler runs with
    /// `cron` and `scheduled_time` (ms since the epoch). 2xx means it succeeded.
    pub async fn scheduled(self: &Arc<Self>, cron: &str, scheduled_time_ms: i64) -> Response<Body> {
        let query: String = form_urlencoded::byte_serialize(cron.as_bytes()).collect();
        let (cron_key, time_key) = (
            contract::SCHEDULED_QUERY_CRON,
            contract::SCHEDULED_QUERY_TIME,
        );
        let request = http::Request::get(format!(
            "http://{AUTHORITY_SCHEDULED}/?{cron_key}={query}&{time_key}={scheduled_time_ms}"
        ))
        .header(http::header::HOST, AUTHORITY_SCHEDULED)
        .body(Full::new(Bytes::new()));
        match request {
            Ok(request) => self.serve(request).await,
            Err(_) => text_response(StatusCode::BAD_REQUEST, "bad cron expression\n"),
        }
    }

    /// Deliver a batch of queue messages (the JSON `contract::AUTHORITY_QUEUE`
    /// describes) to the worker's `queue` handler; it answers each
    /// message's outcome as JSON.
    pub async fn queue(self: &Arc<Self>, batch: Bytes) -> Response<Body> {
        let request = http::Request::post(format!("http://{AUTHORITY_QUEUE}/"))
            .header(http::header::HOST, AUTHORITY_QUEUE)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(batch));
        match request {
            Ok(request) => self.serve(request).await,
            Err(_) => text_response(StatusCode::INTERNAL_SERVER_ERROR, "bad queue batch\n"),
        }
    }

    /// One replay of workflow instance `id` of `class` (the JSON
    /// `contract::AUTHORITY_WORKFLOW` describes).
    pub async fn workflow(self: &Arc<Self>, class: &str, id: &str, body: Bytes) -> Response<Body> {
        let request = http::Request::post(format!("http://{AUTHORITY_WORKFLOW}/{class}/{id}"))
            .header(http::header::HOST, AUTHORITY_WORKFLOW)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body));
        match request {
            Ok(request) => self.serve(request).await,
            Err(_) => text_response(StatusCode::BAD_REQUEST, "bad workflow instance\n"),
        }
    }

    /// A service binding's call to one of this worker's entrypoints, from
    /// another worker on the server: `request` is addressed to
    /// `AUTHORITY_SERVICE` (which [`Worker::handle`] refuses from outside).
    pub async fn entrypoint<B>(self: &Arc<Self>, request: http::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        self.serve(request).await
    }

    async fn serve<B>(self: &Arc<Self>, mut request: http::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let limits = &self.template.limits;
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limits.max_request_body) {
            tracing::warn!(worker = %self.name, "request body over the limit max_request_body ({} bytes)", limits.max_request_body);
            return text_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body exceeds the worker's max_request_body limit\n",
            );
        }
        if request.uri().authority().is_none()
            && !request.headers().contains_key(http::header::HOST)
        {
            request
                .headers_mut()
                .insert(http::header::HOST, HeaderValue::from_static("localhost"));
        }
        let tag = format!(
            "{} {}",
            request.method(),
            request.uri().path_and_query().map_or("/", |p| p.as_str())
        );

        let permit = match self.pool.permit().await {
            Ok(permit) => permit,
            Err(Refused::QueueFull) => {
                tracing::warn!(worker = %self.name, "{tag}: over the max_queue limit ({}); 503", limits.max_queue);
                return text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the worker is at capacity, retry shortly\n",
                );
            }
            Err(Refused::Closed) => {
                return text_response(StatusCode::SERVICE_UNAVAILABLE, "worker is shutting down\n");
            }
        };
        let taken = match self.pool.take() {
            Some(taken) => taken,
            None => match self.or_fresh(None).await {
                Ok(sandbox) => Taken::fresh(sandbox),
                Err(response) => return response,
            },
        };
        self.run(taken.item, request, tag, Home::Pool(permit, taken.uses))
            .await
    }

    /// Run one request in `sandbox`; afterwards the sandbox goes back to
    /// `home` (unless it trapped: then it is dropped, never reused).
    pub(crate) async fn run<B>(
        self: &Arc<Self>,
        mut sandbox: Sandbox,
        request: http::Request<B>,
        tag: String,
        home: Home,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let limits = &self.template.limits;
        sandbox.tag.set(tag.clone());
        let place = match &home {
            Home::Pool(..) => Place::Pool,
            Home::Slot(place, _) => place.clone(),
        };

        let limit = limits.max_request_body as usize;
        let request = request.map(move |body| {
            BodyExt::map_err(Limited::new(body, limit), |e| {
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some()
                {
                    ErrorCode::HttpRequestBodySize(None)
                } else {
                    ErrorCode::InternalError(Some(e.to_string()))
                }
            })
        });
        let BoundRequest {
            request: guest_request,
            out,
            response: receiver,
        } = match sandbox.bind_request(request, limits, place) {
            Ok(bound) => bound,
            Err(e) => {
                tracing::warn!(worker = %self.name, "{tag}: bad request: {e:#}");
                return text_response(StatusCode::BAD_REQUEST, "bad request\n");
            }
        };

        // The guest call runs in this task (no hand-off to another thread for
        // the common case of a handler that finishes with its response); it
        // is detached to finish in the background only when the response
        // arrives first (a streamed body, waitUntil work) or when the client
        // goes away mid-request.
        let worker = self.clone();
        // The epoch stops wasm that runs past `cpu_time`, but not a call
        // waiting in the host (a sleep, a binding call that never answers):
        // the same deadline, a little later, ends that one too.
        let deadline = limits.cpu_time + WAIT_GRACE;
        let mut call = Detached(Some(Box::pin(async move {
            let handle = sandbox.proxy.wasi_http_incoming_handler().call_handle(
                &mut sandbox.store,
                guest_request,
                out,
            );
            let result = match tokio::time::timeout(deadline, handle).await {
                Ok(result) => result,
                Err(_) => Err(wasmtime::Error::new(WaitedPastLimit)),
            };
            // A call that accepted a WebSocket outside a Durable Object hands
            // its sandbox to the socket's slot instead of the pool.
            let adopted = sandbox.take_adopted();
            let outcome = match (result, home) {
                (Ok(()), Home::Pool(permit, uses)) => {
                    drop(permit);
                    match adopted {
                        Some(mut adopted) => *adopted.slot = Some(sandbox),
                        None => worker.pool.give_back(Taken {
                            item: sandbox,
                            uses,
                        }),
                    }
                    Ok(())
                }
                (Ok(()), Home::Slot(_, mut slot)) => {
                    *slot = Some(sandbox);
                    Ok(())
                }
                // A trapped sandbox may be in any state: it is dropped, never reused
                // (a Durable Object starts again from the snapshot on its next call).
                (Err(e), _) => Err(e),
            };
            worker.refill_standby();
            outcome
        })));
        let mut receiver = receiver;
        let (response, finished) = tokio::select! {
            biased;
            outcome = call.run() => (receiver.await, Some(outcome)),
            response = &mut receiver => (response, None),
        };
        let finished = match finished {
            Some(outcome) => outcome,
            None => {
                if let Ok(Ok(response)) = response {
                    // The guest may still be writing the body; a later trap is
                    // logged and cuts the body short.
                    let worker = self.clone();
                    let response = self.limit_response(&tag, response);
                    call.detach(move |outcome| {
                        if let Err(e) = outcome {
                            worker.log_failure(&tag, &e);
                        }
                    });
                    return response;
                }
                call.run().await
            }
        };
        match (response, finished) {
            (Ok(Ok(response)), Ok(())) => self.limit_response(&tag, response),
            (Ok(Ok(response)), Err(e)) => {
                self.log_failure(&tag, &e);
                self.limit_response(&tag, response)
            }
            (Ok(Err(code)), _) => {
                tracing::warn!(worker = %self.name, "{tag}: the worker answered with an error: {code:?}");
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the worker failed to produce a response\n",
                )
            }
            (Err(_), Err(e)) => self.failure_response(&tag, &e),
            (Err(_), Ok(())) => {
                tracing::warn!(worker = %self.name, "{tag}: the worker returned without a response");
                text_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the worker returned without a response\n",
                )
            }
        }
    }

    /// `sandbox`, or a fresh one from the snapshot; a 503 if none can start.
    pub(crate) async fn or_fresh(
        &self,
        sandbox: Option<Sandbox>,
    ) -> Result<Sandbox, Response<Body>> {
        if let Some(sandbox) = sandbox {
            return Ok(sandbox);
        }
        self.fresh_sandbox().await.map_err(|e| {
            tracing::error!(worker = %self.name, "starting a sandbox failed: {e:#}");
            text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "no sandbox available, try again\n",
            )
        })
    }

    /// Drop idle sandboxes (e.g. before this worker is replaced).
    pub fn drain_idle(&self) {
        self.pool.drain();
    }

    pub fn idle_count(&self) -> usize {
        self.pool.idle_count()
    }
}

/// For reports: how long a duration is, readably.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
