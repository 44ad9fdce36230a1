//! A deployed worker: its compiled component and a pool of warm sandboxes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use taipan_build::Artifact;
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::body::LimitedResponse;
use crate::engine::Runtime;
use crate::host::{HostLimits, INTERNAL_PREFIX, WorkerHost};
use crate::limits::Limits;
use crate::log::LogSink;
use crate::sandbox::{BoundRequest, Sandbox, SandboxState, SandboxTemplate};

/// How a worker runs, beyond its build.
#[derive(Clone)]
pub struct WorkerSettings {
    pub name: String,
    /// `vars` (and secrets) as a JSON object: read by the guest, never logged.
    pub vars_json: String,
    /// `{name: kind}` of the worker's bindings, as a JSON object.
    pub bindings_json: String,
    /// What the bindings and outbound fetch reach.
    pub host: Arc<dyn WorkerHost>,
    pub host_limits: HostLimits,
    /// Dev mode: tracebacks go into 500 responses too.
    pub dev: bool,
    pub limits: Limits,
    /// Reuse warm sandboxes across requests (the default, as Workers reuses
    /// isolates). Off: every request gets a fresh sandbox from the snapshot.
    pub reuse_sandboxes: bool,
    /// Where the guest's output goes.
    pub log: Arc<dyn LogSink>,
    /// Fresh sandboxes kept instantiated and warmed up ahead of demand.
    pub standby_sandboxes: usize,
}

/// Worker-lifetime state: one per deployed build.
pub struct Worker {
    pub name: Arc<str>,
    pub artifact_id: String,
    pre: ProxyPre<SandboxState>,
    template: SandboxTemplate,
    idle: Mutex<Vec<Sandbox>>,
    permits: Arc<Semaphore>,
    queued: Arc<AtomicUsize>,
    reuse: bool,
    /// Fresh sandboxes, instantiated and warmed up ahead of demand; never
    /// used by a request yet.
    standby: Mutex<Vec<Sandbox>>,
    standby_target: usize,
    standby_starting: AtomicUsize,
    /// Set when warming a sandbox fails (e.g. the worker's top level raises):
    /// requests then start sandboxes themselves and report the error.
    standby_failed: AtomicBool,
    /// Live Durable Objects by `<class>/<id>`.
    objects: Mutex<HashMap<String, ObjectSlot>>,
}

/// A place in a worker's wait queue, given back on drop.
struct QueueSlot(Arc<AtomicUsize>);

impl QueueSlot {
    fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Self(counter.clone()))
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub type Body = HyperOutgoingBody;

/// Where a sandbox goes after a request.
enum Home {
    /// The worker's pool: back to the idle list; the permit is released.
    Pool(tokio::sync::OwnedSemaphorePermit),
    /// A Durable Object's own sandbox: back into its slot, which stays
    /// locked (calls to the object wait) until the call is over.
    Object(tokio::sync::OwnedMutexGuard<Option<Sandbox>>),
}

/// A live Durable Object: its sandbox, locked while a call runs in it.
type ObjectSlot = Arc<tokio::sync::Mutex<Option<Sandbox>>>;

/// Durable Objects a worker keeps live at once, each in its own sandbox;
/// past this (or when the sandbox pool is full), an idle one is evicted: its
/// storage stays, its memory goes, as on Workers.
pub const MAX_LIVE_OBJECTS: usize = 32;

/// Drop one live object no call is using; false if all are busy.
fn evict_idle(objects: &mut HashMap<String, ObjectSlot>) -> bool {
    let idle = objects
        .iter()
        .find(|(_, slot)| Arc::strong_count(slot) == 1 && slot.try_lock().is_ok())
        .map(|(key, _)| key.clone());
    idle.is_some_and(|key| objects.remove(&key).is_some())
}

/// The authority of a call into a Durable Object:
/// `http://__taipan-do__/<class>/<id>/<rpc|fetch>`. Refused from outside.
pub const DURABLE_AUTHORITY: &str = "__taipan-do__";

/// The authority of a service binding's call into another worker:
/// `http://__taipan-service__/<entrypoint>/<rpc|fetch>` (an RPC method, or a
/// fetch to a named entrypoint). Refused from outside.
pub const SERVICE_AUTHORITY: &str = "__taipan-service__";

