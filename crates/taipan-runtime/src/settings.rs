//! How a worker runs beyond its build: one builder that dev, serve and bench
//! all start from.

use std::sync::Arc;

use crate::host::{HostLimits, WorkerHost};
use crate::limits::Limits;
use crate::log::LogSink;

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
    /// Load dormant: the compiled code only, as an idle worker keeps it (no
    /// memory image expanded, no standby) until the first request. For a
    /// server bringing back every worker it serves at start-up.
    pub start_dormant: bool,
}

impl WorkerSettings {
    /// The settings dev, serve and bench share; each changes what differs
    /// with the methods below. Defaults: no bindings (vars `{}`, nothing a
    /// binding call reaches), warm sandboxes reused, no standby, the
    /// worker's output to `tracing`.
    pub fn new(name: impl Into<String>, limits: Limits) -> Self {
        Self {
            name: name.into(),
            vars_json: "{}".into(),
            bindings_json: "{}".into(),
            host: Arc::new(crate::host::NoHost),
            host_limits: HostLimits::default(),
            dev: false,
            limits,
            reuse_sandboxes: true,
            log: Arc::new(crate::log::TracingSink),
            standby_sandboxes: 0,
            start_dormant: false,
        }
    }

    /// Load dormant (`start_dormant`).
    pub fn start_dormant(mut self) -> Self {
        self.start_dormant = true;
        self
    }

    /// The worker's vars (JSON object), its bindings (`{name: kind}`) and
    /// what their calls reach.
    pub fn env(
        mut self,
        vars_json: String,
        bindings_json: String,
        host: Arc<dyn WorkerHost>,
    ) -> Self {
        (self.vars_json, self.bindings_json, self.host) = (vars_json, bindings_json, host);
        self
    }

    /// Dev mode: tracebacks in 500 responses too.
    pub fn dev(mut self) -> Self {
        self.dev = true;
        self
    }

    /// Per-request limits on what the guest asks of the host.
    pub fn host_limits(mut self, limits: HostLimits) -> Self {
        self.host_limits = limits;
        self
    }

    pub fn reuse_sandboxes(mut self, reuse: bool) -> Self {
        self.reuse_sandboxes = reuse;
        self
    }

    pub fn standby(mut self, sandboxes: usize) -> Self {
        self.standby_sandboxes = sandboxes;
        self
    }

    pub fn log(mut self, log: Arc<dyn LogSink>) -> Self {
        self.log = log;
        self
    }
}
