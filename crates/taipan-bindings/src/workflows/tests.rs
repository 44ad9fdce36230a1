//! The workflow stores: what both backends do (each behaviour runs on
//! SQLite and on PostgreSQL), and what several nodes on one PostgreSQL
//! add: leases taken once across nodes, lapsing with their node, renewed
//! while a run lives, and instances created through one node run by
//! another's engine.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use serde_json::{Value, json};
use taipan_cluster::testing::TestDatabase;
use tokio::sync::Notify;

use super::engine::{self, Defined, Runner};
use super::postgres::{POLL_INTERVAL, PostgresWorkflowStore};
use super::sqlite::SqliteWorkflowStore;
use super::store::{Control, RunEnd, RunState, WorkflowStore};
use crate::alarms::now_ms;
use crate::store::Database;

/// What keeps a store's data alive for the test.
enum Keep {
    Folder(#[allow(dead_code)] tempfile::TempDir),
    Database(#[allow(dead_code)] TestDatabase),
}

async fn sqlite() -> (Arc<dyn WorkflowStore>, Keep) {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("w.sqlite")).unwrap();
    (SqliteWorkflowStore::open(db).unwrap(), Keep::Folder(dir))
}

async fn postgres() -> (Arc<dyn WorkflowStore>, Keep) {
    let database = TestDatabase::create().await;
    let store = PostgresWorkflowStore::new(database.connect().await);
    (store, Keep::Database(database))
}

/// Each behaviour as a test on each backend
/// (`workflows::tests::sqlite::<behaviour>`, `…::postgres::<behaviour>`).
macro_rules! on_both_backends {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let (store, _keep) = super::sqlite().await;
                    super::$behaviour(&*store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $behaviour() {
                    let (store, _keep) = super::postgres().await;
                    super::$behaviour(&*store).await;
                }
            )*
        }
    };
}

on_both_backends!(
    an_instance_runs_waits_gets_its_event_and_completes,
    an_event_sent_during_a_run_wakes_the_instance_when_the_run_waits,
    a_restart_during_a_run_stops_the_old_run_from_storing_anything,
    pause_stops_a_run_and_holds_the_instance_until_resumed,
    a_sleeping_instance_is_due_at_its_time,
);

async fn lease_one(store: &dyn WorkflowStore) -> Option<RunState> {
    store.lease_due("wf", 1).await.unwrap().pop()
}

async fn an_instance_runs_waits_gets_its_event_and_completes(store: &dyn WorkflowStore) {
    store.create("wf", "a", json!({"n": 1})).await.unwrap();
    assert!(
        store.create("wf", "a", json!({})).await.is_err(),
        "ids are unique"
    );
    let run = lease_one(store).await.unwrap();
    assert_eq!(run.params, json!({"n": 1}));
    assert!(lease_one(store).await.is_none(), "leased once");
    assert_eq!(
        store.status("wf", "a").await.unwrap().unwrap()["status"],
        "running"
    );

    assert!(
        store
            .put_step("wf", "a", 0, "do:x#1", json!({"value": 5}), None)
            .await
            .unwrap()
    );
    store
        .finish("wf", &run, RunEnd::Waiting(None))
        .await
        .unwrap();
    assert!(lease_one(store).await.is_none(), "waits for its event");
    assert!(
        store
            .send_event("wf", "a", "go", json!({"ok": true}))
            .await
            .unwrap()
    );
    let run = lease_one(store).await.unwrap();
    assert_eq!(run.steps["do:x#1"], json!({"value": 5}));
    let seq = run.events[0]["seq"].as_i64().unwrap();
    store
        .put_step("wf", "a", 0, "event:go#1", json!({"value": 1}), Some(seq))
        .await
        .unwrap();
    store
        .finish("wf", &run, RunEnd::Complete(json!("done")))
        .await
        .unwrap();
    let status = store.status("wf", "a").await.unwrap().unwrap();
    assert_eq!(
        (status["status"].clone(), status["output"].clone()),
        (json!("complete"), json!("done"))
    );
    assert!(
        !store
            .send_event("wf", "missing", "go", Value::Null)
            .await
            .unwrap()
    );
}

async fn an_event_sent_during_a_run_wakes_the_instance_when_the_run_waits(
    store: &dyn WorkflowStore,
) {
    store.create("wf", "a", json!({})).await.unwrap();
    let run = lease_one(store).await.unwrap();
    assert!(run.events.is_empty());
    store
        .send_event("wf", "a", "go", Value::Null)
        .await
        .unwrap();
    // The run, which never saw the event, waits an hour for it.
    store
        .finish("wf", &run, RunEnd::Waiting(Some(now_ms() + 3_600_000)))
        .await
        .unwrap();
    let again = lease_one(store).await.expect("due now, not in an hour");
    assert_eq!(again.events[0]["type"], "go");
}

