//! A worker's limits: the server's, with the worker's own `[limits]` applied.
//! Resolved here so the runtime takes finished `Limits` and knows no config.

use std::time::Duration;

use taipan_config::ConfigLimits;
use taipan_runtime::Limits;

/// `base` with each limit the worker's config sets (`None` keeps `base`'s).
pub fn with_overrides(base: &Limits, o: &ConfigLimits) -> Limits {
    let mb = |v: Option<u64>, default: u64| v.map_or(default, |mb| mb * 1000 * 1000);
    Limits {
        cpu_time: o.cpu_ms.map_or(base.cpu_time, Duration::from_millis),
        memory_bytes: o
            .memory_mb
            .map_or(base.memory_bytes, |mb| (mb as usize) << 20),
        max_request_body: mb(o.request_body_mb, base.max_request_body),
        max_response_body: mb(o.response_body_mb, base.max_response_body),
        max_sandboxes: o.max_sandboxes.map_or(base.max_sandboxes, |n| n as usize),
        max_websockets: o.max_websockets.map_or(base.max_websockets, |n| n as usize),
        websocket_hibernate_after: o
            .websocket_hibernate_ms
            .map_or(base.websocket_hibernate_after, Duration::from_millis),
        ..base.clone()
    }
}

/// What a worker's `[limits]` sets of the per-request host limits.
pub fn host_limits(o: &ConfigLimits) -> taipan_runtime::HostLimits {
    let base = taipan_runtime::HostLimits::default();
    taipan_runtime::HostLimits {
        max_tcp_bytes: o.tcp_mb.map_or(base.max_tcp_bytes, |mb| mb * 1000 * 1000),
        ..base
    }
}
