//! Queues, rate limiting and version metadata (`examples/queues`): a
//! producer and consumer in one worker under `taipan dev` and `taipan
//! serve`, retries into the dead-letter queue, the CLI, and a backlog that
//! survives a restart.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Server, example_copy, run, taipan, text_of};

/// GET /jobs/<id> until its status is `status` (20 s at most).
fn wait_for_job(server: &Server, id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let (code, body) = server.text(&format!("/jobs/{id}"));
        let job: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if code == 200 && job["status"] == status {
            return job;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "job {id} never became {status}: {code} {body}\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn submit(server: &Server, client: &str, body: &str) -> (u16, String) {
    let response = Server::client()
        .post(format!("{}/jobs", server.url))
        .header("x-client", client)
        .body(body.to_string())
        .send()
        .unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

#[test]
fn a_batch_is_consumed_retried_and_dead_lettered_under_dev() {
    let dir = example_copy("queues");
    let server = Server::dev(dir.path(), &[]);
    let jobs = json!([
        {"id": "a", "n": 3},
        {"id": "b", "n": 4, "fail_times": 1},
        {"id": "c", "n": 5, "fail_times": 9},
    ]);
    let (status, body) = submit(&server, "t", &jobs.to_string());
    assert_eq!(status, 202);
    let queued: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(queued, json!({"queued": ["a", "b", "c"]}));
    // sendBatch's three messages arrive as one batch (max_batch_timeout 1 s).
    assert_eq!(
        wait_for_job(&server, "a", "done"),
        json!({"status": "done", "attempts": 1, "result": 9, "batch": 3})
    );
    // b failed once, then succeeded on its second delivery.
    assert_eq!(wait_for_job(&server, "b", "done")["attempts"], 2);
    // c failed its 1 + max_retries (2) deliveries, then went to jobs-dlq,
    // whose consumer saw it as a new message.
    assert_eq!(
        wait_for_job(&server, "c", "dead"),
        json!({"status": "dead", "attempts": 1})
    );

    // `taipan queues send` into the local state of the running dev.
    let sent = run(&[
        "queues",
        "send",
        "jobs",
        r#"{"id": "cli", "n": 6}"#,
        "-c",
        dir.path().to_str().unwrap(),
    ]);
    assert!(sent.status.success(), "{}", text_of(&sent));
    assert_eq!(wait_for_job(&server, "cli", "done")["result"], 36);
    let listed = run(&["queues", "list", "-c", dir.path().to_str().unwrap()]);
    assert_eq!(text_of(&listed).trim(), "No messages in any queue.");

    // The version metadata binding: a UUID.
    let (_, root) = server.text("/");
    let version: Value = serde_json::from_str(&root).unwrap();
    assert_eq!(version["version"].as_str().unwrap().len(), 36, "{root}");
}

#[test]
fn a_rate_limited_client_gets_429_and_others_go_on() {
    let dir = example_copy("queues");
    let server = Server::dev(dir.path(), &[]);
    // The limit (20 a minute per client) is counted before the body is read.
    for _ in 0..20 {
        assert_eq!(submit(&server, "greedy", "not json").0, 400);
    }
    let (status, body) = submit(&server, "greedy", "not json");
    assert_eq!(
        (status, body.as_str()),
        (429, r#"{"error":"too many jobs, slow down"}"#)
    );
    assert_eq!(submit(&server, "polite", "not json").0, 400);
}

#[test]
fn a_backlog_sent_while_serve_is_down_is_delivered_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = example_copy("queues");
    let server = Server::serve(data.path(), &["--insecure-local"]);
    crate::harness::deploy_ok(&server, dir.path());
    let host = "queues-example.localhost";
    let post = |server: &Server, body: &str| {
        Server::client()
            .post(format!("{}/jobs", server.url))
            .header("host", host)
            .body(body.to_string())
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post(&server, r#"{"id": "first", "n": 2}"#), 202);
    // The version metadata binding: the deployed version's id.
    assert_eq!(server.host_text(host, "/").1, r#"{"version":"v1"}"#);
    let started = Instant::now();
    let done = json!({"status": "done", "attempts": 1, "result": 4, "batch": 1});
    while serde_json::from_str::<Value>(&server.host_text(host, "/jobs/first").1).ok()
        != Some(done.clone())
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let admin = server.admin.clone();
    server.stop();

    let data_dir = data.path().to_str().unwrap();
    for n in 1..=3 {
        let body = format!(r#"{{"id": "later-{n}", "n": {n}}}"#);
        let sent = run(&["queues", "send", "jobs", &body, "--data-dir", data_dir]);
        assert!(sent.status.success(), "{}", text_of(&sent));
    }
    let listed = text_of(&run(&["queues", "list", "--data-dir", data_dir]));
    assert!(
        listed.contains("jobs") && listed.contains(" 3 "),
        "{listed}"
    );

    let server = Server::serve(data.path(), &["--insecure-local"]);
    for n in 1..=3 {
        let started = Instant::now();
        loop {
            let (_, body) = server.host_text(host, &format!("/jobs/later-{n}"));
            let job: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if job["status"] == "done" {
                assert_eq!(job["result"], n * n);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{body}\n{}",
                server.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The admin API lists no backlog now, and accepts a message.
    let list = taipan()
        .args(["queues", "list", "--remote", "--server", &server.admin])
        .output()
        .unwrap();
    assert_eq!(
        text_of(&list).trim(),
        "No messages in any queue.",
        "{admin}"
    );
    let sent = taipan()
        .args([
            "queues",
            "send",
            "jobs",
            r#"{"id": "remote", "n": 9}"#,
            "--remote",
            "--server",
            &server.admin,
        ])
        .output()
        .unwrap();
    assert!(sent.status.success(), "{}", text_of(&sent));
    let started = Instant::now();
    while !server.host_text(host, "/jobs/remote").1.contains("81") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const PRODUCER: &str = r#"
from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if request.method == "POST":
            await self.env.OUT.send(await request.text(), content_type="text")
            return Response("sent\n")
        return await self.env.CONSUMER.fetch(request)
"#;

const CONSUMER: &str = r#"
from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(await self.env.SEEN.get("last") or "none")

    async def queue(self, batch):
        for message in batch.messages:
            await self.env.SEEN.put("last", f"{batch.queue}: {message.body}")
"#;

#[test]
fn a_producer_and_its_consumer_can_be_two_projects_under_dev() {
    let producer = crate::harness::project(&[
        (
            "wrangler.toml",
            &format!(
                "{}[[queues.producers]]\nbinding = \"OUT\"\nqueue = \"hand-off\"\n[[services]]\nbinding = \"CONSUMER\"\nservice = \"consumer\"\n",
                crate::harness::CONFIG
            ),
        ),
        ("src/entry.py", PRODUCER),
    ]);
    let consumer = crate::harness::project(&[
        (
            "wrangler.toml",
            &format!(
                "{}[[queues.consumers]]\nqueue = \"hand-off\"\nmax_batch_timeout = 0\n[[kv_namespaces]]\nbinding = \"SEEN\"\nid = \"seen\"\n",
                crate::harness::CONFIG.replace("name = \"t\"", "name = \"consumer\"")
            ),
        ),
        ("src/entry.py", CONSUMER),
    ]);
    let (first, second) = (
        producer.path().join("wrangler.toml"),
        consumer.path().join("wrangler.toml"),
    );
    let server = Server::dev(
        producer.path(),
        &[
            "-c",
            first.to_str().unwrap(),
            "-c",
            second.to_str().unwrap(),
        ],
    );
    assert_eq!(server.text("/").1, "none");
    let sent = Server::client()
        .post(format!("{}/", server.url))
        .body("hello across")
        .send()
        .unwrap();
    assert_eq!(sent.status(), 200);
    let started = Instant::now();
    while server.text("/").1 != "hand-off: hello across" {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_batch_cut_short_by_sigkill_is_delivered_again_after_the_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = example_copy("queues");
    let server = Server::serve(data.path(), &["--insecure-local"]);
    crate::harness::deploy_ok(&server, dir.path());
    let host = "queues-example.localhost";
    // Ten jobs in one batch, 400 ms of work each: the server is killed mid-batch.
    let jobs: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("slow-{i}"), "n": i, "work_ms": 400}))
        .collect();
    let response = Server::client()
        .post(format!("{}/jobs", server.url))
        .header("host", host)
        .body(Value::Array(jobs).to_string())
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let started = Instant::now();
    while !server.host_text(host, "/jobs/slow-1").1.contains("done") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(server); // SIGKILL: the batch is neither acked nor retried

    let server = Server::serve(data.path(), &["--insecure-local"]);
    for i in 0..10 {
        let started = Instant::now();
        loop {
            let (_, body) = server.host_text(host, &format!("/jobs/slow-{i}"));
            let job: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if job["status"] == "done" && job["attempts"] == 2 {
                // Nothing lost; the unacknowledged batch came again (at least once).
                assert_eq!(job["result"], i * i);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "slow-{i}: {body}\n{}",
                server.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
