//! `taipan serve` and `taipan deploy` end to end: deploy with the CLI,
//! routing, versions and rollback, failed deploys, restarts, limits, tokens,
//! tenants that cannot see each other.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::harness::{CONFIG, Server, project, taipan};

const TOKEN: &str = "test-admin-token-0123456789";

fn cli(admin: &str, args: &[&str], token: &str) -> Output {
    taipan()
        .args(args)
        .args(["--server", admin, "--token", token])
        .output()
        .unwrap()
}

fn ok(output: Output) -> String {
    let text = crate::harness::text_of(&output);
    assert!(output.status.success(), "{text}");
    text
}

fn worker(name: &str, extra_config: &str, body: &str) -> tempfile::TempDir {
    let config = CONFIG.replace("name = \"t\"", &format!("name = \"{name}\"")) + extra_config;
    project(&[("wrangler.toml", &config), ("src/entry.py", body)])
}

fn saying(text: &str) -> String {
    format!(
        "from workers import Response\n\nasync def on_fetch(request):\n    return Response({text:?})\n"
    )
}

#[test]
fn deploy_versions_rollback_failed_deploy_restart_and_delete() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--admin-token", TOKEN]);
    let app = worker("app", "", &saying("one"));
    let dir = app.path().to_str().unwrap();

    let out = ok(cli(&server.admin, &["deploy", dir], TOKEN));
    assert!(out.contains("Deployed app v1"), "{out}");
    assert_eq!(server.host_text("app.localhost", "/"), (200, "one".into()));

    // A wrong token changes nothing.
    std::fs::write(app.path().join("src/entry.py"), saying("two")).unwrap();
    let refused = cli(&server.admin, &["deploy", dir], "wrong-token-0123456789");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused the admin token"));
    assert_eq!(server.host_text("app.localhost", "/"), (200, "one".into()));

    ok(cli(&server.admin, &["deploy", dir], TOKEN));
    assert_eq!(server.host_text("app.localhost", "/"), (200, "two".into()));
    // Both versions start from one base: each build keeps only its snapshot.
    assert_one_base_and_snapshots(data.path(), 2);

    // A deploy that fails to build leaves v2 serving and no v3 behind.
    std::fs::write(app.path().join("src/entry.py"), "def on_fetch(request:\n").unwrap();
    let failed = cli(&server.admin, &["deploy", dir], TOKEN);
    assert!(!failed.status.success());
    let message = String::from_utf8_lossy(&failed.stderr);
    assert!(
        message.contains("400") && message.contains("src/entry.py:1"),
        "{message}"
    );
    assert_eq!(server.host_text("app.localhost", "/"), (200, "two".into()));

    let versions = ok(cli(&server.admin, &["versions", "--name", "app"], TOKEN));
    assert!(
        versions.contains("v1") && versions.contains("v2") && !versions.contains("v3"),
        "{versions}"
    );
    assert!(
        versions
            .lines()
            .any(|l| l.starts_with("v2") && l.ends_with("(serving)")),
        "{versions}"
    );

    ok(cli(
        &server.admin,
        &["rollback", "v1", "--name", "app"],
        TOKEN,
    ));
    assert_eq!(server.host_text("app.localhost", "/"), (200, "one".into()));

    // After a restart the current version serves again, without a rebuild.
    let builds_before = std::fs::read_dir(data.path().join("artifacts"))
        .unwrap()
        .count();
    let output = server.stop();
    assert!(output.contains("Stopped."), "{output}");
    let server = Server::serve(data.path(), &["--admin-token", TOKEN]);
    assert!(
        server.output().contains("Serving 1 worker(s)"),
        "{}",
        server.output()
    );
    // Restored dormant: no standby sandboxes (nor memory image) until its
    // first request. (A linked worker's two standbys take milliseconds.)
    std::thread::sleep(Duration::from_millis(500));
    let metrics = Server::client()
        .get(format!("{}/metrics", server.admin))
        .bearer_auth(TOKEN)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("taipan_sandboxes{worker=\"app\",state=\"standby\"} 0"),
        "{metrics}"
    );
    assert_eq!(server.host_text("app.localhost", "/"), (200, "one".into()));
    assert_eq!(
        std::fs::read_dir(data.path().join("artifacts"))
            .unwrap()
            .count(),
        builds_before
    );

    ok(cli(&server.admin, &["delete", "--name", "app"], TOKEN));
    assert_eq!(server.host_text("app.localhost", "/").0, 404);
}