async fn a_restart_during_a_run_stops_the_old_run_from_storing_anything(store: &dyn WorkflowStore) {
    store.create("wf", "a", json!({})).await.unwrap();
    let old = lease_one(store).await.unwrap();
    assert!(store.control("wf", "a", Control::Restart).await.unwrap());
    assert!(
        !store
            .put_step(
                "wf",
                "a",
                old.generation,
                "do:x#1",
                json!({"value": 1}),
                None
            )
            .await
            .unwrap()
    );
    let new = lease_one(store)
        .await
        .expect("the restarted run starts at once");
    assert_eq!(new.generation, old.generation + 1);
    assert!(new.steps.is_empty());
    store
        .finish("wf", &old, RunEnd::Complete(json!("old")))
        .await
        .unwrap();
    assert_eq!(
        store.status("wf", "a").await.unwrap().unwrap()["status"],
        "running",
        "the old run's end is ignored"
    );
    store
        .finish("wf", &new, RunEnd::Complete(json!("new")))
        .await
        .unwrap();
    assert_eq!(
        store.status("wf", "a").await.unwrap().unwrap()["output"],
        "new"
    );
}

/// Finish `run` as waiting, check the pause holds, resume: the steps the
/// next run starts from.
async fn lease_steps_after_resume(
    store: &dyn WorkflowStore,
    run: &RunState,
) -> serde_json::Map<String, Value> {
    store
        .finish("wf", run, RunEnd::Waiting(None))
        .await
        .unwrap();
    assert_eq!(
        store.status("wf", "a").await.unwrap().unwrap()["status"],
        "paused"
    );
    assert!(lease_one(store).await.is_none());
    store.control("wf", "a", Control::Resume).await.unwrap();
    let next = lease_one(store).await.unwrap();
    let steps = next.steps.clone();
    store.finish("wf", &next, RunEnd::RetryAt(0)).await.unwrap();
    steps
}

async fn pause_stops_a_run_and_holds_the_instance_until_resumed(store: &dyn WorkflowStore) {
    store.create("wf", "a", json!({})).await.unwrap();
    let run = lease_one(store).await.unwrap();
    assert!(store.control("wf", "a", Control::Pause).await.unwrap());
    assert!(
        !store
            .put_step("wf", "a", 0, "do:x#1", json!({"value": 1}), None)
            .await
            .unwrap(),
        "the run stops"
    );
    assert_eq!(
        lease_steps_after_resume(store, &run).await["do:x#1"],
        json!({"value": 1}),
        "the completed step is kept"
    );
    let run = lease_one(store).await.unwrap();
    store.control("wf", "a", Control::Terminate).await.unwrap();
    store
        .finish("wf", &run, RunEnd::Complete(Value::Null))
        .await
        .unwrap();
    assert_eq!(
        store.status("wf", "a").await.unwrap().unwrap()["status"],
        "terminated"
    );
    assert!(!store.control("wf", "nope", Control::Pause).await.unwrap());
}

async fn a_sleeping_instance_is_due_at_its_time(store: &dyn WorkflowStore) {
    assert_eq!(store.next_due("wf").await.unwrap(), None);
    store.create("wf", "a", json!({})).await.unwrap();
    assert!(store.next_due("wf").await.unwrap().unwrap() <= now_ms());
    let run = lease_one(store).await.unwrap();
    let wake = now_ms() + 60_000;
    store
        .finish("wf", &run, RunEnd::Waiting(Some(wake)))
        .await
        .unwrap();
    assert_eq!(store.next_due("wf").await.unwrap(), Some(wake));
    assert!(lease_one(store).await.is_none(), "not due for a minute");
    assert_eq!(
        store.status("wf", "a").await.unwrap().unwrap()["status"],
        "waiting"
    );
    assert_eq!(store.next_due("other").await.unwrap(), None);
    // An event wakes it now; a terminated instance is never due again.
    store
        .send_event("wf", "a", "go", Value::Null)
        .await
        .unwrap();
    assert!(store.next_due("wf").await.unwrap().unwrap() <= now_ms());
    assert!(store.control("wf", "a", Control::Terminate).await.unwrap());
    assert_eq!(store.next_due("wf").await.unwrap(), None);
    assert!(lease_one(store).await.is_none());
}

