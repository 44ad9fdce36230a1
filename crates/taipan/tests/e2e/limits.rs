//! A handler that loops forever or eats memory is stopped; the server carries on.

use crate::harness::{CONFIG, Server, project};

const WORKER: &str = r#"
import asyncio
from urllib.parse import urlparse
from workers import Response

async def on_fetch(request):
    path = urlparse(request.url).path
    if path == "/loop":
        while True:
            pass
    if path == "/sleep":
        await asyncio.sleep(3600)
    if path == "/eat":
        hog = []
        while True:
            hog.append(bytearray(8 << 20))
    return Response("fine")
"#;

#[test]
fn cpu_and_memory_limits() {
    let dir = project(&[("wrangler.toml", CONFIG), ("src/entry.py", WORKER)]);
    let server = Server::dev(dir.path(), &["--cpu-ms", "500", "--memory-mb", "96"]);
    assert_eq!(server.text("/"), (200, "fine".to_string()));

    let response = server.get("/loop");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.text().unwrap().contains("CPU time limit"));
    // The log line is written beside the response, and may land just after it.
    assert!(
        server.wait_for(
            "exceeded the cpu_time limit (500ms); sandbox discarded",
            1,
            std::time::Duration::from_secs(10)
        ),
        "{}",
        server.output()
    );
    assert_eq!(server.text("/"), (200, "fine".to_string()));

    // Waiting in the host is bounded by the same limit (the epoch only stops
    // running wasm): a sleeping handler ends at 500 ms + 1 s of grace.
    let started = std::time::Instant::now();
    let response = server.get("/sleep");
    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(server.text("/"), (200, "fine".to_string()));

    let (status, body) = server.text("/eat");
    assert!(status == 500 || status == 503, "{status} {body}");
    assert!(
        body.contains("MemoryError") || body.contains("limit"),
        "{body}"
    );
    assert_eq!(server.text("/"), (200, "fine".to_string()));
}

#[test]
fn oversized_request_body_is_refused_before_the_guest_runs() {
    let dir = project(&[("wrangler.toml", CONFIG), ("src/entry.py", WORKER)]);
    let server = Server::dev(dir.path(), &[]);
    let reply = server.declare_body("x", 100_000_001);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(
        server.wait_for("max_request_body", 1, std::time::Duration::from_secs(10)),
        "{}",
        server.output()
    );
    assert_eq!(server.text("/"), (200, "fine".to_string()));
}
