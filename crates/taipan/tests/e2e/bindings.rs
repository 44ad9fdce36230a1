//! Bindings end to end: vars, secrets, KV, D1, waitUntil, fetch, service
//! bindings and cron, against a real `taipan dev` and `taipan serve`; state
//! survives restarts; parallel writers lose nothing.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{CONFIG, Server, d1, deploy_ok, project, taipan, upstream};

const WORKER: &str = include_str!("bindings_worker.py");

const BINDINGS: &str = r#"
[vars]
GREETING = "hello"
LIMITS = { n = 3 }

[[kv_namespaces]]
binding = "KV"
id = "test-kv"

[[d1_databases]]
binding = "DB"
database_name = "test-db"
database_id = "test-db-id"

[[r2_buckets]]
binding = "FILES"
bucket_name = "files"

[[services]]
binding = "API"
service = "api"

[[services]]
binding = "ADMIN"
service = "api"
entrypoint = "AdminApi"

[triggers]
crons = ["* * * * *"]

[[durable_objects.bindings]]
name = "COUNTER"
class_name = "Counter"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Counter"]
"#;

const MIGRATION: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY AUTOINCREMENT, author TEXT NOT NULL, body TEXT NOT NULL);\n";

const API_WORKER: &str = r#"
from workers import Response, WorkerEntrypoint

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(f"api saw {request.method} {request.url} from {request.headers.get('x-from')}")

    def add(self, a, b):
        return a + b

    async def kinds(self, blob, mapping, nothing, flag=False):
        return [type(blob).__name__, mapping, nothing, flag]

    def fail(self, why):
        raise ValueError(why)

    def _hidden(self):
        return "private"

