//! The pool and the guest call driver, through `Worker`, with a hand-written
//! wasi:http component (`guest/handler.wat`) instead of a CPython build.

mod guest;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Empty};
use taipan_runtime::Worker;

use guest::{Guest, limits, settings};

const COUNT: &str = "(call $count (local.get $out) (i32.const 200))";
const SPIN: &str = "(call $spin)";
const TRAP: &str = "unreachable";

async fn get(worker: &Arc<Worker>) -> (StatusCode, Result<Bytes, String>) {
    let request = http::Request::get("http://example.com/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), worker.handle(request))
        .await
        .expect("the worker answers within 20 s");
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("{e:?}"));
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_sandbox_serves_the_next_request() {
    let guest = Guest::new();
    let worker = guest.worker(COUNT, settings());
    assert_eq!(get(&worker).await, (StatusCode::OK, Ok("1".into())));
    assert_eq!(worker.idle_count(), 1);
    // The same instance: its memory kept the count.
    assert_eq!(get(&worker).await, (StatusCode::OK, Ok("2".into())));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_reuse_every_request_gets_a_fresh_sandbox() {
    let guest = Guest::new();
    let worker = guest.worker(COUNT, settings().reuse_sandboxes(false));
    assert_eq!(get(&worker).await, (StatusCode::OK, Ok("1".into())));
    assert_eq!(get(&worker).await, (StatusCode::OK, Ok("1".into())));
    assert_eq!(worker.idle_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sandbox_retires_after_max_requests_per_sandbox() {
    let guest = Guest::new();
    let mut limits = limits();
    limits.max_requests_per_sandbox = 2;
    let worker = guest.worker(COUNT, taipan_runtime::WorkerSettings::new("test", limits));
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(get(&worker).await.1.unwrap());
    }
    assert_eq!(seen, ["1", "2", "1", "2", "1"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_is_a_500_and_its_sandbox_is_never_reused() {
    let guest = Guest::new();
    let worker = guest.worker(TRAP, settings());
    let (status, body) = get(&worker).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body.unwrap(), "the worker crashed\n");
    assert_eq!(worker.idle_count(), 0);
    // The next request gets a sandbox of its own and fails the same way.
    assert_eq!(get(&worker).await.0, StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_handler_that_spins_is_stopped_at_cpu_time() {
    let guest = Guest::new();
    let worker = guest.worker(SPIN, settings());
    let started = std::time::Instant::now();
    let (status, body) = get(&worker).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body.unwrap(), "the worker exceeded its CPU time limit\n");
    // The deadline is counted in epoch ticks from the tick the call
    // started in: up to one tick sooner than cpu_time.
    assert!(started.elapsed() >= limits().cpu_time - taipan_runtime::limits::EPOCH_TICK);
    assert_eq!(worker.idle_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_past_the_limit_is_refused_to_the_guest() {
    let guest = Guest::new();
    // 4 MiB allowed; one page is in use.
    let within = guest.worker("(call $grow (local.get $out) (i32.const 32))", settings());
    assert_eq!(get(&within).await.0, StatusCode::OK);
    let past = guest.worker("(call $grow (local.get $out) (i32.const 64))", settings());
    assert_eq!(get(&past).await.0, StatusCode::INSUFFICIENT_STORAGE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_past_max_response_body_is_cut_off() {
    let guest = Guest::new();
    let mut limits = limits();
    limits.max_response_body = 1000;
    let body = "(call $long (local.get $out) (i32.const 1000))";
    let settings = || taipan_runtime::WorkerSettings::new("test", limits.clone());
    let at = guest.worker(body, settings());
    assert_eq!(get(&at).await.1.unwrap().len(), 1000);
    let past = guest.worker("(call $long (local.get $out) (i32.const 1001))", settings());
    let (status, body) = get(&past).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.is_err(), "the body is cut off with an error: {body:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_sandboxes_and_the_queue_a_request_is_refused() {
    let guest = Guest::new();
    // One sandbox, no queue: while a request spins, the next is refused.
    let worker = guest.worker(SPIN, settings());
    let busy = tokio::spawn({
        let worker = worker.clone();
        async move { get(&worker).await.0 }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = get(&worker).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body.unwrap(), "the worker is at capacity, retry shortly\n");
    assert_eq!(busy.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
}

async fn call_object(worker: &Arc<Worker>, key: &str) -> (StatusCode, Bytes) {
    let request = http::Request::get("http://example.com/")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = worker.durable_object(key, request).await;
    let status = response.status();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn each_pinned_key_keeps_a_sandbox_of_its_own() {
    let guest = Guest::new();
    let mut limits = limits();
    limits.max_sandboxes = 4;
    let worker = guest.worker(COUNT, taipan_runtime::WorkerSettings::new("test", limits));
    assert_eq!(call_object(&worker, "a").await.1, "1");
    assert_eq!(call_object(&worker, "a").await.1, "2");
    assert_eq!(call_object(&worker, "b").await.1, "1");
    assert_eq!(call_object(&worker, "a").await.1, "3");
    assert_eq!(worker.live_objects(), 2);
    // The pool's sandboxes are apart from the objects'.
    assert_eq!(get(&worker).await.1.unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_key_whose_sandbox_trapped_starts_again_fresh() {
    let guest = Guest::new();
    // The third call traps (the count reaches 3), the fourth starts over.
    let body = "(call $count (local.get $out) (i32.const 200))
        (if (i32.eq (i32.load8_u (i32.const 0)) (i32.const 3)) (then unreachable))";
    let worker = guest.worker(body, settings());
    assert_eq!(call_object(&worker, "a").await.1, "1");
    assert_eq!(call_object(&worker, "a").await.1, "2");
    // The response was sent before the trap: the client sees it; the
    // sandbox is not kept.
    assert_eq!(call_object(&worker, "a").await.0, StatusCode::OK);
    assert_eq!(call_object(&worker, "a").await.1, "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn standby_sandboxes_are_warmed_ahead_and_refilled() {
    let guest = Guest::new();
    // Answers the warm-up with nothing, as the SDK does (its response slot
    // is not even dropped), and every later request with the count.
    let body = "(if (i32.eqz (i32.load8_u (i32.const 0)))
        (then (i32.store8 (i32.const 0) (i32.const 1)))
        (else (call $count (local.get $out) (i32.const 200))))";
    let mut limits = limits();
    limits.max_sandboxes = 2;
    let settings = taipan_runtime::WorkerSettings::new("test", limits)
        .reuse_sandboxes(false)
        .standby(1);
    let worker = guest.worker(body, settings);
    worker.start_standby();
    wait_for(|| worker.standby_count() == 1).await;
    // The sandbox served the warm-up first: this is its second request.
    assert_eq!(get(&worker).await.1.unwrap(), "2");
    wait_for(|| worker.standby_count() == 1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_worker_gives_its_sandboxes_up() {
    let guest = Guest::new();
    let mut limits = limits();
    limits.idle_timeout = Duration::from_secs(1);
    let worker = guest.worker(
        COUNT,
        taipan_runtime::WorkerSettings::new("test", limits.clone()),
    );
    worker.start_standby();
    assert_eq!(get(&worker).await.1.unwrap(), "1");
    assert_eq!(get(&worker).await.1.unwrap(), "2");
    // No request for the idle timeout: the warm sandbox is dropped (and its
    // slot's memory released); the next request starts from the snapshot.
    wait_for(|| worker.idle_count() == 0).await;
    assert_eq!(get(&worker).await.1.unwrap(), "1");

    // Standby sandboxes go too, and a dormant worker starts no more.
    let body = "(if (i32.eqz (i32.load8_u (i32.const 0)))
        (then (i32.store8 (i32.const 0) (i32.const 1)))
        (else (call $count (local.get $out) (i32.const 200))))";
    let settings = taipan_runtime::WorkerSettings::new("test", limits).standby(1);
    let worker = guest.worker(body, settings);
    worker.start_standby();
    wait_for(|| worker.standby_count() == 1).await;
    wait_for(|| worker.standby_count() == 0).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        worker.standby_count(),
        0,
        "a dormant worker starts no standby"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_warm_up_leaves_no_standby_and_requests_still_run() {
    let guest = Guest::new();
    // Answers 200 where the warm-up wants no response.
    let worker = guest.worker(COUNT, settings().standby(1));
    worker.start_standby();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(worker.standby_count(), 0);
    assert_eq!(get(&worker).await.1.unwrap(), "1");
}

async fn wait_for(condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not reached within 5 s");
}
