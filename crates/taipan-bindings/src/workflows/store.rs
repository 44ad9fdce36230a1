//! Where workflow instances live ([`WorkflowStore`]): each instance's
//! status, its completed steps and the events sent to it. On a single node
//! a SQLite file in the state folder ([`super::sqlite`]); in cluster mode
//! the cluster database ([`super::postgres`]), so every node sees every
//! instance and any node runs it.
//!
//! An instance is *leased* to one run at a time. Its *generation* fences
//! runs: a restart (and, in a cluster, the takeover of a lapsed lease)
//! bumps it, and a run of an older generation stores nothing more.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};

use crate::protocol::BindingError;

/// The op of the internal binding (`contract::WORKFLOW_BINDING`) a running
/// instance stores a step's record through.
pub const STEPS_OP: &str = "step";

/// What one run of an instance starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct RunState {
    pub id: String,
    /// The instance's generation when leased (see `put_step`, `finish`).
    pub generation: i64,
    pub params: Value,
    pub created_ms: i64,
    /// Step name → its stored record.
    pub steps: serde_json::Map<String, Value>,
    /// Events not consumed yet: `[{seq, type, payload}]`.
    pub events: Vec<Value>,
}

impl RunState {
    /// The newest event this run was given: one sent later must wake the
    /// instance again (`finish`).
    pub fn seen_seq(&self) -> i64 {
        self.events
            .iter()
            .filter_map(|e| e["seq"].as_i64())
            .max()
            .unwrap_or(0)
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEnd {
    Complete(Value),
    Errored(Value),
    /// Suspended until a time (ms since the epoch) or an event (then `None`
    /// and no timeout).
    Waiting(Option<i64>),
    /// The run could not be made (the worker is gone, the sandbox crashed):
    /// try again at this time.
    RetryAt(i64),
}

/// A user's change to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Terminate,
    Restart,
}

/// Where workflow instances live. Every operation is atomic: two runs
/// never lease the same instance at once, whatever the number of stores on
/// the same data.
pub trait WorkflowStore: Send + Sync + 'static {
    /// A new instance, `queued` and due now; an error if `id` is taken.
    fn create(
        &self,
        workflow: &str,
        id: &str,
        params: Value,
    ) -> BoxFuture<'static, Result<(), BindingError>>;

    /// `{status, output, error}` of an instance, or None if there is none.
    fn status(
        &self,
        workflow: &str,
        id: &str,
    ) -> BoxFuture<'static, Result<Option<Value>, BindingError>>;

    /// Apply a user's change; false if the instance does not exist. Pause
    /// and terminate leave finished instances alone; resume wakes a paused
    /// one now; restart drops its steps and events, bumps its generation
    /// (a run in flight may store nothing more) and makes it due now.
    fn control(
        &self,
        workflow: &str,
        id: &str,
        control: Control,
    ) -> BoxFuture<'static, Result<bool, BindingError>>;

    /// Deliver an event; an instance waiting makes it due now. False if
    /// the instance does not exist.
    fn send_event(
        &self,
        workflow: &str,
        id: &str,
        kind: &str,
        payload: Value,
    ) -> BoxFuture<'static, Result<bool, BindingError>>;

    /// Lease up to `max` instances due now (`queued`, `running` or
    /// `waiting`, their wake time passed, not leased), with what their runs
    /// start from: the steps stored so far and the events not consumed.
    fn lease_due(
        &self,
        workflow: &str,
        max: usize,
    ) -> BoxFuture<'static, Result<Vec<RunState>, BindingError>>;

    /// Keep the lease of the run of `state` while it goes on (see
    /// [`WorkflowStore::renew_every`]).
    fn renew(
        &self,
        workflow: &str,
        state: &RunState,
    ) -> BoxFuture<'static, Result<(), BindingError>>;

    /// Store a step's record (and mark the event it consumed) for a run of
    /// `generation`; whether the run may go on. A paused instance keeps the
    /// step (it completed) and stops; a terminated or restarted one (another
    /// generation) keeps nothing and stops.
    fn put_step(
        &self,
        workflow: &str,
        id: &str,
        generation: i64,
        name: &str,
        record: Value,
        consumed_event: Option<i64>,
    ) -> BoxFuture<'static, Result<bool, BindingError>>;

    /// Record how a run of `state` ended and release the instance (a run
    /// of an older generation changes nothing; a pause or termination made
    /// meanwhile stays). Waiting with an event sent after the run was
    /// leased wakes the instance at once.
    fn finish(
        &self,
        workflow: &str,
        state: &RunState,
        end: RunEnd,
    ) -> BoxFuture<'static, Result<(), BindingError>>;

    /// When the next instance of `workflow` is due (ms since the epoch, by
    /// this process's clock), leased ones when their lease lapses.
    fn next_due(&self, workflow: &str) -> BoxFuture<'static, Result<Option<i64>, BindingError>>;

    /// The longest an engine goes without looking at its instances: a
    /// create, event or resume through this process wakes it at once, one
    /// through another process (another node of a cluster) is found this
    /// long after at most.
    fn poll_interval(&self) -> Duration;

    /// How often a run renews its lease (None: leases do not lapse).
    fn renew_every(&self) -> Option<Duration>;
}

/// An instance's status as `instance.status()` gives it, from its stored
/// row (`output` and `error` as the JSON text stored): a leased instance
/// not marked running yet counts as running.
pub(crate) fn status_json(
    status: String,
    leased: bool,
    output: Option<String>,
    error: Option<String>,
) -> Value {
    let parse = |text: Option<String>| {
        text.and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .unwrap_or(Value::Null)
    };
    let status = if leased && status == "queued" {
        "running".into()
    } else {
        status
    };
    json!({"status": status, "output": parse(output), "error": parse(error)})
}
