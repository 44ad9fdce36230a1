//! One sandbox: a wasmtime store and a worker instance restored from the snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use taipan_guest::Mount;
use tokio::sync::oneshot;
use wasmtime::component::Resource;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{DirPerms, FilePerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::p2::{WasiHttpCtxView, WasiHttpView};

use crate::host::{HostLimits, Place, RequestView, WorkerHost};
use crate::limits::Limits;
use crate::log::{LogSink, LogStream, RequestTag};

/// Request-lifetime host state, kept in the store.
pub struct SandboxState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    pub(crate) hooks: RequestView,
    pub(crate) table: ResourceTable,
    /// wasi-http's limit on a response's headers, also applied by
    /// `taipan:worker/response` (crate::whole_response).
    pub(crate) field_size_limit: usize,
    limits: StoreLimits,
    /// TCP connections opened in the current request (`max_tcp_connections`).
    tcp_connections: Arc<AtomicU32>,
    /// Bytes the current request may still move over TCP (`max_tcp_bytes`).
    pub(crate) tcp_budget: crate::tcp::Budget,
    max_tcp_bytes: u64,
}

impl WasiView for SandboxState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for SandboxState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// What every sandbox of one worker is given.
pub struct SandboxTemplate {
    pub name: Arc<str>,
    pub mounts: Vec<Mount>,
    pub env: Vec<(String, String)>,
    pub limits: Limits,
    pub log: Arc<dyn LogSink>,
    /// The worker's bindings and outbound fetch.
    pub host: Arc<dyn WorkerHost>,
    pub host_limits: HostLimits,
    /// The worker these sandboxes run (what their WebSockets belong to).
    pub worker: std::sync::Weak<crate::Worker>,
}

/// One request handed to a sandbox, ready for `incoming-handler.handle`.
pub struct BoundRequest {
    pub request: Resource<HostIncomingRequest>,
    pub out: Resource<HostResponseOutparam>,
    /// The guest's response (or its error), once it sets the outparam.
    pub response: oneshot::Receiver<Result<http::Response<HyperOutgoingBody>, ErrorCode>>,
}

pub struct Sandbox {
    pub store: Store<SandboxState>,
    pub proxy: Proxy,
    pub tag: RequestTag,
}

impl Sandbox {
    /// The slot this sandbox must move into after its call, if the call
    /// accepted a WebSocket outside a Durable Object.
    pub fn take_adopted(&mut self) -> Option<crate::host::Adopted> {
        self.store.data_mut().hooks.take_adopted()
    }

    pub async fn new(
        pre: &ProxyPre<SandboxState>,
        template: &SandboxTemplate,
    ) -> wasmtime::Result<Self> {
        let tag = RequestTag::default();
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(LogStream::new(
            template.name.clone(),
            tag.clone(),
            false,
            template.log.clone(),
        ))
        .stderr(LogStream::new(
            template.name.clone(),
            tag.clone(),
            true,
            template.log.clone(),
        ))
        .envs(&template.env);
        for mount in &template.mounts {
            wasi.preopened_dir(&mount.host, &mount.guest, DirPerms::READ, FilePerms::READ)?;
        }
        // Outbound TCP (wasi:sockets; CPython's own `socket` module): name
        // lookups, and connections the worker's host allows, up to
        // `max_tcp_connections` per request. No UDP, no listening sockets.
        let tcp_connections = Arc::new(AtomicU32::new(0));
        let (host, counted) = (template.host.clone(), tcp_connections.clone());
        let max_connections = template.host_limits.max_tcp_connections;
        wasi.allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(true)
            .socket_addr_check(move |addr, usage| match usage {
                SocketAddrUse::TcpConnect => {
                    if counted.fetch_add(1, Ordering::Relaxed) >= max_connections {
                        return Box::pin(async { false });
                    }
                    host.tcp_connect_allowed(addr)
                }
                _ => Box::pin(async { false }),
            });
        // Room for a WebSocket message in a call's arguments (base64 in
        // `HEADER_ARGS`), beyond wasi-http's 128 KiB default.
        let field_size_limit =
            (template.limits.websocket_max_message / 3 * 4 + (64 << 10)).max(128 << 10);
        let state = SandboxState {
            wasi: wasi.build(),
            http: {
                let mut http = WasiHttpCtx::new();
                http.set_field_size_limit(field_size_limit);
                http
            },
            field_size_limit,
            hooks: RequestView::new(
                template.host.clone(),
                template.host_limits,
                template.worker.clone(),
                template.limits.max_websockets,
            ),
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(template.limits.memory_bytes)
                .trap_on_grow_failure(false)
                .build(),
            tcp_connections,
            tcp_budget: crate::tcp::Budget::default(),
            max_tcp_bytes: template.host_limits.max_tcp_bytes,
        };
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|s| &mut s.limits);
        store.epoch_deadline_trap();
        // Instantiation itself runs no guest code of note; give it a generous deadline.
        store.set_epoch_deadline(u64::MAX / 2);
        let proxy = pre.instantiate_async(&mut store).await?;
        Ok(Self { store, proxy, tag })
    }

    /// Hand `request` to this sandbox's wasi:http context and arm the CPU
    /// deadline: the guest resources for one `incoming-handler.handle` call,
    /// and where its response will arrive.
    pub fn bind_request<B>(
        &mut self,
        request: http::Request<B>,
        limits: &Limits,
        place: Place,
    ) -> wasmtime::Result<BoundRequest>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<ErrorCode>,
    {
        let (sender, receiver) = oneshot::channel();
        self.store.data_mut().hooks.reset(place);
        let state = self.store.data();
        state.tcp_connections.store(0, Ordering::Relaxed);
        state.tcp_budget.reset(state.max_tcp_bytes);
        let mut http = self.store.data_mut().http();
        // A service binding's request keeps its URL's scheme; from the network it is http.
        let scheme = if request.uri().scheme() == Some(&http::uri::Scheme::HTTPS) {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let request = http.new_incoming_request(scheme, request)?;
        let out = http.new_response_outparam(sender)?;
        self.store.set_epoch_deadline(limits.epoch_ticks());
        Ok(BoundRequest {
            request,
            out,
            response: receiver,
        })
    }
}
