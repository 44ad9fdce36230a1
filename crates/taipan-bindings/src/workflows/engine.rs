//! Running a worker's workflows: for each `[[workflows]]` whose class this
//! worker defines, a task that leases the instances due, replays each one's
//! `run` in a sandbox (renewing its lease meanwhile, where leases lapse),
//! and records how it ended. One task per workflow, for as long as the
//! worker's bindings live; up to `MAX_CONCURRENT_RUNS` runs at once. It
//! looks for due instances when woken (a create, event or resume through
//! this process) and at least every [`WorkflowStore::poll_interval`] (one
//! through another node of a cluster).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use super::MAX_CONCURRENT_RUNS;
use super::store::{RunEnd, RunState, WorkflowStore};
use crate::Services;
use crate::alarms::now_ms;
use crate::tasks::Tasks;

/// A run that could not be made (the worker missing, the sandbox crashed)
/// is tried again after this.
pub const RETRY_AFTER_FAILURE_MS: i64 = 2_000;

/// Runs one replay of an instance: answers the guest's
/// `{"status": "complete"|"errored"|"waiting", …}`.
pub trait Runner: Send + Sync + 'static {
    fn ready(&self) -> bool;
    fn run(&self, class: &str, id: &str, body: Value) -> BoxFuture<'static, Result<Value, String>>;
}

/// One workflow this worker runs.
#[derive(Clone)]
pub struct Defined {
    pub workflow: String,
    pub class: String,
    pub wake: Arc<Notify>,
}

/// Start the engines of `defined` (they stop when the result is dropped,
/// with the worker version's bindings).
pub fn start(
    store: &Arc<dyn WorkflowStore>,
    defined: Vec<Defined>,
    runner: Arc<dyn Runner>,
) -> Tasks {
    Tasks::spawn_all(
        defined
            .into_iter()
            .map(|d| drive(store.clone(), d, runner.clone())),
    )
}

async fn drive(store: Arc<dyn WorkflowStore>, defined: Defined, runner: Arc<dyn Runner>) {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_RUNS));
    loop {
        if !runner.ready() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        // A free slot first (no slot: wait for one, not spin), then
        // lease, run and record in a task of its own: stopping the engine
        // (a redeploy) never strands an instance it leased.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let due = match store.next_due(&defined.workflow).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(
                    workflow = defined.workflow,
                    "reading the workflow's instances failed: {}",
                    e.message
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if due.is_some_and(|at| at <= now_ms()) {
            let (leased, lease_done) = tokio::sync::oneshot::channel();
            let (store, defined, runner) = (store.clone(), defined.clone(), runner.clone());
            tokio::spawn(async move {
                let state = store.lease_due(&defined.workflow, 1).await;
                let _ = leased.send(());
                if let Some(state) = state.ok().and_then(|mut due| due.pop()) {
                    let end = run_leased(&*store, &defined, &*runner, &state).await;
                    if let Err(e) = store.finish(&defined.workflow, &state, end).await {
                        tracing::warn!(
                            workflow = defined.workflow,
                            "recording instance {} failed: {}",
                            state.id,
                            e.message
                        );
                    }
                }
                drop(permit);
                defined.wake.notify_one();
            });
            // Read what is due again once that task holds its instance.
            let _ = lease_done.await;
            continue;
        }
        drop(permit);
        let most = store.poll_interval();
        let sleep = match due {
            Some(at) => Duration::from_millis((at - now_ms()).max(0) as u64).min(most),
            None => most,
        };
        tokio::select! {
            _ = defined.wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Run `state`, keeping its lease while the run goes on (else, in a
/// cluster, another node would take the instance mid-run).
async fn run_leased(
    store: &dyn WorkflowStore,
    defined: &Defined,
    runner: &dyn Runner,
    state: &RunState,
) -> RunEnd {
    let run = run_once(defined, runner, state.clone());
    tokio::pin!(run);
    let Some(every) = store.renew_every() else {
        return run.await;
    };
    loop {
        tokio::select! {
            end = &mut run => return end,
            _ = tokio::time::sleep(every) => {
                if let Err(e) = store.renew(&defined.workflow, state).await {
                    tracing::warn!(
                        workflow = defined.workflow,
                        "renewing the lease of instance {} failed (another node runs it again \
                         once it lapses): {}",
                        state.id,
                        e.message
                    );
                }
            }
        }
    }
}

/// One replay of an instance, and how it ended.
async fn run_once(defined: &Defined, runner: &dyn Runner, state: RunState) -> RunEnd {
    let body = json!({
        "workflow": defined.workflow,
        "generation": state.generation,
        "event": {"payload": state.params, "timestamp": state.created_ms, "instanceId": state.id},
        "steps": state.steps,
        "events": state.events,
    });
    match runner.run(&defined.class, &state.id, body).await {
        Ok(answer) => end_of(&answer).unwrap_or_else(|| {
            tracing::warn!(
                workflow = defined.workflow,
                "instance {}: an answer it could not read: {answer}",
                state.id
            );
            RunEnd::RetryAt(now_ms() + RETRY_AFTER_FAILURE_MS)
        }),
        Err(why) => {
            tracing::warn!(
                workflow = defined.workflow,
                "instance {}: the run failed ({why}); trying again",
                state.id
            );
            RunEnd::RetryAt(now_ms() + RETRY_AFTER_FAILURE_MS)
        }
    }
}

/// The guest's answer as a [`RunEnd`].
pub fn end_of(answer: &Value) -> Option<RunEnd> {
    match answer["status"].as_str()? {
        "complete" => Some(RunEnd::Complete(answer["output"].clone())),
        "errored" => Some(RunEnd::Errored(answer["error"].clone())),
        "waiting" => Some(RunEnd::Waiting(answer["until"].as_i64())),
        _ => None,
    }
}

/// Runs in a worker on this server, found by name at each run.
pub struct ToWorker {
    pub services: Arc<dyn Services>,
    pub worker: String,
}

impl Runner for ToWorker {
    fn ready(&self) -> bool {
        self.services.worker(&self.worker).is_some()
    }

    fn run(&self, class: &str, id: &str, body: Value) -> BoxFuture<'static, Result<Value, String>> {
        let worker = self.services.worker(&self.worker);
        let (class, id) = (class.to_string(), id.to_string());
        Box::pin(async move {
            let worker = worker.ok_or("the worker is not running")?;
            let response = worker.workflow(&class, &id, body.to_string().into()).await;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e:?}"))?
                .to_bytes();
            if !status.is_success() {
                let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
                return Err(format!("the run answered {status}: {}", text.trim()));
            }
            serde_json::from_slice(&bytes).map_err(|e| format!("the answer is not JSON: {e}"))
        })
    }
}