/// The authority of the internal warm-up request (not a valid host name, and
/// refused from outside): the guest answers it 204 without calling the worker.
pub const WARMUP_AUTHORITY: &str = "__taipan-warmup__";

/// The authority of a cron trigger's internal request: the guest calls the
/// worker's `scheduled` handler. Refused from outside.
pub const SCHEDULED_AUTHORITY: &str = "__taipan-scheduled__";

impl Worker {
    /// Compile (or load the compiled) component and pre-link it. Blocking.
    pub fn load(
        runtime: &Runtime,
        artifact: &Artifact,
        settings: WorkerSettings,
    ) -> Result<Arc<Self>> {
        let component = runtime.load_component(&artifact.component())?;
        let mut linker = Linker::<SandboxState>::new(&runtime.engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("linking the worker")?;
        let pre = ProxyPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("the component does not export wasi:http/incoming-handler")?;
        let mut env = vec![
            ("TAIPAN_VARS".to_string(), settings.vars_json.clone()),
            (
                "TAIPAN_BINDINGS".to_string(),
                settings.bindings_json.clone(),
            ),
        ];
        if settings.dev {
            env.push(("TAIPAN_DEV".into(), "1".into()));
        }
        let name: Arc<str> = settings.name.as_str().into();
        Ok(Arc::new(Self {
            name: name.clone(),
            artifact_id: artifact.id.clone(),
            pre,
            template: SandboxTemplate {
                name,
                mounts: artifact.mounts(&runtime.python),
                env,
                limits: settings.limits.clone(),
                log: settings.log.clone(),
                host: settings.host.clone(),
                host_limits: settings.host_limits,
            },
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(settings.limits.max_sandboxes)),
            queued: Arc::default(),
            reuse: settings.reuse_sandboxes,
            standby: Mutex::new(Vec::new()),
            standby_target: settings.standby_sandboxes,
            standby_starting: AtomicUsize::new(0),
            standby_failed: AtomicBool::new(false),
            objects: Mutex::default(),
        }))
    }

    pub fn limits(&self) -> &Limits {
        &self.template.limits
    }

    /// A sandbox straight from the snapshot, unused.
    pub async fn fresh_sandbox(&self) -> wasmtime::Result<Sandbox> {
        Sandbox::new(&self.pre, &self.template).await
    }

    /// Start filling the standby (call from inside the tokio runtime).
    pub fn start_standby(self: &Arc<Self>) {
        self.refill_standby();
    }