/// A worker keeps its last `--versions-kept` versions; the builds only
/// forgotten versions and deleted workers used, and then their base, are
/// removed from the data dir, and a later deploy makes the base again.
#[test]
fn forgotten_versions_and_deleted_workers_give_their_disk_back() {
    let data = tempfile::tempdir().unwrap();
    let args = ["--admin-token", TOKEN, "--versions-kept", "2"];
    let server = Server::serve(data.path(), &args);
    let app = worker("app", "", &saying("one"));
    let dir = app.path().to_str().unwrap();
    for text in ["one", "two", "three"] {
        std::fs::write(app.path().join("src/entry.py"), saying(text)).unwrap();
        ok(cli(&server.admin, &["deploy", dir], TOKEN));
    }
    let versions = ok(cli(&server.admin, &["versions", "--name", "app"], TOKEN));
    assert!(
        !versions.contains("v1") && versions.contains("v2") && versions.contains("v3"),
        "{versions}"
    );
    settles(|| builds(data.path()) == 2, "v1's build is removed");
    let refused = cli(&server.admin, &["rollback", "v1", "--name", "app"], TOKEN);
    assert!(!refused.status.success());
    ok(cli(
        &server.admin,
        &["rollback", "v2", "--name", "app"],
        TOKEN,
    ));
    assert_eq!(server.host_text("app.localhost", "/"), (200, "two".into()));

    // A second worker on the same base; deleting the first keeps the base.
    let other = worker("other", "", &saying("other"));
    ok(cli(
        &server.admin,
        &["deploy", other.path().to_str().unwrap()],
        TOKEN,
    ));
    ok(cli(&server.admin, &["delete", "--name", "app"], TOKEN));
    settles(|| builds(data.path()) == 1, "app's builds are removed");
    assert_one_base_and_snapshots(data.path(), 1);
    assert_eq!(
        server.host_text("other.localhost", "/"),
        (200, "other".into())
    );

    // The last worker gone: its base and reference image go too.
    ok(cli(&server.admin, &["delete", "--name", "other"], TOKEN));
    let bases = data.path().join("bases");
    settles(
        || builds(data.path()) == 0 && std::fs::read_dir(&bases).unwrap().count() == 0,
        "the base is removed",
    );
    assert!(
        server
            .output()
            .contains("builds, 1 bases, 0 reference images"),
        "{}",
        server.output()
    );

    // And comes back with the next deploy.
    ok(cli(&server.admin, &["deploy", dir], TOKEN));
    assert_eq!(
        server.host_text("app.localhost", "/"),
        (200, "three".into())
    );
    assert_one_base_and_snapshots(data.path(), 1);
}

/// A request in flight when its worker is deleted finishes from the
/// build's files (a module it imports only then), which the sweep after the
/// delete spares; the next sweep removes them.
#[test]
fn a_deleted_workers_request_in_flight_finishes_from_its_build() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--admin-token", TOKEN]);
    let handler = "import asyncio\nfrom workers import Response\n\n\
        async def on_fetch(request):\n    await asyncio.sleep(1.5)\n    \
        import later\n    return Response(later.TEXT)\n";
    let app = worker("app", "", handler);
    std::fs::write(app.path().join("src/later.py"), "TEXT = 'imported late'\n").unwrap();
    ok(cli(
        &server.admin,
        &["deploy", app.path().to_str().unwrap()],
        TOKEN,
    ));
    let url = server.url.clone();
    let in_flight = std::thread::spawn(move || {
        let response = Server::client()
            .get(format!("{url}/"))
            .header("host", "app.localhost")
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    });
    std::thread::sleep(Duration::from_millis(500));
    ok(cli(&server.admin, &["delete", "--name", "app"], TOKEN));
    assert_eq!(in_flight.join().unwrap(), (200, "imported late".into()));
    assert_eq!(
        builds(data.path()),
        1,
        "the sweep after the delete spared it"
    );

    let other = worker("other", "", &saying("other"));
    ok(cli(
        &server.admin,
        &["deploy", other.path().to_str().unwrap()],
        TOKEN,
    ));
    settles(
        || builds(data.path()) == 1 && !any_build_says(data.path(), "later"),
        "app's build goes",
    );
}

