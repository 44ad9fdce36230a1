//! Outbound TCP sockets and the `hyperdrive` binding against a real
//! PostgreSQL, started here (initdb into a temporary folder, a free loopback
//! port, stopped at the end): examples/postgres through pg8000 in `taipan
//! dev` and `taipan serve`, a database error as the worker's own exception,
//! the per-request connection limit, and serve's destination rule (loopback
//! refused unless a hyperdrive binding names it).
//!
//! PostgreSQL must be installed (`.ci/run` installs Debian's `postgresql`
//! when it is missing); a PostgreSQL that cannot start fails the test.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{CONFIG, Server, deploy_ok, example_copy, project, repo_root, upstream};

const USER: &str = "taipan";
const PASSWORD: &str = "pg-test-password";

/// A PostgreSQL server of its own: a fresh cluster in a temporary folder,
/// listening on a free loopback port; stopped (fast shutdown) when dropped.
struct Postgres {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = postgres_bin();
        let dir = tempfile::tempdir().unwrap();
        // initdb and postgres refuse to run as root: as root, run them as
        // the `postgres` user the Debian package creates.
        let as_root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
        let owner = as_root.then(|| {
            let id = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "running as root, PostgreSQL needs the `postgres` user to run as: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
            };
            (id("-u"), id("-g"))
        });
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, PASSWORD).unwrap();
        if let Some((uid, gid)) = owner {
            for path in [dir.path(), &password_file] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
            }
        }
        let command = |program: &str| {
            let program = bin.join(program);
            let mut command = if owner.is_some() {
                let mut c = Command::new("setpriv");
                c.args([
                    "--reuid=postgres",
                    "--regid=postgres",
                    "--clear-groups",
                    "--",
                ])
                .arg(program);
                c
            } else {
                Command::new(program)
            };
            command.current_dir(dir.path()).stdin(Stdio::null());
            command
        };
        let data = dir.path().join("data");
        let init = command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--no-locale",
            ])
            .arg(format!("--pwfile={}", password_file.display()))
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "initdb failed, PostgreSQL cannot start:\n{}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let log_path = dir.path().join("postgres.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let child = command("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
            .arg(dir.path())
            .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.join("postgres").display()));
        let mut server = Postgres { child, port, dir };
        let started = Instant::now();
        loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if log.contains("ready to accept connections")
                && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("PostgreSQL exited ({status}) before it was ready:\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "PostgreSQL was not ready in 60 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: fast shutdown (disconnect clients, stop).
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The folder with `initdb` and `postgres`: on the PATH, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn postgres_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("initdb"))
        .find(|p| p.is_file());
    if let Some(initdb) = on_path {
        let initdb = initdb.canonicalize().unwrap();
        let dir = initdb.parent().unwrap().to_path_buf();
        if dir.join("postgres").is_file() {
            return dir;
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql/*/bin): \
             apt-get install postgresql (.ci/run does)"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wheelhouse() -> String {
    repo_root()
        .join("testdata/wheelhouse")
        .to_string_lossy()
        .into_owned()
}

fn json(response: reqwest::blocking::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, value)
}

/// A worker that opens sockets itself: `/connect?port=N&n=K` opens K
/// connections to 127.0.0.1:N and says how far it got; `/broken` runs a
/// query with a syntax error and does not catch it.
const PROBE: &str = r#"
import asyncio
import socket
import time
from urllib.parse import parse_qs, urlparse

import pg8000.native
from workers import Response, WorkerEntrypoint, fetch


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/connect":
            port, n = int(query["port"]), int(query.get("n", "1"))
            opened = []
            try:
                for _ in range(n):
                    opened.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                return Response.json({"opened": len(opened)})
            except OSError as e:
                return Response.json({"opened": len(opened), "error": f"{type(e).__name__}: {e}"})
            finally:
                for s in opened:
                    s.close()
        if url.path == "/bulk":
            # `bytes` through the echo server and back, in 64 KiB pieces
            port, total = int(query["port"]), int(query["bytes"])
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            moved = 0
            try:
                while moved < total:
                    part = b"x" * min(65536, total - moved)
                    s.sendall(part)
                    got = 0
                    while got < len(part):
                        data = s.recv(65536)
                        if not data:
                            raise OSError("the echo server closed")
                        got += len(data)
                    moved += len(part)
                return Response.json({"moved": moved})
            except OSError as e:
                return Response.json({"moved": moved, "error": f"{type(e).__name__}: {e}"})
            finally:
                s.close()
        if url.path == "/echo":
            # round trips over one connection to the test's echo server
            port, n = int(query["port"]), int(query.get("n", "200"))
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            start = time.perf_counter()
            for i in range(n):
                s.sendall(b"ping %d\n" % i)
                assert s.recv(100) == b"ping %d\n" % i
            took = time.perf_counter() - start
            s.close()
            return Response.json({"round_trip_us": took / n * 1e6})
        if url.path == "/aecho":
            # the same over asyncio streams; then a socket read and a host
            # call (fetch) awaited together
            port, n = int(query["port"]), int(query.get("n", "200"))
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            start = time.perf_counter()
            for i in range(n):
                writer.write(b"ping %d\n" % i)
                await writer.drain()
                assert await reader.readline() == b"ping %d\n" % i
            took = time.perf_counter() - start
            writer.write(b"together\n")
            fetched, line = await asyncio.gather(fetch(query["upstream"], method="POST", body="x"), reader.readline())
            writer.close()
            await writer.wait_closed()
            return Response.json(
                {"round_trip_us": took / n * 1e6, "fetched": await fetched.text(), "line": line.decode()}
            )
        dsn = urlparse(self.env.DB.connectionString)
        conn = pg8000.native.Connection(
            dsn.username, password=dsn.password, host=dsn.hostname, port=dsn.port,
            database=dsn.path.lstrip("/"), ssl_context=False,
        )
        try:
            if url.path == "/broken":
                conn.run("SELEC 1 FROM nowhere")
            start = time.perf_counter()
            for _ in range(100):
                conn.run("SELECT 1")
            took = time.perf_counter() - start
            return Response.json({"select_1_us": took / 100 * 1e6})
        finally:
            conn.close()
"#;

fn probe(extra: &str) -> tempfile::TempDir {
    let config = CONFIG.replace("name = \"t\"", "name = \"probe\"") + extra;
    project(&[
        ("wrangler.toml", &config),
        ("requirements.txt", "pg8000\n"),
        ("src/entry.py", PROBE),
    ])
}

/// A loopback server answering each line with itself, for socket round trips.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = std::io::Read::read(&mut stream, &mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn postgres_through_pg8000_in_dev() {
    let pg = Postgres::start();
    let example = example_copy("postgres");
    // The environment variable wins over the example's localConnectionString.
    let url = pg.url();
    let server = Server::dev_with_env(
        example.path(),
        &["--no-watch", "--no-index", "--find-links", &wheelhouse()],
        &[(
            "CLOUDFLARE_HYPERDRIVE_LOCAL_CONNECTION_STRING_DB",
            Path::new(&url),
        )],
    );
    let client = Server::client();
    let (status, info) = json(server.get("/"));
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["port"], pg.port);
    assert_eq!(info["user"], USER);
    assert_eq!(info["database"], "postgres");

    for body in ["first note", "second note", "third: ünïcode"] {
        let (status, created) = json(
            client
                .post(format!("{}/notes", server.url))
                .body(body)
                .send()
                .unwrap(),
        );
        assert_eq!(status, 201, "{created}\n{}", server.output());
    }
    let (status, notes) = json(server.get("/notes"));
    assert_eq!(status, 200, "{notes}");
    let bodies: Vec<&str> = notes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["first note", "second note", "third: ünïcode"]);
    let (_, found) = json(server.get("/notes/search?q=^sec"));
    assert_eq!(found[0]["body"], "second note", "{found}");
    // The database's own error, caught by the worker: a 400, not a crash.
    let (status, error) = json(server.get("/notes/search?q=("));
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("regular expression"),
        "{error}"
    );
    // The rows are really in PostgreSQL (seen by another worker, too).
    drop(server);

    let probe = probe(&format!(
        "\n[limits]\ntcp_mb = 1\n\n[[hyperdrive]]\nbinding = \"DB\"\nid = \"probe\"\nlocalConnectionString = \"{url}\"\n"
    ));
    let server = Server::dev(
        probe.path(),
        &["--no-watch", "--no-index", "--find-links", &wheelhouse()],
    );
    // An uncaught database error is the worker's exception: a 500 with the
    // traceback in dev, and the next request is served.
    let (status, body) = server.text("/broken");
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("DatabaseError") && body.contains("syntax error"),
        "{body}"
    );
    let (status, timing) = json(server.get("/"));
    assert_eq!(status, 200, "{timing}");
    let select = timing["select_1_us"].as_f64().unwrap();

    // Round trips over a raw socket, and the connection limit: 50 a request.
    let echo = echo_server();
    let (status, rtt) = json(server.get(&format!("/echo?port={echo}")));
    assert_eq!(status, 200, "{rtt}");
    let (status, artt) = json(server.get(&format!("/aecho?port={echo}&upstream={}", upstream())));
    assert_eq!(status, 200, "{artt}");
    assert_eq!(artt["fetched"], "upstream POST x", "{artt}");
    assert_eq!(artt["line"], "together\n", "{artt}");
    let (_, fifty) = json(server.get(&format!("/connect?port={echo}&n=50")));
    assert_eq!(fifty["opened"], 50, "{fifty}");
    let (_, more) = json(server.get(&format!("/connect?port={echo}&n=51")));
    assert_eq!(more["opened"], 50, "{more}");
    let error = more["error"].as_str().unwrap();
    assert!(
        error.starts_with("PermissionError") && error.contains("max_tcp_connections"),
        "{error}"
    );
    // The count is per request.
    let (_, again) = json(server.get(&format!("/connect?port={echo}&n=1")));
    assert_eq!(again["opened"], 1, "{again}");
    // Bytes too (`[limits] tcp_mb = 1`: a million bytes read and written).
    let (_, within) = json(server.get(&format!("/bulk?port={echo}&bytes=400000")));
    assert_eq!(within["moved"], 400000, "{within}");
    let (_, over) = json(server.get(&format!("/bulk?port={echo}&bytes=900000")));
    assert!(over["error"].is_string(), "{over}");
    assert!(over["moved"].as_u64().unwrap() < 900000, "{over}");
    let (_, next) = json(server.get(&format!("/bulk?port={echo}&bytes=400000")));
    assert_eq!(next["moved"], 400000, "a new request, a new budget: {next}");
    eprintln!(
        "sockets: pg8000 SELECT 1 round trip {select:.0} µs; echo round trip over a socket {:.0} µs, \
         over asyncio streams {:.0} µs",
        rtt["round_trip_us"].as_f64().unwrap(),
        artt["round_trip_us"].as_f64().unwrap()
    );
    assert!(pg.log().contains("ready to accept connections"));
}

#[test]
fn serve_refuses_loopback_but_reaches_the_hyperdrive_origin() {
    let pg = Postgres::start();
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(
        data.path(),
        &[
            "--insecure-local",
            "--no-index",
            "--find-links",
            &wheelhouse(),
        ],
    );
    let example = example_copy("postgres");
    deploy_ok(&server, example.path());
    let host = |path: &str| server.host_text("postgres.localhost", path);

    // No secret yet: the worker deploys, and reading env.DB says what is missing.
    let (status, _) = host("/");
    assert_eq!(status, 500);
    assert!(
        server.wait_for("HYPERDRIVE_DB", 1, Duration::from_secs(10)),
        "{}",
        server.output()
    );

    crate::harness::secret_put(&server, "postgres", "HYPERDRIVE_DB", &pg.url());

    // The origin the secret names is reachable, loopback or not.
    let (status, body) = host("/");
    assert_eq!(status, 200, "{body}\n{}", server.output());
    let created = Server::client()
        .post(format!("{}/notes", server.url))
        .header("host", "postgres.localhost")
        .body("from serve")
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let (status, notes) = host("/notes");
    assert_eq!(status, 200, "{notes}");
    assert!(notes.contains("from serve"), "{notes}");

    // Another worker, with no hyperdrive binding: loopback is refused, the
    // database's port included, with a message saying why.
    let probe = probe("");
    deploy_ok(&server, probe.path());
    let echo = echo_server();
    for port in [echo, pg.port] {
        let (status, body) = server.host_text("probe.localhost", &format!("/connect?port={port}"));
        assert_eq!(status, 200, "{body}");
        let result: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(result["opened"], 0, "{result}");
        let error = result["error"].as_str().unwrap();
        assert!(
            error.starts_with("PermissionError")
                && error.contains(&format!("127.0.0.1:{port} refused"))
                && error.contains("loopback"),
            "{error}"
        );
    }
}