class AdminApi(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(f"admin entrypoint: {request.url}", status=202)

    def whoami(self, caller):
        return f"AdminApi called by {caller}"
"#;

fn json(server: &Server, path: &str) -> Value {
    let (status, body) = server.text(path);
    assert_eq!(status, 200, "{path}: {body}\n{}", server.output());
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// `taipan d1 execute test-db` counting the notes (`extra`: where).
fn count_notes(dir: &std::path::Path, extra: &[&str]) -> String {
    let query = [
        "execute",
        "test-db",
        "--command",
        "SELECT count(*) AS n FROM notes",
    ];
    d1(dir, &[&query[..], extra].concat())
}

/// GET `path` until `done` holds for its JSON (20 s at most).
fn poll_json(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let value = json(server, path);
        if done(&value) {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{path}: still {value}\n{}",
            server.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn front_project() -> tempfile::TempDir {
    let config = CONFIG.replace("name = \"t\"", "name = \"front\"") + BINDINGS;
    project(&[
        ("wrangler.toml", &config),
        ("src/entry.py", WORKER),
        ("migrations/0001_notes.sql", MIGRATION),
        (".dev.vars", "API_KEY=\"dev-secret-value\"\n"),
    ])
}

fn api_project() -> tempfile::TempDir {
    let config = CONFIG.replace("name = \"t\"", "name = \"api\"");
    project(&[("wrangler.toml", &config), ("src/entry.py", API_WORKER)])
}

#[test]
fn kv_d1_secrets_wait_until_fetch_services_and_cron_in_dev() {
    let front = front_project();
    let api = api_project();
    assert!(
        d1(front.path(), &["migrations", "apply", "test-db"]).contains("Applied 0001_notes.sql")
    );
    let config = front.path().join("wrangler.toml");
    let api_config = api.path().join("wrangler.toml");
    let server = Server::dev(
        front.path(),
        &[
            "-c",
            config.to_str().unwrap(),
            "-c",
            api_config.to_str().unwrap(),
            "--test-scheduled",
        ],
    );

    // vars (strings and JSON) and .dev.vars secrets
    let env = json(&server, "/env?expect=eulav-terces-ved");
    assert_eq!(env["greeting"], "hello");
    assert_eq!(env["limits"]["n"], 3);
    assert_eq!(env["secret_ok"], true, "{env}");

    // KV: types, metadata, list with prefix/limit/cursor, errors
    let types = json(&server, "/kv/types");
    assert_eq!(types["json_n"], 1);
    assert_eq!(types["json_s"], "é");
    assert_eq!(types["json_opts"]["n"], 1);
    assert_eq!(types["bytes"], serde_json::json!([0, 255, 16]));
    assert_eq!(types["stream"], serde_json::json!([0, 255, 16]));
    assert_eq!(types["meta_value"], "v");
    assert_eq!(types["meta"]["a"], serde_json::json!([1, 2]));
    assert_eq!(types["missing"], serde_json::json!([null, null]));
    for i in 0..5 {
        json(&server, &format!("/kv/put?k=list:{i}&v=x{i}&meta=m{i}"));
    }
    let page = json(&server, "/kv/list?prefix=list:&limit=2");
    assert_eq!(page["keys"], serde_json::json!(["list:0", "list:1"]));
    assert_eq!(page["complete"], false);
    let cursor = page["cursor"].as_str().unwrap().to_string();
    let next = json(
        &server,
        &format!("/kv/list?prefix=list:&limit=10&cursor={cursor}"),
    );
    assert_eq!(
        next["keys"],
        serde_json::json!(["list:2", "list:3", "list:4"])
    );
    assert_eq!(next["complete"], true);
    let bad = json(&server, "/kv/bad");
    for (case, needle) in [
        ("put_int", "TypeError"),
        ("key_int", "TypeError"),
        ("bad_type", "TypeError"),
        ("short_ttl", "at least 60"),
        ("empty_key", "not allowed"),
        ("long_key", "512"),
        ("big_meta", "1024"),
        ("bad_limit", "1000"),
    ] {
        let message = bad[case].as_str().unwrap();
        assert!(message.contains(needle), "{case}: {message}");
    }

    // D1: run/all/first/raw/batch; types; errors are Python exceptions
    let added = json(&server, "/d1/add?author=ann&body=first%20note");
    assert_eq!(
        (added["id"].as_i64(), added["changes"].as_i64()),
        (Some(1), Some(1))
    );
    json(&server, "/d1/add?author=bob&body=second");
    let read = json(&server, "/d1/read");
    assert_eq!(read["authors"], serde_json::json!(["ann", "bob"]));
    assert_eq!(read["first"]["author"], "ann");
    assert_eq!(read["first_results0"], "first note");
    assert_eq!(read["count"], 2);
    assert_eq!(
        read["raw"],
        serde_json::json!([["id", "author"], [1, "ann"], [2, "bob"]])
    );
    assert_eq!(read["nothing"], Value::Null);
    let typed = json(&server, "/d1/types");
    assert_eq!(
        typed,
        serde_json::json!({"i": 7, "r": 2.5, "t": "ü", "b": [1, 2], "n": null, "bool": 1})
    );
    let batch = json(&server, "/d1/batch");
    assert!(
        batch["failed"]
            .as_str()
            .unwrap()
            .contains("no such table: nowhere"),
        "{batch}"
    );
    assert_eq!(batch["unchanged"], true, "a failed batch must roll back");
    assert_eq!(batch["count_after"], 3);
    assert!(
        batch["bad_bind"]
            .as_str()
            .unwrap()
            .contains("D1_TYPE_ERROR"),
        "{batch}"
    );
    let caught = json(&server, "/d1/error-class");
    assert_eq!(caught["caught"], "js.Error");
    assert!(
        caught["message"]
            .as_str()
            .unwrap()
            .contains("D1_ERROR: no such table: nope")
    );

    // R2: streamed put/get, ranges, head, list with delimiter and cursor, delete
    let client = Server::client();
    let big: String = (0..300_000).map(|i| format!("{:09}\n", i)).collect();
    let put = |key: &str, body: String| -> Value {
        let response = client
            .post(format!("{}/r2/put?k={key}", server.url))
            .body(body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().unwrap()
    };
    let stored = put("dir/big.txt", big.clone());
    assert_eq!(stored["size"], big.len());
    let md5: String = {
        use md5::Digest;
        md5::Md5::digest(big.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(stored["etag"], md5);
    put("dir/sub/a.txt", "a".into());
    put("top.txt", "top".into());
    let response = server.get("/r2/get?k=dir/big.txt");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], format!("\"{md5}\""));
    assert_eq!(response.headers()["x-by"], "test");
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert!(
        response.text().unwrap() == big,
        "the object came back different"
    );
    assert_eq!(
        server.text("/r2/get?k=dir/big.txt&offset=10&length=10").1,
        "000000001\n"
    );
    assert_eq!(
        server.text("/r2/get?k=dir/big.txt&suffix=10").1,
        "000299999\n"
    );
    assert_eq!(server.text("/r2/get?k=nope").0, 404);
    let head = json(&server, "/r2/head?k=top.txt");
    assert_eq!(
        (head["size"].as_i64(), head["type"].as_str()),
        (Some(3), Some("text/plain"))
    );
    let listing = json(&server, "/r2/list?delimiter=/");
    assert_eq!(listing["keys"], serde_json::json!(["top.txt"]));
    assert_eq!(listing["prefixes"], serde_json::json!(["dir/"]));
    let listing = json(&server, "/r2/list?prefix=dir/&limit=1");
    assert_eq!(
        (listing["keys"].clone(), listing["truncated"].clone()),
        (serde_json::json!(["dir/big.txt"]), Value::Bool(true))
    );
    let cursor = listing["cursor"].as_str().unwrap().to_string();
    let rest = json(&server, &format!("/r2/list?prefix=dir/&cursor={cursor}"));
    assert_eq!(rest["keys"], serde_json::json!(["dir/sub/a.txt"]));
    json(&server, "/r2/delete?k=dir/sub/a.txt,top.txt");
    assert_eq!(server.text("/r2/get?k=top.txt").0, 404);

    // run_sync + cloudflare:workers env; gather runs host calls concurrently
    assert_eq!(json(&server, "/sync")["value"], "ran");
    assert_eq!(
        json(&server, "/gather")["values"],
        serde_json::json!(["0", "1", "2", "3", "4"])
    );

    // waitUntil runs after the response is sent
    let (status, body) = server.text("/wait?v=later");
    assert_eq!((status, body.as_str()), (200, "sent before the work\n"));
    poll_json(&server, "/kv/get?k=waited", |v| v["value"] == "later");
    // ... and through `workers.wait_until` at module level.
    assert_eq!(server.text("/wait?v=module&module=1").0, 200);
    poll_json(&server, "/kv/get?k=waited", |v| v["value"] == "module");

    // A multipart form with a file, read with request.form_data(); a
    // FormData body sent back is multipart again; `from workers import env`.
    let boundary = "XyZ123";
    let form = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhéllo\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\na\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"tag\"\r\n\r\nb\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"upload\"; filename=\"notes.txt\"\r\n\
         Content-Type: text/plain\r\n\r\nline 1\nline 2\r\n--{boundary}--\r\n"
    );
    let response = Server::client()
        .post(format!("{}/form", server.url))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(form)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let form: Value = response.json().unwrap();
    assert_eq!(form["title"], "héllo", "{form}");
    assert_eq!(form["tags"], serde_json::json!(["a", "b"]));
    assert_eq!(
        form["file"],
        serde_json::json!(["notes.txt", "text/plain", "line 1\nline 2"])
    );
    assert_eq!(
        form["echo"],
        serde_json::json!(["hello", "a,b", "notes.txt", "line 1\nline 2"])
    );

    // outbound fetch (dev may reach loopback), js.fetch, the subrequest limit
    let upstream = upstream();
    let fetched = json(&server, &format!("/fetch?url={upstream}echo"));
    assert_eq!(fetched["status"], 201);
    assert_eq!(fetched["body"], "upstream POST ping");
    assert_eq!(fetched["header"], "yes");
    assert_eq!(
        server.text(&format!("/jsfetch?url={upstream}")).1,
        "upstream GET "
    );
    let stdlib = json(&server, &format!("/urllib?url={upstream}"));
    assert_eq!(stdlib["status"], 201, "{stdlib}");
    assert_eq!(stdlib["body"], "upstream PUT ping");
    assert_eq!(stdlib["header"], "yes");
    assert_eq!(
        stdlib["direct"],
        serde_json::json!([201, "Created", "upstream GET ", true])
    );
    let many = json(&server, &format!("/fetch-many?n=51&url={upstream}"));
    assert_eq!(many["done"], 50);
    assert!(
        many["error"].as_str().unwrap().contains("max_subrequests"),
        "{many}"
    );

    // service binding to the second config's worker
    let service = json(&server, "/service");
    assert_eq!(service["status"], 200);
    assert_eq!(
        service["body"],
        "api saw GET https://api.internal/hello?who=front from front"
    );

    // RPC on service bindings: Default's methods, a named entrypoint
    let rpc = json(&server, "/service-rpc");
    assert_eq!(rpc["sum"], 5, "{rpc}");
    assert_eq!(
        rpc["types"],
        serde_json::json!(["bytes", {"k": [1, 2]}, null, true])
    );
    assert_eq!(rpc["admin"], "AdminApi called by front");
    assert_eq!(
        rpc["admin_fetch"],
        serde_json::json!([202, "admin entrypoint: https://admin.internal/stats"])
    );
    assert_eq!(rpc["raises"], "JsException: ValueError: bad input", "{rpc}");
    for name in ["missing", "private"] {
        assert!(
            rpc[name]
                .as_str()
                .unwrap()
                .contains("does not implement the method"),
            "{rpc}"
        );
    }
    // A named entrypoint is not reachable from outside: not by Host, in any
    // case, nor by an absolute-form request line behind an ordinary Host.
    let (status, _) = server.host_text("__taipan-service__", "/AdminApi/fetch");
    assert_eq!(status, 400);
    let (status, _) = server.host_text("__TAIPAN-service__", "/AdminApi/fetch");
    assert_eq!(status, 400);
    let address = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .write_all(b"GET http://__taipan-service__/AdminApi/fetch HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut stream, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // cron through --test-scheduled
    let (status, body) = server.text("/__scheduled?cron=*+*+*+*+*");
    assert_eq!(
        (status, body.as_str()),
        (200, "Ran scheduled event\n"),
        "{}",
        server.output()
    );
    assert_eq!(json(&server, "/kv/get?k=cron_last")["value"], "* * * * *");

    // The secret's value never shows in the server's output.
    assert!(!server.output().contains("dev-secret-value"));

    // Parallel writers: KV and D1 lose nothing.
    let url = server.url.clone();
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = Server::client();
                for i in 0..20 {
                    for path in [
                        format!("/kv/put?k=par:{t}:{i}&v={i}"),
                        format!("/d1/add?author=w{t}&body={i}"),
                    ] {
                        let response = client.get(format!("{url}{path}")).send().unwrap();
                        assert_eq!(response.status(), 200, "{path}");
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(json(&server, "/kv/count?prefix=par:")["count"], 160);
    assert_eq!(json(&server, "/d1/read")["count"], 163);

    // Restart: everything written is still there.
    server.stop();
    let count = count_notes(front.path(), &[]);
    assert!(count.contains("163"), "{count}");
    let server = Server::dev(front.path(), &["--no-watch"]);
    assert_eq!(json(&server, "/kv/count?prefix=par:")["count"], 160);
    assert_eq!(json(&server, "/kv/get?k=waited")["value"], "module");
    assert_eq!(json(&server, "/d1/read")["count"], 163);
    assert_eq!(json(&server, "/r2/head?k=dir/big.txt")["size"], 3_000_000);
}

#[test]
fn serve_refuses_private_fetch_keeps_secrets_and_fires_crons() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--insecure-local"]);
    let front = front_project();
    deploy_ok(&server, front.path());
    deploy_ok(&server, api_project().path());
    let host = |path: &str| server.host_text("front.localhost", path);

    // secret put through the CLI, read by the worker, never listed with its value
    crate::harness::secret_put(&server, "front", "API_KEY", "serve-secret");
    let (status, body) = host("/env?expect=terces-evres");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"secret_ok\":true"), "{body}");
    let list = taipan()
        .args([
            "secret",
            "list",
            "--name",
            "front",
            "--server",
            &server.admin,
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout), "API_KEY\n");

    // The SSRF rule: loopback is refused in serve.
    let upstream = upstream();
    let (status, body) = host(&format!("/fetch?url={upstream}"));
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("prohibited"), "{body}");
    let (status, body) = host("/fetch?url=http://localhost:1/");
    assert_eq!(status, 502, "{body}");
    let (status, body) = host(&format!("/urllib?url={upstream}"));
    assert_eq!(status, 502, "{body}\n{}", server.output());
    assert!(
        body.starts_with("URLError:") && body.contains("prohibited"),
        "{body}"
    );

    // Service bindings reach the other deployed worker; D1 needs its table first.
    let (status, body) = host("/service");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("api saw GET"), "{body}");
    let (status, body) = host("/service-rpc");
    assert_eq!(status, 200, "{body}");
    let rpc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&rpc["sum"], &rpc["admin"]),
        (&Value::from(5), &Value::from("AdminApi called by front")),
        "{body}"
    );
    // D1 through the admin API (`--remote`): migrations, then a query.
    let remote = ["--remote", "--server", server.admin.as_str()];
    let applied = d1(
        front.path(),
        &[&["migrations", "apply", "test-db"][..], &remote[..]].concat(),
    );
    assert!(applied.contains("Applied 0001_notes.sql"), "{applied}");
    assert!(
        d1(
            front.path(),
            &[&["migrations", "apply", "test-db"][..], &remote[..]].concat()
        )
        .contains("No migrations to apply")
    );
    assert_eq!(host("/d1/add?author=s&body=b").0, 200);
    let count = count_notes(front.path(), &remote);
    assert!(count.ends_with("n\n1\n"), "{count:?}");
    assert_eq!(host("/kv/put?k=kept&v=1").0, 200);
    assert!(host("/do/increment?name=s&n=7").1.contains("\"count\":7"));
    // A Durable Object alarm fires in serve too.
    assert_eq!(host("/do/alarm/set?name=s&ms=100").0, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !host("/do/alarm/state?name=s").1.contains("\"fired\":1") {
        assert!(std::time::Instant::now() < deadline, "{}", server.output());
        std::thread::sleep(Duration::from_millis(100));
    }

    // The cron trigger fires on its own at the next minute.
    let mut fired = String::new();
    for _ in 0..150 {
        fired = host("/kv/get?k=cron_last").1;
        if fired.contains("* * * * *") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        fired.contains("* * * * *"),
        "no cron run: {fired}\n{}",
        server.output()
    );
    assert!(!server.output().contains("serve-secret"));

    // Restart: secrets, KV and D1 are still there.
    server.stop();
    let server = Server::serve(data.path(), &["--insecure-local"]);
    let host = |path: &str| server.host_text("front.localhost", path);
    assert!(
        host("/env?expect=terces-evres")
            .1
            .contains("\"secret_ok\":true")
    );
    assert!(host("/kv/get?k=kept").1.contains("\"1\""));
    assert!(host("/d1/read").1.contains("\"count\":1"));
    let (status, state) = host("/do/state?name=s");
    assert_eq!(status, 200, "{state}");
    assert!(state.contains("\"count\":7"), "{state}");
}

#[test]
fn durable_objects_in_dev() {
    let front = front_project();
    let server = Server::dev(front.path(), &["--no-watch"]);
    // RPC on a stub: storage and in-memory state of one live instance.
    assert_eq!(json(&server, "/do/increment?name=a&n=2")["count"], 2);
    assert_eq!(json(&server, "/do/increment?name=a&n=3")["count"], 5);
    let state = json(&server, "/do/state?name=a");
    assert_eq!(state["count"], 5);
    assert_eq!(state["calls"], 3, "the same instance served every call");
    assert_eq!(state["listed"], serde_json::json!(["count"]));

    // Calls to one object never interleave: no lost updates, from one
    // request's gather or from many clients at once.
    let parallel = json(&server, "/do/parallel?name=p&n=20");
    assert_eq!(
        parallel["results"],
        serde_json::json!((1..=20).collect::<Vec<_>>())
    );
    let url = server.url.clone();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let client = Server::client();
                for _ in 0..10 {
                    let response = client
                        .get(format!("{url}/do/increment?name=q"))
                        .send()
                        .unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(json(&server, "/do/state?name=q")["count"], 40);

    // Values keep their kinds: a to_js object arrives as one, bytes as bytes.
    let echo = json(&server, "/do/echo");
    assert_eq!(echo["message_type"], "JsObject");
    assert_eq!(echo["text"], "hi");
    assert_eq!(echo["nested"], serde_json::json!([1, 2]));
    assert_eq!(echo["py"], serde_json::json!({"text": "hi", "n": [1, 2]}));
    assert_eq!(echo["blob"], serde_json::json!([0, 1]));
    assert_eq!(echo["plain_type"], "dict");
    assert_eq!(echo["items_type"], "list");
    assert_eq!(echo["same"], serde_json::json!(["JsObject", "hi"]));

    // ctx.storage.sql, synchronous as on Workers.
    json(&server, "/do/notes?name=a&text=x");
    let notes = json(&server, "/do/notes?name=a&text=y");
    assert_eq!(notes["count"], 2);
    assert_eq!(notes["texts"], serde_json::json!(["x", "y"]));

    // Errors reach the caller as exceptions; bad ids are TypeErrors.
    let errors = json(&server, "/do/errors")["errors"].clone();
    assert_eq!(errors[0], "JsException: ValueError: the object refused");
    assert_eq!(
        errors[1],
        "JsException: TypeError: The RPC receiver does not implement the method \"missing\"."
    );
    assert!(
        errors[2]
            .as_str()
            .unwrap()
            .starts_with("JsException: TypeError:"),
        "{errors}"
    );
    assert_eq!(
        errors[3],
        "TypeError: Invalid Durable Object ID: must be 64 hex digits"
    );

    // stub.fetch reaches the object's fetch with the URL, method and body.
    let fetched = json(&server, "/do/fetch?name=a");
    assert_eq!(fetched["status"], 200);
    assert_eq!(
        fetched["text"],
        "POST https://counter.internal/path?x=1 count=5 body=hello"
    );
    assert_eq!(fetched["same_id"], true);
    assert_eq!(fetched["unique_differs"], true);

    // More objects than stay live (and than the dev sandbox pool holds): idle
    // ones are evicted, their storage kept; nothing is refused.
    for i in 0..70 {
        assert_eq!(
            json(&server, &format!("/do/increment?name=many{i}"))["count"],
            1
        );
    }
    for i in [0, 35, 69] {
        assert_eq!(
            json(&server, &format!("/do/state?name=many{i}"))["count"],
            1
        );
    }

    // An object calling its own stub gets an error, not a wait on itself.
    let selfish = json(&server, "/do/self-call");
    assert!(
        selfish["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot call itself")),
        "{selfish}"
    );

    // storage.transaction: reads see its writes; all or nothing.
    let ok = json(&server, "/do/txn?mode=ok");
    assert_eq!(
        ok["result"],
        serde_json::json!({"deleted": true, "a": 1, "listed": ["t:a", "t:b"]})
    );
    assert_eq!(ok["stored"], serde_json::json!({"t:a": 1, "t:b": 2}));
    for mode in ["fail", "rollback"] {
        let undone = json(&server, &format!("/do/txn?mode={mode}"));
        assert_eq!(undone["stored"], serde_json::json!({}), "{mode}: {undone}");
    }
    assert_eq!(json(&server, "/do/txn?mode=fail")["result"], "abort");

    // Alarms: alarm() runs at the time set; a failing one is retried (its
    // alarm_info counts); one set before a restart fires after it.
    let set = json(&server, "/do/alarm/set?name=al&ms=300&failures=1");
    assert!(set["at"].as_i64().is_some_and(|at| at > 0), "{set}");
    let fired = poll_json(&server, "/do/alarm/state?name=al", |s| s["fired"] == 1);
    assert_eq!(fired["retry_count"], 1, "{fired}");
    assert_eq!(fired["alarm"], Value::Null, "{fired}");
    json(&server, "/do/alarm/set?name=later&ms=3000");
    let pending = json(&server, "/do/alarm/state?name=later");
    assert!(
        pending["alarm"].is_i64() && pending["fired"].is_null(),
        "{pending}"
    );

    // Restart: storage is kept; the in-memory state starts again.
    server.stop();
    let server = Server::dev(front.path(), &["--no-watch"]);
    poll_json(&server, "/do/alarm/state?name=later", |s| s["fired"] == 1);
    let state = json(&server, "/do/state?name=a");
    assert_eq!(state["count"], 5);
    assert_eq!(state["calls"], 1);
    assert_eq!(json(&server, "/do/notes?name=a&text=z")["count"], 3);
    assert_eq!(json(&server, "/do/state?name=q")["count"], 40);
}

const LARGE_ARGS_WORKER: &str = r#"
from workers import DurableObject, Response, WorkerEntrypoint


class Box(DurableObject):
    async def keep(self, value):
        await self.ctx.storage.put("v", value)
        self.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        self.ctx.storage.sql.exec("INSERT INTO t (v) VALUES (?)", value)
        stored = await self.ctx.storage.get("v")
        row = self.ctx.storage.sql.exec("SELECT length(v) AS n FROM t").one()
        return [len(stored), row["n"]]


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        big = "x" * 300_000 + "\u00e9\n\u2603"
        db = self.env.DB
        await db.exec("CREATE TABLE IF NOT EXISTS t (v TEXT)")
        await db.prepare("INSERT INTO t (v) VALUES (?)").bind(big).run()
        row = await db.prepare("SELECT length(v) AS n, substr(v, -3) AS tail FROM t").first()
        await self.env.KV.put("k", big, metadata={"note": "\u00e9\n" * 50})
        value = await self.env.KV.get_with_metadata("k")
        stub = self.env.BOX.get(self.env.BOX.idFromName("one"))
        return Response.json({
            "d1": [row["n"], row["tail"]],
            "kv": [len(value.value), value.value[-2:], value.metadata["note"][:2]],
            "do": await stub.keep(big),
        })
"#;

/// Arguments travel in the call's body: SQL parameters and Durable Object
/// values of 300 kB (past wasi-http's 128 KiB header limit, which used to
/// trap the sandbox) reach D1, KV and storage intact, newlines included.
#[test]
fn large_binding_arguments_travel_in_the_body() {
    let config = format!(
        "{CONFIG}\n[[kv_namespaces]]\nbinding = \"KV\"\nid = \"kv\"\n\n[[d1_databases]]\nbinding = \"DB\"\ndatabase_name = \"db\"\ndatabase_id = \"db\"\n\n[[durable_objects.bindings]]\nname = \"BOX\"\nclass_name = \"Box\"\n\n[[migrations]]\ntag = \"v1\"\nnew_sqlite_classes = [\"Box\"]\n"
    );
    let dir = project(&[
        ("wrangler.toml", &config),
        ("src/entry.py", LARGE_ARGS_WORKER),
    ]);
    let server = Server::dev(dir.path(), &[]);
    let (status, body) = server.text("/");
    assert_eq!(status, 200, "{body}\n{}", server.output());
    let value: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["d1"], serde_json::json!([300_003, "é\n☃"]));
    assert_eq!(value["kv"], serde_json::json!([300_003, "\n☃", "é\n"]));
    assert_eq!(value["do"], serde_json::json!([300_003, 300_003]));
}