    /// A standby sandbox. The refill starts when the request using it is
    /// done: instantiating beside a running request slows it (both contend
    /// for the process's memory map), measured at 0.56 ms vs 1.9 ms.
    fn take_standby(&self) -> Option<Sandbox> {
        self.standby.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn refill_standby(self: &Arc<Self>) {
        if self.standby_failed.load(Ordering::Acquire)
            || tokio::runtime::Handle::try_current().is_err()
        {
            return;
        }
        loop {
            let ready = self.standby.lock().unwrap_or_else(|e| e.into_inner()).len();
            let starting = self.standby_starting.load(Ordering::Acquire);
            if ready + starting >= self.standby_target {
                return;
            }
            if self
                .standby_starting
                .compare_exchange(starting, starting + 1, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            // Hold only a weak reference: a replaced worker stops refilling.
            let worker = Arc::downgrade(self);
            tokio::spawn(async move {
                let Some(this) = worker.upgrade() else { return };
                let warmed = this.warmed_sandbox().await;
                this.standby_starting.fetch_sub(1, Ordering::AcqRel);
                match warmed {
                    Ok(sandbox) => this
                        .standby
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(sandbox),
                    Err(e) => {
                        this.standby_failed.store(true, Ordering::Release);
                        tracing::debug!(worker = %this.name, "warming a standby sandbox failed: {e:#}");
                    }
                }
            });
        }
    }

    /// A fresh sandbox that has run its per-sandbox start-up (reseeding,
    /// reading vars, importing the main module) through an internal request
    /// that no user handler sees.
    pub async fn warmed_sandbox(&self) -> anyhow::Result<Sandbox> {
        let mut sandbox = self.fresh_sandbox().await.map_err(anyhow::Error::from)?;
        let request = http::Request::get(format!("http://{WARMUP_AUTHORITY}/"))
            .body(Full::new(Bytes::new()).map_err(|never| -> ErrorCode { match never {} }))?;
        let bound = sandbox
            .bind_request(request, &self.template.limits)
            .map_err(anyhow::Error::from)?;
        sandbox
            .proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut sandbox.store, bound.request, bound.out)
            .await
            .map_err(anyhow::Error::from)?;
        match bound.response.await {
            Ok(Ok(response)) if response.status() == StatusCode::NO_CONTENT => Ok(sandbox),
            Ok(Ok(response)) => anyhow::bail!("the warm-up answered {}", response.status()),
            _ => anyhow::bail!("the warm-up sent no response"),
        }
    }

    pub fn standby_count(&self) -> usize {
        self.standby.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn take_idle(&self) -> Option<Sandbox> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let timeout = self.template.limits.idle_timeout;
        idle.retain(|s| s.last_used.elapsed() < timeout);
        idle.pop()
    }

    fn return_idle(&self, mut sandbox: Sandbox) {
        if !self.reuse {
            return;
        }
        sandbox.requests += 1;
        sandbox.last_used = Instant::now();
        if sandbox.requests < self.template.limits.max_requests_per_sandbox {
            self.idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(sandbox);
        }
    }

    /// Serve one request from outside in a warm sandbox, or a fresh one from
    /// the snapshot. Internal host names are refused.
    pub async fn handle<B>(self: &Arc<Self>, request: http::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let host = request
            .headers()
            .get(http::header::HOST)
            .map(|h| h.as_bytes())
            .or_else(|| request.uri().host().map(str::as_bytes));
        if host.is_some_and(|h| h.starts_with(INTERNAL_PREFIX.as_bytes())) {
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
        let request = http::Request::get(format!(
            "http://{SCHEDULED_AUTHORITY}/?cron={query}&scheduledTime={scheduled_time_ms}"
        ))
        .header(http::header::HOST, SCHEDULED_AUTHORITY)
        .body(Full::new(Bytes::new()));
        match request {
            Ok(request) => self.serve(request).await,
            Err(_) => text_response(StatusCode::BAD_REQUEST, "bad cron expression\n"),
        }
    }

    /// A service binding's call to one of this worker's entrypoints, from
    /// another worker on the server: `request` is addressed to
    /// [`SERVICE_AUTHORITY`] (which [`Worker::handle`] refuses from outside).
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

        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                // All sandboxes busy: wait in a bounded queue.
                let queued = QueueSlot::take(&self.queued, limits.max_queue);
                let Some(_slot) = queued else {
                    tracing::warn!(worker = %self.name, "{tag}: over the max_queue limit ({}); 503", limits.max_queue);
                    return text_response(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the worker is at capacity, retry shortly\n",
                    );
                };
                match self.permits.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => {
                        return text_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "worker is shutting down\n",
                        );
                    }
                }
            }
        };
        let sandbox = match self
            .or_fresh(self.take_idle().or_else(|| self.take_standby()))
            .await
        {
            Ok(sandbox) => sandbox,
            Err(response) => return response,
        };
        self.run(sandbox, request, tag, Home::Pool(permit)).await
    }

    /// Run one request in `sandbox`; afterwards the sandbox goes back to
    /// `home` (unless it trapped: then it is dropped, never reused).
    async fn run<B>(
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
        } = match sandbox.bind_request(request, limits) {
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
            let outcome = match (result, home) {
                (Ok(()), Home::Pool(permit)) => {
                    drop(permit);
                    worker.return_idle(sandbox);
                    Ok(())
                }
                (Ok(()), Home::Object(mut slot)) => {
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

    /// A call into the Durable Object `key` (`<class>/<id>`): `request` is
    /// addressed to [`DURABLE_AUTHORITY`]. Each object lives in a sandbox of
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
        let slot = {
            let mut objects = self.objects.lock().unwrap_or_else(|e| e.into_inner());
            match objects.get(key) {
                Some(slot) => slot.clone(),
                None => {
                    if objects.len() >= MAX_LIVE_OBJECTS && !evict_idle(&mut objects) {
                        tracing::warn!(worker = %self.name, "{key}: over {MAX_LIVE_OBJECTS} live Durable Objects, all busy; 503");
                        return text_response(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "too many live Durable Objects, retry shortly\n",
                        );
                    }
                    let slot = ObjectSlot::default();
                    objects.insert(key.to_string(), slot.clone());
                    slot
                }
            }
        };
        let mut guard = slot.lock_owned().await;
        let mut sandbox = guard.take();
        if sandbox.is_none() {
            sandbox = self.fresh_sandbox().await.ok();
            if sandbox.is_none() {
                // The sandbox pool (shared by every worker) may be full of
                // idle objects: let one go, then try once more below.
                evict_idle(&mut self.objects.lock().unwrap_or_else(|e| e.into_inner()));
            }
        }
        let sandbox = match self.or_fresh(sandbox).await {
            Ok(sandbox) => sandbox,
            Err(response) => return response,
        };
        let tag = format!("{} {}", request.method(), request.uri().path());
        self.run(sandbox, request, tag, Home::Object(guard)).await
    }

    /// `sandbox`, or a fresh one from the snapshot; a 503 if none can start.
    async fn or_fresh(&self, sandbox: Option<Sandbox>) -> Result<Sandbox, Response<Body>> {
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

    /// Live Durable Objects (for tests and stats).
    pub fn live_objects(&self) -> usize {
        self.objects.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Hold a response to `max_response_body`: a declared length over it is
    /// refused outright (500); a body that streams past it is cut off.
    fn limit_response(&self, tag: &str, response: Response<Body>) -> Response<Body> {
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

    fn log_failure(&self, tag: &str, error: &wasmtime::Error) -> (StatusCode, &'static str) {
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

    fn failure_response(&self, tag: &str, error: &wasmtime::Error) -> Response<Body> {
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

    /// Drop idle sandboxes (e.g. before this worker is replaced).
    pub fn drain_idle(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.standby
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

type GuestCall = std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<()>> + Send>>;

/// A guest call that must run to completion: if whoever polls it goes away
/// (the client disconnected), the rest of it is spawned rather than dropped
/// mid-instruction, so the handler and its `waitUntil` work still finish.
struct Detached(Option<GuestCall>);

impl Detached {
    /// Drive the call to its end (cancel-safe: dropping this future leaves
    /// the call in place, to be resumed or detached).
    async fn run(&mut self) -> wasmtime::Result<()> {
        let Some(call) = self.0.as_mut() else {
            return Ok(());
        };
        let outcome = call.await;
        self.0 = None;
        outcome
    }

    fn detach(mut self, then: impl FnOnce(wasmtime::Result<()>) + Send + 'static) {
        if let Some(call) = self.0.take() {
            tokio::spawn(async move { then(call.await) });
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(call) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            tokio::spawn(call);
        }
    }
}

/// How long past `cpu_time` a guest call waiting in the host may go on
/// before it is ended (the epoch trap ends a running one first).
const WAIT_GRACE: Duration = Duration::from_secs(1);

/// A guest call ended at its time limit while it waited in the host.
#[derive(Debug)]
struct WaitedPastLimit;

impl std::fmt::Display for WaitedPastLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the guest call was still waiting when its time limit ran out")
    }
}

impl std::error::Error for WaitedPastLimit {}

/// Which limit (if any) a guest failure means, and the status it gets.
fn classify_trap(error: &wasmtime::Error) -> (StatusCode, Option<&'static str>) {
    if error.downcast_ref::<WaitedPastLimit>().is_some() {
        return (StatusCode::SERVICE_UNAVAILABLE, Some("cpu_time"));
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => (StatusCode::SERVICE_UNAVAILABLE, Some("cpu_time")),
        Some(wasmtime::Trap::StackOverflow) => (StatusCode::INTERNAL_SERVER_ERROR, Some("stack")),
        _ if format!("{error:?}").contains("memory") && format!("{error:?}").contains("limit") => {
            (StatusCode::SERVICE_UNAVAILABLE, Some("memory"))
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
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

/// For reports: how long a duration is, readably.
pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
