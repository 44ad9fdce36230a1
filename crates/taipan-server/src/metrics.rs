//! What `taipan serve` tells Prometheus (`GET /metrics` on the admin
//! listener), through the `prometheus-client` crate (the Prometheus
//! project's own Rust client: typed families, OpenMetrics text).
//!
//! Counters and the latency histogram are updated as requests and deploys
//! happen; gauges (workers, sandboxes, Durable Objects, WebSockets) are read
//! from the registry when scraped, so they can never drift.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::registry::Registry as Workers;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    worker: String,
    /// `2xx`, `4xx`, …
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SandboxLabels {
    worker: String,
    /// `idle` (warm, reused) or `standby` (fresh, warmed ahead).
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `ok`, `unchanged` or `failed`.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    /// `in`: run here for another node; `out`: sent to the owner node.
    direction: String,
}

/// Request latency buckets: 0.25 ms to ~8 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// Process-lifetime metrics of one server.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<WorkerLabels, Histogram, fn() -> Histogram>,
    deploys: Family<OutcomeLabels, Counter>,
    workers: Gauge,
    sandboxes: Family<SandboxLabels, Gauge>,
    objects: Family<WorkerLabels, Gauge>,
    websockets: Gauge,
    forwarded: Family<DirectionLabels, Counter>,
    /// The forwarded-out count already added to `forwarded` (the count
    /// itself is kept by the placement).
    forwarded_out_seen: std::sync::atomic::AtomicU64,
    leases: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("taipan");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<WorkerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let deploys = Family::<OutcomeLabels, Counter>::default();
        let workers = Gauge::default();
        let sandboxes = Family::<SandboxLabels, Gauge>::default();
        let objects = Family::<WorkerLabels, Gauge>::default();
        let websockets = Gauge::default();
        let forwarded = Family::<DirectionLabels, Counter>::default();
        let leases = Gauge::default();
        registry.register(
            "forwarded_calls",
            "Durable Object calls forwarded between cluster nodes",
            forwarded.clone(),
        );
        registry.register(
            "leases_held",
            "Single-owner things (Durable Objects, D1 databases) this node holds",
            leases.clone(),
        );
        registry.register(
            "requests",
            "Requests answered by a worker, by status class",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from routing a request to its response head",
            latency.clone(),
        );
        registry.register("deploys", "Deploys, by outcome", deploys.clone());
        registry.register("workers", "Workers deployed and serving", workers.clone());
        registry.register(
            "sandboxes",
            "Sandboxes kept ready, by worker and state",
            sandboxes.clone(),
        );
        registry.register(
            "durable_objects_live",
            "Durable Objects in memory, by worker",
            objects.clone(),
        );
        registry.register(
            "websockets_open",
            "WebSockets open in this process",
            websockets.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            deploys,
            workers,
            sandboxes,
            objects,
            websockets,
            forwarded,
            forwarded_out_seen: Default::default(),
            leases,
        }
    }
}

impl Metrics {
    /// A request `worker` answered with `status` after `elapsed`.
    pub fn request(&self, worker: &str, status: u16, elapsed: Duration) {
        let status = format!("{}xx", status / 100);
        self.requests
            .get_or_create(&RequestLabels {
                worker: worker.to_string(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&WorkerLabels {
                worker: worker.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A call another node forwarded here was run.
    pub fn forwarded_in(&self) {
        self.forwarded
            .get_or_create(&DirectionLabels {
                direction: "in".into(),
            })
            .inc();
    }

    /// Cluster figures read at scrape time: leases held, calls forwarded
    /// out so far.
    pub fn cluster(&self, leases_held: usize, forwarded_out: u64) {
        use std::sync::atomic::Ordering;
        self.leases.set(leases_held as i64);
        let seen = self
            .forwarded_out_seen
            .swap(forwarded_out, Ordering::AcqRel);
        self.forwarded
            .get_or_create(&DirectionLabels {
                direction: "out".into(),
            })
            .inc_by(forwarded_out.saturating_sub(seen));
    }

    /// A deploy ended: `ok`, `unchanged` or `failed`.
    pub fn deploy(&self, outcome: &str) {
        self.deploys
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// The text a scrape gets (OpenMetrics), gauges read from `workers` now.
    pub fn encode(&self, workers: &Workers) -> String {
        let deployed = workers.list();
        self.workers.set(deployed.len() as i64);
        self.sandboxes.clear();
        self.objects.clear();
        for d in &deployed {
            let worker = d.version.worker.clone();
            for (state, count) in [
                ("idle", d.worker.idle_count()),
                ("standby", d.worker.standby_count()),
            ] {
                self.sandboxes
                    .get_or_create(&SandboxLabels {
                        worker: worker.clone(),
                        state: state.into(),
                    })
                    .set(count as i64);
            }
            self.objects
                .get_or_create(&WorkerLabels { worker })
                .set(d.worker.live_objects() as i64);
        }
        self.websockets
            .set(taipan_runtime::websocket::sockets().open() as i64);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_by_status_class_and_time_into_the_histogram() {
        let metrics = Metrics::default();
        metrics.request("app", 200, Duration::from_millis(3));
        metrics.request("app", 204, Duration::from_millis(1));
        metrics.request("app", 503, Duration::from_millis(40));
        metrics.deploy("ok");
        let mut text = String::new();
        encode(&mut text, &metrics.registry).unwrap();
        assert!(
            text.contains("taipan_requests_total{worker=\"app\",status=\"2xx\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("taipan_requests_total{worker=\"app\",status=\"5xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("taipan_request_duration_seconds_count{worker=\"app\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("taipan_deploys_total{outcome=\"ok\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
