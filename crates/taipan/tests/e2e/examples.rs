//! Every example in `examples/` served by `taipan dev` and checked over HTTP.

use std::thread;

use sha2::{Digest, Sha256};

use crate::harness::{Server, example_copy, repo_root};

fn example(name: &str) -> Server {
    Server::dev(&repo_root().join("examples").join(name), &[])
}

#[test]
fn hello_legacy_on_fetch() {
    let server = example("hello");
    let response = server.get("/");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain;charset=UTF-8"
    );
    assert_eq!(response.text().unwrap(), "Hello world!");
}

#[test]
fn hello_class_with_jsonc_vars() {
    let server = example("hello-class");
    assert_eq!(
        server.text("/"),
        (200, "Hello from a WorkerEntrypoint!".to_string())
    );
}

#[test]
fn echo_returns_method_url_headers_and_body() {
    let server = example("echo");
    let client = Server::client();
    let response = client
        .post(format!("{}/path/x?q=1&r=%20two", server.url))
        .header("X-Custom", "a")
        .header("X-Custom", "b")
        .header("X-Case", "MiXeD")
        .body("hello body")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: serde_json::Value = response.json().unwrap();
    assert_eq!(json["method"], "POST");
    assert_eq!(json["url"], format!("{}/path/x?q=1&r=%20two", server.url));
    assert_eq!(json["body"], "hello body");
    let headers: Vec<(String, String)> = serde_json::from_value(json["headers"].clone()).unwrap();
    let custom: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k == "x-custom")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(custom, ["a", "b"]);
    assert!(headers.contains(&("x-case".into(), "MiXeD".into())));
    assert!(headers.iter().any(|(k, _)| k == "host"));

    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let response = client
            .request(method.parse().unwrap(), format!("{}/m", server.url))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        assert_eq!(
            response.json::<serde_json::Value>().unwrap()["method"],
            method
        );
    }
    let head = client.head(format!("{}/", server.url)).send().unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.text().unwrap(), "");
}

#[test]
fn echo_passes_100_mb_bodies_both_ways() {
    let server = example("echo");
    let body: Vec<u8> = (0..100_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let expected = Sha256::digest(&body);
    let response = Server::client()
        .post(format!("{}/raw", server.url))
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-length"], "100000000");
    let bytes = response.bytes().unwrap();
    assert_eq!(bytes.len(), 100_000_000);
    assert_eq!(Sha256::digest(&bytes), expected);
}

#[test]
fn multi_module_lazy_imports_and_warm_state() {
    let server = example("multi-module");
    assert_eq!(server.text("/"), (200, "Hello from multi".to_string()));
    let (status, lazy) = server.text("/lazy");
    assert_eq!(status, 200);
    let lazy: serde_json::Value = serde_json::from_str(&lazy).unwrap();
    assert_eq!(lazy["lazy"], "loaded lazily");
    assert_eq!(lazy["hls"], serde_json::json!([0.0, 0.5, 1.0]));
    // One client, one request at a time: the same warm sandbox keeps its globals.
    let hits = |s: &Server| {
        serde_json::from_str::<serde_json::Value>(&s.text("/hits").1).unwrap()["hits"]
            .as_u64()
            .unwrap()
    };
    let first = hits(&server);
    assert_eq!(hits(&server), first + 1);
    assert_eq!(server.text("/nope").0, 404);
}

#[test]
fn concurrent_requests_get_separate_freshly_seeded_sandboxes() {
    let server = example("multi-module");
    // Both requests arrive before either finishes, so neither can reuse the
    // other's sandbox: two sandboxes restored from one snapshot.
    let url = format!("{}/slow-random", server.url);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            thread::spawn(move || {
                Server::client()
                    .get(url)
                    .send()
                    .unwrap()
                    .json::<serde_json::Value>()
                    .unwrap()
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results[0]["hits"], 1, "{results:?}");
    assert_eq!(
        results[1]["hits"], 1,
        "each sandbox starts from the snapshot: {results:?}"
    );
    assert_ne!(
        results[0]["random"], results[1]["random"],
        "random must be reseeded per sandbox"
    );
}

#[test]
fn raising_handler_gives_500_with_traceback_and_keeps_serving() {
    let server = example("raises");
    let (status, body) = server.text("/");
    assert_eq!(status, 500);
    assert!(body.contains("ZeroDivisionError"), "{body}");
    assert!(
        body.contains("File \"src/entry.py\", line 5, in helper"),
        "{body}"
    );
    assert!(!body.contains("_taipan"), "SDK frames are hidden: {body}");
    assert_eq!(server.text("/ok"), (200, "still serving".to_string()));
    assert!(
        server.wait_for(
            "[raises] GET /!| ZeroDivisionError",
            1,
            std::time::Duration::from_secs(5)
        ),
        "{}",
        server.output()
    );
    // print() output is tagged with its request.
    assert!(
        server
            .output()
            .contains("[raises] GET / | about to divide by zero"),
        "{}",
        server.output()
    );
}

#[test]
fn kv_example_stores_lists_and_deletes_notes() {
    let dir = example_copy("kv");
    let server = Server::dev(dir.path(), &[]);
    let client = Server::client();
    for (key, text) in [("a", "first"), ("b", "second")] {
        let response = client
            .put(format!("{}/notes/{key}", server.url))
            .body(text)
            .send()
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let response = server.get("/notes/a");
    assert_eq!(response.headers()["x-metadata"], "{\"length\": 5}");
    assert_eq!(response.text().unwrap(), "first");
    assert_eq!(
        server.text("/notes?limit=1"),
        (
            200,
            "{\"keys\":[\"a\"],\"list_complete\":false,\"cursor\":\"YQ\"}".to_string()
        )
    );
    let response = client
        .delete(format!("{}/notes/a", server.url))
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(server.text("/notes/a").0, 404);
}

#[test]
fn d1_example_after_migrations() {
    let dir = example_copy("d1");
    let output = crate::harness::taipan()
        .args(["d1", "migrations", "apply", "notes-db", "-c"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let server = Server::dev(dir.path(), &[]);
    let response = Server::client()
        .post(format!("{}/notes", server.url))
        .body(r#"{"author": "ann", "body": "hi"}"#)
        .send()
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().unwrap(), "{\"id\":1}");
    assert_eq!(
        server.text("/notes"),
        (
            200,
            "[{\"id\":1,\"author\":\"ann\",\"body\":\"hi\"}]".to_string()
        )
    );
    assert_eq!(server.text("/notes/count").1, "{\"count\":1}");
}

#[test]
fn cron_example_runs_when_scheduled() {
    let dir = example_copy("cron");
    let server = Server::dev(dir.path(), &["--test-scheduled"]);
    assert_eq!(server.text("/").1, "runs: 0\nlast: None\n");
    assert_eq!(
        server.text("/__scheduled?cron=*+*+*+*+*"),
        (200, "Ran scheduled event\n".to_string())
    );
    let (status, body) = server.text("/");
    assert_eq!(status, 200);
    assert!(body.starts_with("runs: 1\nlast: * * * * * at "), "{body}");
}
