//! The Cache API (`examples/cache`, a caching proxy) under `taipan dev`, in
//! front of an upstream on loopback that counts its requests: a miss then a
//! hit the upstream never sees, `max-age` expiry, what is never stored
//! (`no-store`, `Set-Cookie`), `If-None-Match` → 304, `Vary`, a named cache,
//! and `delete`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Server, example_copy};

/// An HTTP upstream on 127.0.0.1 answering each path with the caching
/// headers the test needs, and counting the requests per path.
struct Upstream {
    url: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl Upstream {
    fn start() -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counts = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let counts = counts.clone();
                std::thread::spawn(move || answer(stream, &counts));
            }
        });
        Self { url, hits }
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

fn answer(mut stream: std::net::TcpStream, counts: &Mutex<HashMap<String, usize>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
    let language = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("accept-language")
                .then(|| value.trim().to_string())
        })
        .unwrap_or_default();
    let n = {
        let mut counts = counts.lock().unwrap();
        let n = counts.entry(path.clone()).or_default();
        *n += 1;
        *n
    };
    let (headers, body) = match path.as_str() {
        "/fresh" => (
            "cache-control: public, max-age=60\r\netag: \"v1\"\r\n",
            format!("fresh {n}"),
        ),
        "/short" => ("cache-control: max-age=1\r\n", format!("short {n}")),
        "/nostore" => ("cache-control: no-store\r\n", format!("nostore {n}")),
        "/cookie" => (
            "cache-control: max-age=60\r\nset-cookie: id=1\r\n",
            format!("cookie {n}"),
        ),
        "/vary" => (
            "cache-control: max-age=60\r\nvary: Accept-Language\r\n",
            format!("{language} {n}"),
        ),
        _ => ("", format!("other {n}")),
    };
    let reply = format!(
        "HTTP/1.1 200 OK\r\n{headers}content-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

/// GET `path` with `headers`: (status, x-cache, cf-cache-status, body).
fn get(server: &Server, path: &str, headers: &[(&str, &str)]) -> (u16, String, String, String) {
    let mut request = Server::client().get(format!("{}{path}", server.url));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().unwrap();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (status, cache, cf) = (
        response.status().as_u16(),
        header("x-cache"),
        header("cf-cache-status"),
    );
    (status, cache, cf, response.text().unwrap())
}

fn hit_or_miss(server: &Server, path: &str) -> (String, String) {
    let (status, cache, _, body) = get(server, path, &[]);
    assert_eq!(status, 200, "{path}: {body}\n{}", server.output());
    (cache, body)
}

fn pair(cache: &str, body: &str) -> (String, String) {
    (cache.to_string(), body.to_string())
}

#[test]
fn a_worker_caches_an_upstream_response() {
    let upstream = Upstream::start();
    let dir = example_copy("cache");
    std::fs::write(
        dir.path().join(".dev.vars"),
        format!("UPSTREAM={}\n", upstream.url),
    )
    .unwrap();
    let server = Server::dev(dir.path(), &[]);

    // A miss, then a hit from the cache: the upstream saw one request.
    assert_eq!(hit_or_miss(&server, "/fresh"), pair("MISS", "fresh 1"));
    let (status, cache, cf, body) = get(&server, "/fresh", &[]);
    assert_eq!(
        (status, cache.as_str(), cf.as_str(), body.as_str()),
        (200, "HIT", "HIT", "fresh 1")
    );
    assert_eq!(upstream.hits("/fresh"), 1);

    // The request's If-None-Match against the stored ETag: a 304 from the cache.
    let (status, cache, _, body) = get(&server, "/fresh", &[("if-none-match", "\"v1\"")]);
    assert_eq!((status, cache.as_str(), body.as_str()), (304, "HIT", ""));
    let (status, _, _, body) = get(&server, "/fresh", &[("if-none-match", "W/\"v0\"")]);
    assert_eq!((status, body.as_str()), (200, "fresh 1"));
    assert_eq!(upstream.hits("/fresh"), 1);

    // max-age=1: a hit at once, a miss once it expired.
    assert_eq!(hit_or_miss(&server, "/short"), pair("MISS", "short 1"));
    assert_eq!(hit_or_miss(&server, "/short"), pair("HIT", "short 1"));
    std::thread::sleep(Duration::from_millis(1_300));
    assert_eq!(hit_or_miss(&server, "/short"), pair("MISS", "short 2"));
    assert_eq!(upstream.hits("/short"), 2);

    // Never stored: no-store, and a response setting a cookie.
    for path in ["/nostore", "/cookie"] {
        for n in 1..=2 {
            let (cache, body) = hit_or_miss(&server, path);
            assert_eq!(cache, "MISS", "{path}");
            assert!(body.ends_with(&format!(" {n}")), "{path}: {body}");
        }
        assert_eq!(upstream.hits(path), 2, "{path}");
    }

    // Vary: Accept-Language stores one variant per language.
    let lang = |language: &str| {
        let (status, cache, _, body) = get(&server, "/vary", &[("accept-language", language)]);
        assert_eq!(status, 200);
        (cache, body)
    };
    assert_eq!(lang("fr"), pair("MISS", "fr 1"));
    assert_eq!(lang("en"), pair("MISS", "en 2"));
    assert_eq!(lang("fr"), pair("HIT", "fr 1"));
    assert_eq!(lang("en"), pair("HIT", "en 2"));
    assert_eq!(upstream.hits("/vary"), 2);

    // A named cache (caches.open) holds its own entries.
    assert_eq!(
        hit_or_miss(&server, "/named/fresh"),
        pair("MISS", "fresh 2")
    );
    assert_eq!(hit_or_miss(&server, "/named/fresh"), pair("HIT", "fresh 2"));

    // delete: true once, then false; the next GET is a miss.
    let delete = |path: &str| {
        let response = Server::client()
            .delete(format!("{}{path}", server.url))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<serde_json::Value>().unwrap()["deleted"].clone()
    };
    assert_eq!(delete("/fresh"), true);
    assert_eq!(delete("/fresh"), false);
    assert_eq!(hit_or_miss(&server, "/fresh"), pair("MISS", "fresh 3"));
    assert_eq!(hit_or_miss(&server, "/named/fresh"), pair("HIT", "fresh 2"));
    assert_eq!(delete("/named/fresh"), true);
    assert_eq!(
        hit_or_miss(&server, "/named/fresh"),
        pair("MISS", "fresh 4")
    );

    // The entries are in the worker's file in the state folder.
    assert!(
        dir.path()
            .join(".taipan/state/cache/cache-example.sqlite")
            .exists()
    );
}
