//! Named limits on everything a guest can reach.

use std::time::Duration;

/// Per-worker limits. Defaults follow Cloudflare Workers where it has one
/// (128 MiB memory, 100 MB request bodies) and are documented in docs/config.md.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory per sandbox.
    pub memory_bytes: usize,
    /// Time a request may run guest code before its sandbox is stopped.
    pub cpu_time: Duration,
    /// Largest request body accepted (larger gets 413 before the guest runs).
    pub max_request_body: u64,
    /// Largest response body a worker may send: a larger declared length
    /// gets a 500; a stream that grows past it is cut off.
    pub max_response_body: u64,
    /// Sandboxes one worker may run at once: its request concurrency.
    pub max_sandboxes: usize,
    /// Requests that may wait for a sandbox; past that, 503 with Retry-After.
    pub max_queue: usize,
    /// Requests a sandbox serves before it is replaced by a fresh one.
    pub max_requests_per_sandbox: u64,
    /// A warm sandbox unused this long is dropped; a worker with no request
    /// for this long gives up its standby sandboxes and their memory too.
    pub idle_timeout: Duration,
    /// WebSockets one worker may hold open at once (each one accepted
    /// outside a Durable Object also holds a sandbox).
    pub max_websockets: usize,
    /// WebSockets accepted outside a Durable Object, each holding a sandbox
    /// of its own (out of the process's pool): past this, `accept()` raises.
    pub max_socket_sandboxes: usize,
    /// Largest WebSocket message a client may send (Workers: 1 MiB); larger
    /// closes the socket with 1009.
    pub websocket_max_message: usize,
    /// Messages a client may send per second on one socket; faster ones wait
    /// (the socket stops being read), they are not dropped.
    pub websocket_messages_per_second: u32,
    /// A socket with no message either way for this long is closed (1001).
    pub websocket_idle_timeout: Duration,
    /// A Durable Object whose only live work is hibernatable WebSockets
    /// (`ctx.acceptWebSocket`) and that got no event for this long gives its
    /// sandbox up; the sockets stay open and the next event wakes it.
    pub websocket_hibernate_after: Duration,
}

pub const MIB: usize = 1 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 * MIB,
            cpu_time: Duration::from_secs(30),
            max_request_body: 100 * 1000 * 1000,
            max_response_body: 512 * 1000 * 1000,
            max_sandboxes: 16,
            max_queue: 256,
            max_requests_per_sandbox: 10_000,
            idle_timeout: Duration::from_secs(60),
            max_websockets: 256,
            max_socket_sandboxes: 32,
            websocket_max_message: MIB,
            websocket_messages_per_second: 1000,
            websocket_idle_timeout: Duration::from_secs(1800),
            websocket_hibernate_after: Duration::from_secs(10),
        }
    }
}

impl Limits {
    /// `cpu_time` in epoch ticks: the deadline a request's guest call gets.
    pub fn epoch_ticks(&self) -> u64 {
        (self.cpu_time.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }

    /// `taipan dev`: room for 100 MB bodies to pass through a handler that
    /// reads them whole (the body, its copy, and the interpreter).
    pub fn dev() -> Self {
        Self {
            memory_bytes: 512 * MIB,
            ..Self::default()
        }
    }
}

/// How often the engine's epoch advances: the granularity of `cpu_time`.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
