//! Workflows (`examples/workflows`): steps run once across replays, a
//! retried step, a sleep, waiting for an event, terminate; and an instance
//! that survives `taipan serve` being killed mid-run.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, deploy_ok, example_copy};

const HOST: &str = "workflows-example.localhost";

fn call(
    server: &Server,
    host: Option<&str>,
    method: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let client = Server::client();
    let url = format!("{}{path}", server.url);
    let mut request = match method {
        "GET" => client.get(url),
        _ => client.post(url).body(body.to_string()),
    };
    if let Some(host) = host {
        request = request.header("host", host);
    }
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().unwrap()).unwrap_or(Value::Null),
    )
}

/// GET /orders/<id> until its status is `status` (30 s at most).
fn wait_for(server: &Server, host: Option<&str>, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let (_, order) = call(server, host, "GET", &format!("/orders/{id}"), Value::Null);
        if order["status"] == status {
            return order;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "order {id} never became {status}: {order}\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_order_retries_sleeps_waits_for_approval_and_completes_under_dev() {
    let dir = example_copy("workflows");
    let server = Server::dev(dir.path(), &[]);
    let order = json!({"id": "o1", "item": "book", "fail_charge": 1});
    assert_eq!(
        call(&server, None, "POST", "/orders", order),
        (201, json!({"id": "o1"}))
    );
    // The charge fails once, is retried a second later, then the cool-off
    // passes and the instance waits for the approval event.
    let waiting = wait_for(&server, None, "o1", "waiting");
    // Give the run time to reach wait_for_event after the sleep.
    std::thread::sleep(Duration::from_millis(1500));
    let approve = call(
        &server,
        None,
        "POST",
        "/orders/o1/approve",
        json!({"by": "ana"}),
    );
    assert_eq!(approve.0, 202, "{waiting}");
    let done = wait_for(&server, None, "o1", "complete");
    assert_eq!(
        done["output"],
        json!({
            "receipt": {"charged": true, "attempt": 2, "item": "book"},
            "approved_by": "ana",
            "shipment": "shipped book",
        })
    );
    // The run was replayed several times; each step's code ran once (the
    // charge twice: its retry).
    assert_eq!(
        done["ledger"],
        json!({"reserve": 1, "charge": 2, "ship": 1})
    );

    // Terminate one that waits; an unknown id is an error.
    call(
        &server,
        None,
        "POST",
        "/orders",
        json!({"id": "o2", "item": "pen"}),
    );
    wait_for(&server, None, "o2", "waiting");
    assert_eq!(
        call(&server, None, "POST", "/orders/o2/terminate", Value::Null).0,
        202
    );
    assert_eq!(
        wait_for(&server, None, "o2", "terminated")["ledger"]["ship"],
        0
    );
    let (status, missing) = call(&server, None, "GET", "/orders/nope", Value::Null);
    assert_eq!(status, 404);
    assert!(
        missing["error"].as_str().unwrap().contains("not_found"),
        "{missing}"
    );
    // A duplicate id is refused.
    let (status, _) = call(
        &server,
        None,
        "POST",
        "/orders",
        json!({"id": "o1", "item": "x"}),
    );
    assert_eq!(status, 500);
}

#[test]
fn a_sleeping_instance_survives_a_killed_server_and_never_reruns_a_step() {
    let data = tempfile::tempdir().unwrap();
    let dir = example_copy("workflows");
    let server = Server::serve(data.path(), &["--insecure-local"]);
    deploy_ok(&server, dir.path());
    let order = json!({"id": "k1", "item": "lamp", "cool_off_ms": 4000});
    assert_eq!(call(&server, Some(HOST), "POST", "/orders", order).0, 201);
    let sleeping = wait_for(&server, Some(HOST), "k1", "waiting");
    assert_eq!(
        sleeping["ledger"],
        json!({"reserve": 1, "charge": 1, "ship": 0})
    );
    // Killed mid-sleep: no chance to tidy up.
    drop(server);

    let server = Server::serve(data.path(), &["--insecure-local"]);
    // Approve before the sleep ends: the event waits for the instance.
    assert_eq!(
        call(
            &server,
            Some(HOST),
            "POST",
            "/orders/k1/approve",
            json!({"by": "bo"})
        )
        .0,
        202
    );
    let done = wait_for(&server, Some(HOST), "k1", "complete");
    assert_eq!(done["output"]["approved_by"], "bo");
    assert_eq!(
        done["ledger"],
        json!({"reserve": 1, "charge": 1, "ship": 1})
    );
}