/// Two nodes' stores on one cluster database, with leases of `lease`.
async fn two_nodes(
    lease: Duration,
) -> (
    Arc<PostgresWorkflowStore>,
    Arc<PostgresWorkflowStore>,
    TestDatabase,
) {
    let database = TestDatabase::create().await;
    let a = PostgresWorkflowStore::with_lease(database.connect().await, lease);
    let b = PostgresWorkflowStore::with_lease(database.connect().await, lease);
    (a, b, database)
}

#[tokio::test]
async fn an_instance_created_through_one_node_is_run_by_another() {
    let (a, b, _database) = two_nodes(Duration::from_secs(30)).await;
    a.create("wf", "x", json!({"n": 1})).await.unwrap();
    let run = lease_one(&*b).await.expect("b sees a's instance");
    assert_eq!((run.params.clone(), run.generation), (json!({"n": 1}), 0));
    assert!(lease_one(&*a).await.is_none(), "leased by b");
    let due = a.next_due("wf").await.unwrap().unwrap();
    assert!(
        due > now_ms() + 25_000,
        "due again only when b's lease lapses: {due}"
    );
    assert!(
        b.put_step("wf", "x", 0, "do:s#1", json!({"value": 2}), None)
            .await
            .unwrap()
    );
    assert!(a.send_event("wf", "x", "go", json!(7)).await.unwrap());
    b.finish("wf", &run, RunEnd::Waiting(None)).await.unwrap();
    // The event came after b's run was leased: the instance is due again.
    let again = lease_one(&*a).await.expect("woken by the event");
    assert_eq!(again.steps["do:s#1"], json!({"value": 2}));
    assert_eq!(again.events[0]["payload"], json!(7));
    a.finish("wf", &again, RunEnd::Complete(json!("ok")))
        .await
        .unwrap();
    let status = b.status("wf", "x").await.unwrap().unwrap();
    assert_eq!(
        (status["status"].clone(), status["output"].clone()),
        (json!("complete"), json!("ok"))
    );
}

/// Nodes leasing at once: each instance is leased by exactly one caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_leases_never_share_an_instance() {
    const INSTANCES: usize = 200;
    let (a, b, _database) = two_nodes(Duration::from_secs(30)).await;
    for n in 0..INSTANCES {
        a.create("wf", &format!("i{n}"), json!(n)).await.unwrap();
    }
    let mut leasers = Vec::new();
    for (n, node) in [a.clone(), b.clone()].into_iter().enumerate() {
        // Several engines' worth of callers per node.
        for _ in 0..4 {
            let node = node.clone();
            leasers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = node.lease_due("wf", 3).await.unwrap();
                    if batch.is_empty()
                        && node
                            .next_due("wf")
                            .await
                            .unwrap()
                            .is_none_or(|at| at > now_ms())
                    {
                        return (n, got);
                    }
                    got.extend(batch.into_iter().map(|s| s.id));
                }
            }));
        }
    }
    let mut ids = Vec::new();
    let mut per_node = [0; 2];
    for leaser in leasers {
        let (n, got) = leaser.await.unwrap();
        per_node[n] += got.len();
        ids.extend(got);
    }
    let leased = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), leased, "an instance was leased twice");
    assert_eq!(leased, INSTANCES, "every instance leased");
    assert!(
        per_node.iter().all(|&n| n > 0),
        "both nodes leased: {per_node:?}"
    );
}

/// A node that dies (or stalls) mid-run: once its lease lapses another
/// node leases the instance, a generation on, with the steps stored so
/// far; the stale run stores nothing and records no end.
#[tokio::test]
async fn an_expired_lease_is_leased_again_and_the_stale_run_stores_nothing() {
    let lease = Duration::from_millis(600);
    let (a, b, _database) = two_nodes(lease).await;
    a.create("wf", "x", json!({})).await.unwrap();
    let stale = lease_one(&*a).await.unwrap();
    assert!(
        a.put_step("wf", "x", 0, "do:one#1", json!({"value": 1}), None)
            .await
            .unwrap()
    );
    assert!(lease_one(&*b).await.is_none(), "a's lease holds");

    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert!(b.next_due("wf").await.unwrap().unwrap() <= now_ms());
    let taken = lease_one(&*b).await.expect("the lapsed lease is taken");
    assert_eq!(taken.generation, stale.generation + 1);
    assert_eq!(
        taken.steps["do:one#1"],
        json!({"value": 1}),
        "the steps are kept"
    );

    // The stale run comes back: fenced out.
    assert!(
        !a.put_step(
            "wf",
            "x",
            stale.generation,
            "do:two#1",
            json!({"value": 2}),
            None
        )
        .await
        .unwrap()
    );
    a.renew("wf", &stale).await.unwrap();
    a.finish("wf", &stale, RunEnd::Complete(json!("stale")))
        .await
        .unwrap();
    assert_eq!(
        a.status("wf", "x").await.unwrap().unwrap()["status"],
        "running"
    );
    assert!(lease_one(&*a).await.is_none(), "still b's");

    b.finish("wf", &taken, RunEnd::RetryAt(0)).await.unwrap();
    let next = lease_one(&*a).await.unwrap();
    assert_eq!(
        next.generation, taken.generation,
        "released, not lapsed: no bump"
    );
    assert!(
        !next.steps.contains_key("do:two#1"),
        "the stale step was not stored"
    );
    a.finish("wf", &next, RunEnd::Complete(json!("new")))
        .await
        .unwrap();
    assert_eq!(b.status("wf", "x").await.unwrap().unwrap()["output"], "new");
}

