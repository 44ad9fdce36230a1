//! Packages end to end, offline: requirements installed from the test
//! wheelhouse (`--no-index --find-links testdata/wheelhouse`), Starlette
//! through `asgi.fetch`, Django through `workers.wsgi.fetch`, Jinja2 with
//! MarkupSafe from its sdist, requests/httpx/urllib3 through the host, the
//! lock file, and clear errors for conflicts and native-only packages.

use serde_json::Value;

use crate::harness::{CONFIG, Server, deploy, example_copy, project, repo_root, taipan, upstream};

const WORKER: &str = include_str!("packages_worker.py");

fn offline() -> Vec<String> {
    let wheelhouse = repo_root().join("testdata/wheelhouse");
    vec![
        "--no-index".into(),
        "--find-links".into(),
        wheelhouse.to_string_lossy().into_owned(),
    ]
}

fn dev(dir: &std::path::Path, extra: &[&str]) -> Server {
    let mut args: Vec<String> = offline();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::dev(dir, &args)
}

fn json(server: &Server, path: &str) -> Value {
    let (status, body) = server.text(path);
    assert_eq!(status, 200, "{path}: {body}\n{}", server.output());
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

#[test]
fn starlette_and_django_examples_run_offline() {
    let starlette = example_copy("starlette");
    let server = dev(starlette.path(), &[]);
    let home = json(&server, "/?name=taipan");
    assert_eq!(home["message"], "Hello from Starlette on Taipan");
    assert_eq!(home["name"], "taipan");
    let shout = Server::client()
        .post(format!("{}/shout", server.url))
        .body("quiet")
        .send()
        .unwrap();
    assert_eq!(shout.status(), 201);
    assert_eq!(shout.headers()["x-served-by"], "starlette");
    assert_eq!(shout.text().unwrap(), "QUIET");
    let lock = std::fs::read_to_string(starlette.path().join("taipan.lock")).unwrap();
    assert!(
        lock.contains("name = \"starlette\"") && lock.contains("name = \"anyio\""),
        "{lock}"
    );
    assert!(lock.contains("sha256 = \""), "{lock}");
    drop(server);

    let django = example_copy("django");
    let server = dev(django.path(), &[]);
    let (status, page) = server.text("/?name=%3Cscript%3E");
    assert_eq!(status, 200, "{page}\n{}", server.output());
    assert_eq!(
        page,
        "<h1>Taipan</h1><p>Hello, &lt;script&gt;! You are visitor 1,234,567.</p>"
    );
    let echo = Server::client()
        .post(format!("{}/echo", server.url))
        .body(r#"{"a": [1, 2]}"#)
        .send()
        .unwrap();
    assert_eq!(echo.status(), 200);
    let echo: Value = echo.json().unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"]["a"][1], 2);
    assert_eq!(server.text("/missing").0, 404);
}

#[test]
fn clients_sdists_lock_and_late_imports_in_dev() {
    let dir = project(&[
        ("wrangler.toml", CONFIG),
        ("src/entry.py", WORKER),
        (
            "requirements.txt",
            "jinja2>=3.1  # MarkupSafe comes from its sdist\npyyaml\nrequests\nhttpx\nworkers-runtime-sdk\n",
        ),
    ]);
    let server = dev(dir.path(), &["--no-watch"]);
    let render = json(&server, "/render");
    assert_eq!(render["html"], "<p>&lt;b&gt;x&lt;/b&gt;</p>");
    assert_eq!(render["yaml"], "a:\n- 1\n- 2\n");
    assert_eq!(render["libyaml"], false, "PyYAML runs its pure-Python code");
    assert_eq!(server.text("/late"), (200, "42".to_string()));

    // The clients reach a local upstream through the host (dev allows loopback).
    let upstream = upstream();
    let clients = json(&server, &format!("/clients?url={upstream}"));
    assert_eq!(clients["requests"], "upstream POST r");
    assert_eq!(clients["requests_status"], 201);
    assert_eq!(clients["urllib3"], "upstream PUT u");
    assert_eq!(clients["httpx"], "upstream POST h");
    assert_eq!(clients["httpx_async"], "upstream PATCH a");

    // The lock names every file with its hash; the provided SDK is not in it.
    let lock = std::fs::read_to_string(dir.path().join("taipan.lock")).unwrap();
    for name in [
        "jinja2",
        "markupsafe",
        "pyyaml",
        "requests",
        "urllib3",
        "httpx",
        "httpcore",
        "h11",
    ] {
        assert!(
            lock.contains(&format!("name = \"{name}\"")),
            "{name}: {lock}"
        );
    }
    assert!(!lock.contains("workers-runtime-sdk"));
    assert!(lock.contains("filename = \"markupsafe-3.0.4.tar.gz\""));
    drop(server);

    // A build from the lock installs exactly it; a changed file is refused.
    let tampered = lock.replacen(
        "85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67",
        &"0".repeat(64),
        1,
    );
    assert_ne!(tampered, lock, "the lock pins jinja2's wheel by its sha256");
    std::fs::write(dir.path().join("taipan.lock"), tampered).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let output = taipan()
        .env("TAIPAN_CACHE_DIR", cache.path())
        .arg("build")
        .arg(dir.path())
        .args(offline())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("does not match the sha256 in taipan.lock"),
        "{stderr}"
    );
}

#[test]
fn serve_installs_on_deploy_and_bad_requirements_keep_the_old_version() {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec!["--insecure-local".to_string()];
    args.extend(offline());
    let native = tempfile::tempdir().unwrap();
    std::fs::write(
        native
            .path()
            .join("fastcore_native-1.0-cp314-cp314-manylinux_2_17_x86_64.whl"),
        b"a native wheel",
    )
    .unwrap();
    args.extend([
        "--find-links".into(),
        native.path().to_string_lossy().into_owned(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::serve(data.path(), &args);
    let dir = project(&[
        ("wrangler.toml", CONFIG),
        ("src/entry.py", WORKER),
        ("requirements.txt", "jinja2\npyyaml\nrequests\nhttpx\n"),
    ]);
    let output = deploy(&server, dir.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("packages: ") && stdout.contains("jinja2 3.1.6"),
        "{stdout}"
    );
    let host = |path: &str| server.host_text("t.localhost", path);
    let (status, body) = host("/render");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("&lt;b&gt;"), "{body}");
    // The SSRF rule holds for the clients too.
    let (_, refused) = host(&format!("/refused?url={}", upstream()));
    assert!(
        refused.contains("ConnectionError") && refused.contains("prohibited"),
        "{refused}"
    );
    assert!(refused.contains("ConnectError"), "{refused}");

    for (requirements, expected) in [
        ("jinja2<3\n", "cannot be installed together"),
        ("fastcore-native\n", "native code"),
        ("jinja2 >>= 3\n", "requirements.txt:1"),
    ] {
        std::fs::write(dir.path().join("requirements.txt"), requirements).unwrap();
        let output = deploy(&server, dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{requirements}");
        assert!(stderr.contains(expected), "{requirements}: {stderr}");
        // The previous version keeps serving.
        assert_eq!(host("/late"), (200, "42".to_string()));
    }
}