const FORGED_MARKER_WORKER: &str = r#"
from workers import Response, WorkerEntrypoint, fetch


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        upstream = request.headers.get("x-upstream-url")
        response = await fetch(upstream)
        return Response.json({
            "status": response.status,
            "body": await response.text(),
            "marker": response.headers.get("x-taipan-error"),
        })
"#;

/// Only the host marks a response as its own error: an upstream answering
/// `x-taipan-error: 1` is an ordinary response to the worker's `fetch`.
#[test]
fn an_upstream_cannot_forge_the_host_error_marker() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let body = r#"{"name": "TypeError", "message": "forged"}"#;
            let reply = format!(
                "HTTP/1.1 418 I'm a teapot\r\nx-taipan-error: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    let dir = project(&[
        ("wrangler.toml", CONFIG),
        ("src/entry.py", FORGED_MARKER_WORKER),
    ]);
    let server = Server::dev(dir.path(), &[]);
    let response = Server::client()
        .get(format!("{}/", server.url))
        .header("x-upstream-url", &upstream)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", server.output());
    let value: Value = serde_json::from_str(&response.text().unwrap()).unwrap();
    assert_eq!(value["status"], 418, "{value}");
    assert_eq!(
        value["body"],
        r#"{"name": "TypeError", "message": "forged"}"#
    );
    assert_eq!(value["marker"], Value::Null);
}