/// A renewed lease outlives its first term; one no longer renewed lapses.
#[tokio::test]
async fn a_renewed_lease_holds_until_it_is_no_longer_renewed() {
    let lease = Duration::from_millis(600);
    let (a, b, _database) = two_nodes(lease).await;
    a.create("wf", "x", json!({})).await.unwrap();
    let run = lease_one(&*a).await.unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        a.renew("wf", &run).await.unwrap();
        assert!(lease_one(&*b).await.is_none(), "renewed");
    }
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert_eq!(lease_one(&*b).await.unwrap().generation, run.generation + 1);
}

/// Answers every run `complete` after `delay`, recording each instance it ran.
struct Completes {
    delay: Duration,
    ran: Mutex<Vec<String>>,
}

impl Runner for Completes {
    fn ready(&self) -> bool {
        true
    }

    fn run(
        &self,
        _class: &str,
        id: &str,
        _body: Value,
    ) -> BoxFuture<'static, Result<Value, String>> {
        self.ran.lock().unwrap().push(id.to_string());
        let delay = self.delay;
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            Ok(json!({"status": "complete", "output": "done"}))
        })
    }
}

fn defined() -> Vec<Defined> {
    vec![Defined {
        workflow: "wf".into(),
        class: "Flow".into(),
        wake: Arc::new(Notify::new()),
    }]
}

/// Wait until `workflow`'s instance `id` completes, at most `within`.
async fn completes(store: &dyn WorkflowStore, id: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let status = store.status("wf", id).await.unwrap().unwrap();
        if status["status"] == "complete" {
            return;
        }
        assert!(
            started.elapsed() < within,
            "not complete within {within:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An instance created through another node wakes no engine here: the
/// engine finds it by polling, within its poll interval.
#[tokio::test]
async fn an_engine_runs_what_another_node_created_by_polling() {
    let (a, b, _database) = two_nodes(Duration::from_secs(30)).await;
    let runner = Arc::new(Completes {
        delay: Duration::ZERO,
        ran: Mutex::default(),
    });
    let b_store: Arc<dyn WorkflowStore> = b;
    let _engines = engine::start(&b_store, defined(), runner.clone());
    // The engine has looked once and sleeps now.
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.create("wf", "x", json!({})).await.unwrap();
    completes(&*a, "x", POLL_INTERVAL + Duration::from_millis(700)).await;
    assert_eq!(*runner.ran.lock().unwrap(), ["x"]);
}

/// A run longer than the lease keeps it (its engine renews it): no other
/// node takes the instance mid-run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_renews_the_lease_of_a_long_run() {
    let lease = Duration::from_millis(600);
    let (a, b, _database) = two_nodes(lease).await;
    let runner = Arc::new(Completes {
        delay: lease * 4,
        ran: Mutex::default(),
    });
    let a_store: Arc<dyn WorkflowStore> = a;
    let defined = defined();
    let _engines = engine::start(&a_store, defined.clone(), runner.clone());
    a_store.create("wf", "x", json!({})).await.unwrap();
    defined[0].wake.notify_one();
    let started = Instant::now();
    while runner.ran.lock().unwrap().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the run never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Across several lease terms, until the run ends.
    while a_store.status("wf", "x").await.unwrap().unwrap()["status"] == "running" {
        assert!(lease_one(&*b).await.is_none(), "taken mid-run");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    completes(&*b, "x", Duration::from_secs(1)).await;
    assert_eq!(runner.ran.lock().unwrap().len(), 1, "run once");
}