/// Whether a build in the data dir has a module named `module` in its source.
fn any_build_says(data: &Path, module: &str) -> bool {
    std::fs::read_dir(data.join("artifacts"))
        .unwrap()
        .any(|e| e.unwrap().path().join(format!("src/{module}.py")).exists())
}

/// A build on a base whose libraries were linked before runs the base's
/// instrumented component as it is (no link, instrumentation or
/// validation); with the kept plan damaged, it links again.
#[test]
fn a_deploy_on_a_known_base_reuses_its_linked_component() {
    let data = tempfile::tempdir().unwrap();
    let debug = [(
        "TAIPAN_LOG".to_string(),
        "info,taipan_build=debug".to_string(),
    )];
    let server = Server::serve_env(data.path(), &["--admin-token", TOKEN], &debug);
    let app = worker("app", "", &saying("one"));
    let dir = app.path().to_str().unwrap();
    ok(cli(&server.admin, &["deploy", dir], TOKEN));
    let reused = || {
        server
            .output()
            .matches("reused the base's instrumented component")
            .count()
    };
    let linked = || server.output().matches("linked and instrumented").count();
    let plans: Vec<_> = std::fs::read_dir(data.path().join("bases"))
        .unwrap()
        .flat_map(|base| std::fs::read_dir(base.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "plan"))
        .collect();
    assert_eq!(plans.len(), 1, "{plans:?}");
    assert!(
        std::fs::read_to_string(&plans[0])
            .unwrap()
            .starts_with("memory ")
    );

    let (reused_before, linked_before) = (reused(), linked());
    std::fs::write(app.path().join("src/entry.py"), saying("two")).unwrap();
    ok(cli(&server.admin, &["deploy", dir], TOKEN));
    assert_eq!(server.host_text("app.localhost", "/"), (200, "two".into()));
    assert_eq!(
        (reused(), linked()),
        (reused_before + 1, linked_before),
        "{}",
        server.output()
    );

    // Cut short (its globals lost): it would capture a partial state.
    std::fs::write(&plans[0], "memory 0\n").unwrap();
    std::fs::write(app.path().join("src/entry.py"), saying("three")).unwrap();
    ok(cli(&server.admin, &["deploy", dir], TOKEN));
    assert_eq!(
        server.host_text("app.localhost", "/"),
        (200, "three".into())
    );
    assert_eq!(linked(), linked_before + 1, "{}", server.output());
    // ... and keeps the plan again for the next.
    std::fs::write(app.path().join("src/entry.py"), saying("four")).unwrap();
    ok(cli(&server.admin, &["deploy", dir], TOKEN));
    assert_eq!(server.host_text("app.localhost", "/"), (200, "four".into()));
    assert_eq!((reused(), linked()), (reused_before + 2, linked_before + 1));
}

/// Complete builds in the data dir.
fn builds(data: &Path) -> usize {
    std::fs::read_dir(data.join("artifacts"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("complete").exists())
        .count()
}

/// Wait (up to 30 s) until `done`: the sweep runs after the admin call answers.
fn settles(done: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The data dir holds one base (its initialized component) and `builds`
/// builds, each with a snapshot and no component of its own.
fn assert_one_base_and_snapshots(data: &Path, builds: usize) {
    let bases: Vec<_> = std::fs::read_dir(data.join("bases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(bases.len(), 1, "{bases:?}");
    assert!(bases[0].join("component.wasm").is_file());
    // The image the builds' memory images are compressed against.
    let references = std::fs::read_dir(&bases[0])
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            let name = name.to_string_lossy();
            name.starts_with("reference-") && name.ends_with(".img")
        })
        .count();
    assert_eq!(references, 1, "{:?}", bases[0]);
    let artifacts: Vec<_> = std::fs::read_dir(data.join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("complete").exists())
        .collect();
    assert_eq!(artifacts.len(), builds, "{artifacts:?}");
    for artifact in artifacts {
        assert!(artifact.join("snapshot/snapshot.json").is_file());
        assert!(artifact.join("snapshot/memory.img.zst").is_file());
        assert!(!artifact.join("component.wasm").exists());
    }
}

#[test]
fn a_build_whose_base_is_gone_says_so_and_a_deploy_rebuilds_it() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--admin-token", TOKEN]);
    let app = worker("app", "", &saying("one"));
    let dir = app.path().to_str().unwrap();
    ok(cli(&server.admin, &["deploy", dir], TOKEN));
    assert_eq!(server.host_text("app.localhost", "/"), (200, "one".into()));
    server.stop();

    std::fs::remove_dir_all(data.path().join("bases")).unwrap();
    restart_says_then_a_deploy_rebuilds(
        data.path(),
        dir,
        "the base this build starts from is missing",
    );

    // Only the reference image its memory image is compressed against gone:
    // the same, from the other check.
    for base in std::fs::read_dir(data.path().join("bases")).unwrap() {
        for file in std::fs::read_dir(base.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.to_string_lossy().ends_with(".img") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    restart_says_then_a_deploy_rebuilds(data.path(), dir, "reference image");
}

/// Start a server on `data`: it says `message` (with a hint) and does not
/// serve `app`; deploying `dir` again rebuilds it, and it serves.
fn restart_says_then_a_deploy_rebuilds(data: &Path, dir: &str, message: &str) {
    let server = Server::serve(data, &["--admin-token", TOKEN]);
    assert!(
        server.wait_for(message, 1, Duration::from_secs(30)),
        "{}",
        server.output()
    );
    assert!(
        server.output().contains("hint: build the worker again"),
        "{}",
        server.output()
    );
    assert_ne!(server.host_text("app.localhost", "/").0, 200);
    ok(cli(&server.admin, &["deploy", dir], TOKEN));
    assert_eq!(server.host_text("app.localhost", "/"), (200, "one".into()));
    assert_one_base_and_snapshots(data, 1);
}

#[test]
fn routes_by_host_and_path_and_tenants_are_isolated() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--insecure-local"]);
    let probe = r#"
import os
from workers import Response

SECRET = "site-secret-of-" + __name__
state = []

async def on_fetch(request):
    state.append(request.url)
    seen = {}
    for root in ("/", "/2", "/0"):
        try:
            seen[root] = sorted(os.listdir(root))
        except OSError as e:
            seen[root] = str(e)
    try:
        other = open("TARGET").read()
    except OSError as e:
        other = "refused: " + type(e).__name__
    return Response.json({"who": "WHO", "requests_seen": len(state), "seen": seen, "other": other})
"#;
    let site = worker(
        "site",
        "routes = [\"site.test/*\"]\n",
        &probe
            .replace("WHO", "site")
            .replace("TARGET", "/etc/hostname"),
    );
    let api_secret = "api secret file contents";
    let api = worker(
        "api",
        "routes = [{ pattern = \"site.test/api/*\", zone_name = \"site.test\" }]\n",
        &probe
            .replace("WHO", "api")
            .replace("TARGET", "/2/secret.txt"),
    );
    std::fs::write(api.path().join("src/secret.txt"), api_secret).unwrap();
    let plain = worker("plain", "", &saying("plain"));
    for w in [&site, &api, &plain] {
        ok(cli(
            &server.admin,
            &["deploy", w.path().to_str().unwrap()],
            "",
        ));
    }

    let json = |host: &str, path: &str| -> serde_json::Value {
        let (status, body) = server.host_text(host, path);
        assert_eq!(status, 200, "{host}{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    assert_eq!(json("site.test", "/x")["who"], "site");
    assert_eq!(
        json("site.test:8080", "/api/v1")["who"],
        "api",
        "the longer route wins"
    );
    assert_eq!(
        server.host_text("plain.localhost", "/"),
        (200, "plain".into())
    );
    assert_eq!(
        server.host_text("site.localhost", "/").0,
        404,
        "routed workers have no default host"
    );
    assert_eq!(server.host_text("nobody.test", "/").0, 404);

    // The api worker reads its own file; the site worker cannot read the host's files.
    let api_view = json("site.test", "/api/read");
    assert_eq!(api_view["other"], api_secret);
    let site_view = json("site.test", "/read");
    assert!(
        site_view["other"].as_str().unwrap().starts_with("refused"),
        "{site_view}"
    );
    // Each sees only its own source under /2, and nothing of the other's state.
    assert!(!site_view.to_string().contains("secret.txt"), "{site_view}");
    assert!(
        !site_view["seen"]
            .to_string()
            .contains(data.path().to_str().unwrap())
    );
}

#[test]
fn config_limits_fresh_sandboxes_and_tail() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(
        data.path(),
        &["--insecure-local", "--fresh-sandbox-per-request"],
    );
    let body = r#"
from workers import Response

hits = 0

async def on_fetch(request):
    global hits
    hits += 1
    if request.url.endswith("/loop"):
        while True:
            pass
    if request.url.endswith("/eat"):
        hog = []
        while True:
            hog.append(bytearray(8 << 20))
    if request.url.endswith("/big"):
        return Response("x" * 2_000_000)
    print("handled", request.url.rsplit("/", 1)[-1])
    return Response.json({"hits": hits})
"#;
    let app = worker(
        "limited",
        "[limits]\ncpu_ms = 300\nmemory_mb = 48\nrequest_body_mb = 1\nresponse_body_mb = 1\n",
        body,
    );
    ok(cli(
        &server.admin,
        &["deploy", app.path().to_str().unwrap()],
        "",
    ));

    let mut tail = taipan()
        .args(["tail", "--name", "limited", "--server", &server.admin])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    // Every request gets a fresh sandbox: module state never carries over.
    for _ in 0..3 {
        let (status, body) = server.host_text("limited.localhost", "/count");
        assert_eq!((status, body.trim()), (200, "{\"hits\":1}"));
    }
    let (status, body) = server.host_text("limited.localhost", "/loop");
    assert_eq!(status, 503, "{body}");
    assert!(
        server.wait_for(
            "exceeded the cpu_time limit (300ms)",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        server.output()
    );
    assert_eq!(server.host_text("limited.localhost", "/count").0, 200);

    // Memory: the sandbox's growth is refused at 48 MiB; Python sees MemoryError.
    let (status, body) = server.host_text("limited.localhost", "/eat");
    assert!(status == 500 || status == 503, "{status} {body}");
    // Bodies: 1 MB each way, from the worker's own [limits].
    let reply = server.declare_body("limited.localhost", 1_500_000);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    let (status, body) = server.host_text("limited.localhost", "/big");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("max_response_body"), "{body}");
    assert!(
        server.wait_for(
            "over the max_response_body limit (1000000 bytes)",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        server.output()
    );
    assert_eq!(server.host_text("limited.localhost", "/count").0, 200);

    std::thread::sleep(Duration::from_millis(500));
    let _ = tail.kill();
    let output = tail.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("GET /count 200"), "{text}");
    assert!(text.contains("GET /count | handled count"), "{text}");
    assert!(text.contains("GET /loop 503"), "{text}");
}

/// A worker with no request for `--idle-seconds` gives its sandboxes up:
/// its next request starts from the snapshot (module state starts over).
#[test]
fn an_idle_worker_releases_its_sandboxes_and_serves_again() {
    let bad = taipan()
        .args(["serve", "--insecure-local", "--idle-seconds", "0"])
        .output()
        .unwrap();
    let text = crate::harness::text_of(&bad);
    assert!(!bad.status.success(), "{text}");
    assert!(text.contains("--idle-seconds 0 is out of range"), "{text}");
    assert!(text.contains("hint: give 1 to 86400 seconds"), "{text}");

    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--insecure-local", "--idle-seconds", "2"]);
    let body = "from workers import Response\n\nhits = 0\n\nasync def on_fetch(request):\n    global hits\n    hits += 1\n    return Response(str(hits))\n";
    let app = worker("sleepy", "", body);
    ok(cli(
        &server.admin,
        &["deploy", app.path().to_str().unwrap()],
        "",
    ));
    assert_eq!(server.host_text("sleepy.localhost", "/"), (200, "1".into()));
    assert_eq!(
        server.host_text("sleepy.localhost", "/"),
        (200, "2".into()),
        "warm"
    );
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(
        server.host_text("sleepy.localhost", "/"),
        (200, "1".into()),
        "after idling, a fresh sandbox"
    );
    assert_eq!(server.host_text("sleepy.localhost", "/"), (200, "2".into()));
}

#[test]
fn admin_access_rules() {
    let data = tempfile::tempdir().unwrap();
    let refuse = |args: &[&str]| {
        let out = taipan()
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .args(args)
            .env_remove("TAIPAN_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        refuse(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .contains("needs a token")
    );
    assert!(refuse(&["--insecure-local", "--admin-listen", "0.0.0.0:0"]).contains("loopback"));
    assert!(refuse(&["--admin-token", "short"]).contains("too short"));

    let server = Server::serve(data.path(), &["--admin-token", TOKEN]);
    let client = Server::client();
    let status =
        |request: reqwest::blocking::RequestBuilder| request.send().unwrap().status().as_u16();
    assert_eq!(
        status(client.get(format!("{}/api/workers", server.admin))),
        401
    );
    assert_eq!(
        status(
            client
                .get(format!("{}/api/workers", server.admin))
                .bearer_auth("nope")
        ),
        401
    );
    assert_eq!(
        status(
            client
                .delete(format!("{}/api/workers/x", server.admin))
                .bearer_auth("nope")
        ),
        401
    );
    assert_eq!(
        status(
            client
                .get(format!("{}/api/workers", server.admin))
                .bearer_auth(TOKEN)
        ),
        200
    );
    // Not a tar: a clean 400, nothing recorded.
    let response = client
        .post(format!("{}/api/deploy", server.admin))
        .bearer_auth(TOKEN)
        .body("not a tar")
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        !Path::new(&data.path().join("workers"))
            .read_dir()
            .unwrap()
            .any(|_| true)
    );
}

#[test]
fn saturated_workers_queue_then_answer_503_with_retry_after() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(
        data.path(),
        &[
            "--insecure-local",
            "--max-sandboxes",
            "1",
            "--max-queue",
            "1",
        ],
    );
    let body = "import asyncio\nfrom workers import Response\n\nasync def on_fetch(request):\n    await asyncio.sleep(1.5)\n    return Response('done')\n";
    let app = worker("busy", "", body);
    ok(cli(
        &server.admin,
        &["deploy", app.path().to_str().unwrap()],
        "",
    ));
    let url = server.url.clone();
    let requests: Vec<_> = (0..3)
        .map(|i| {
            let url = url.clone();
            std::thread::sleep(Duration::from_millis(100 * i));
            std::thread::spawn(move || {
                let response = Server::client()
                    .get(&url)
                    .header("host", "busy.localhost")
                    .send()
                    .unwrap();
                (
                    response.status().as_u16(),
                    response.headers().get("retry-after").is_some(),
                )
            })
        })
        .collect();
    let mut results: Vec<(u16, bool)> = requests.into_iter().map(|r| r.join().unwrap()).collect();
    results.sort();
    // One runs, one waits its turn, one is over the queue bound.
    assert_eq!(results, [(200, false), (200, false), (503, true)]);
    assert!(
        server.output().contains("over the max_queue limit (1)"),
        "{}",
        server.output()
    );
}

#[test]
fn a_server_killed_mid_deploy_restarts_on_the_previous_version() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--insecure-local"]);
    let app = worker("durable", "", &saying("v1 here"));
    ok(cli(
        &server.admin,
        &["deploy", app.path().to_str().unwrap()],
        "",
    ));

    // v2 imports a package (vendored in python_modules/) that takes seconds
    // to import at build time, where a deploy alone takes less than one:
    // kill the server (SIGKILL) while it runs.
    std::fs::write(
        app.path().join("src/entry.py"),
        format!("import slow_import  # noqa: F401\n{}", saying("v2 here")),
    )
    .unwrap();
    std::fs::create_dir_all(app.path().join("python_modules")).unwrap();
    std::fs::write(
        app.path().join("python_modules/slow_import.py"),
        "import time\n\ntime.sleep(10)\n",
    )
    .unwrap();
    let admin = server.admin.clone();
    let dir = app.path().to_str().unwrap().to_string();
    let deploy = std::thread::spawn(move || cli(&admin, &["deploy", &dir], ""));
    std::thread::sleep(Duration::from_millis(1500));
    drop(server);
    let deployed = deploy.join().unwrap();
    assert!(
        !deployed.status.success(),
        "{}",
        crate::harness::text_of(&deployed)
    );

    let server = Server::serve(data.path(), &["--insecure-local"]);
    assert_eq!(
        server.host_text("durable.localhost", "/"),
        (200, "v1 here".into())
    );
    let versions = ok(cli(&server.admin, &["versions", "--name", "durable"], ""));
    assert!(
        versions.contains("v1") && !versions.contains("v2"),
        "{versions}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(data.path().join("artifacts"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And the next deploy works normally.
    ok(cli(
        &server.admin,
        &["deploy", app.path().to_str().unwrap()],
        "",
    ));
    assert_eq!(
        server.host_text("durable.localhost", "/"),
        (200, "v2 here".into())
    );
}

/// The probes a load balancer uses, the metrics Prometheus scrapes, and a
/// drain on SIGTERM: `/readyz` fails while requests are still answered.
#[test]
fn health_readiness_metrics_and_drain() {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::serve(
        data.path(),
        &["--admin-token", TOKEN, "--drain-seconds", "3"],
    );
    let admin = server.admin.clone();
    let get = |path: &str, token: Option<&str>| {
        let mut request = Server::client().get(format!("{admin}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    // Probes need no token; metrics do.
    assert_eq!(get("/healthz", None), (200, "ok\n".into()));
    assert_eq!(get("/readyz", None), (200, "ready\n".into()));
    assert_eq!(get("/metrics", None).0, 401);

    let app = worker("app", "", &saying("one"));
    ok(cli(
        &server.admin,
        &["deploy", app.path().to_str().unwrap()],
        TOKEN,
    ));
    for _ in 0..3 {
        assert_eq!(server.host_text("app.localhost", "/"), (200, "one".into()));
    }
    let (status, metrics) = get("/metrics", Some(TOKEN));
    assert_eq!(status, 200);
    for line in [
        "taipan_requests_total{worker=\"app\",status=\"2xx\"} 3",
        "taipan_request_duration_seconds_count{worker=\"app\"} 3",
        "taipan_deploys_total{outcome=\"ok\"} 1",
        "taipan_workers 1",
        "taipan_websockets_open 0",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        metrics.contains("taipan_sandboxes{worker=\"app\",state=\"idle\"}"),
        "{metrics}"
    );

    // SIGTERM: not ready, yet still serving during --drain-seconds.
    server.terminate();
    let started = std::time::Instant::now();
    while get("/readyz", None).0 != 503 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "readyz never failed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.host_text("app.localhost", "/"), (200, "one".into()));
    while !server.exited() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the server did not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it drained for --drain-seconds"
    );
}
