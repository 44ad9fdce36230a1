//! Nothing of the build machine's Python reaches a worker.

use crate::harness::{CONFIG, Server, project};

#[test]
fn host_virtualenv_and_pythonpath_never_leak_into_a_build() {
    let venv = project(&[(
        "lib/python3.14/site-packages/leaky_host_module.py",
        "LEAKED = True\n",
    )]);
    let site = venv.path().join("lib/python3.14/site-packages");
    let worker = r#"
import sys
from workers import Response

try:
    import leaky_host_module
    leaked = True
except ImportError:
    leaked = False

async def on_fetch(request):
    return Response.json({"leaked": leaked, "path": sys.path})
"#;
    let dir = project(&[("wrangler.toml", CONFIG), ("src/entry.py", worker)]);
    let server = Server::dev_with_env(
        dir.path(),
        &[],
        &[("VIRTUAL_ENV", venv.path()), ("PYTHONPATH", &site)],
    );
    let (status, body) = server.text("/");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["leaked"], false, "{body}");
    assert!(!body.contains(venv.path().to_str().unwrap()), "{body}");
}

/// A build runs the worker's code with folders other builds and running
/// sandboxes share: the standard library (one unpacked copy per Taipan
/// version), the installed packages (hard links into the set every build
/// with the same lock uses), the SDK, and the SDK's cached bytecode. That
/// code can read them all and change none.
#[test]
fn a_build_cannot_change_what_other_builds_share() {
    let worker = r#"
from workers import Response

def attempt(path):
    try:
        with open(path, "w") as f:
            f.write("print('planted')\n")
        return "written"
    except OSError as e:
        return type(e).__name__

AT_BUILD = {
    "stdlib_new": attempt("/python/taipan_planted.py"),
    "stdlib_existing": attempt("/python/json/tool.py"),
    "sdk": attempt("/0/workers/_planted.py"),
    "packages": attempt("/3/taipan_planted.py"),
    "bytecode": attempt("/pycache/python/json/__init__.cpython-314.pyc"),
}

async def on_fetch(request):
    return Response.json(AT_BUILD)
"#;
    let config = format!("{CONFIG}snapshot = \"full\"\n");
    let dir = project(&[("wrangler.toml", &config), ("src/entry.py", worker)]);
    let server = Server::dev(dir.path(), &[]);
    let (status, body) = server.text("/");
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    for key in [
        "stdlib_new",
        "stdlib_existing",
        "sdk",
        "packages",
        "bytecode",
    ] {
        let outcome = json[key].as_str().unwrap_or_default();
        assert!(!outcome.is_empty() && outcome != "written", "{key}: {body}");
    }
    let cache = crate::harness::repo_root().join("target/taipan-test-cache");
    let planted = walk(&cache.join("python"))
        .iter()
        .any(|p| p.ends_with("taipan_planted.py"));
    assert!(!planted, "a build planted a module in {}", cache.display());
    // The SDK's and the standard library's bytecode is cached (by Taipan's
    // own build, not this one) and nothing of this worker's is.
    let bytecode = walk(&cache.join("bytecode"));
    assert!(
        bytecode
            .iter()
            .any(|p| p.ends_with("python/json/__init__.cpython-314.pyc")),
        "no cached bytecode under {}",
        cache.display()
    );
    assert!(
        bytecode
            .iter()
            .all(|p| !p.to_string_lossy().contains("/2/"))
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// `--fresh-sandbox-per-request`: every request starts from the snapshot,
/// whichever pooled slot it lands in and however much memory the request
/// before it dirtied (here 16 MiB, past what a slot keeps resident between
/// sandboxes, so both ways a slot is reset are crossed). Checked with a
/// snapshot of the imports and of the whole module, with standby sandboxes
/// and without, one request at a time and eight at once.
#[test]
fn a_fresh_sandbox_never_sees_an_earlier_requests_state() {
    let body = r#"
from workers import Response

seen = []
blob = None

async def on_fetch(request):
    global blob
    fresh = not seen and blob is None
    marker = request.url.rsplit("=", 1)[-1]
    seen.append(marker)
    blob = marker.encode().ljust(64, b".") * (256 * 1024)
    return Response.json({"fresh": fresh, "seen": seen, "bytes": len(blob)})
"#;
    let imports = project(&[
        (
            "wrangler.toml",
            &(CONFIG.replace("name = \"t\"", "name = \"imports\"") + "snapshot = \"imports\"\n"),
        ),
        ("src/entry.py", body),
    ]);
    let full = project(&[
        (
            "wrangler.toml",
            &(CONFIG.replace("name = \"t\"", "name = \"full\"") + "snapshot = \"full\"\n"),
        ),
        ("src/entry.py", body),
    ]);
    let data = tempfile::tempdir().unwrap();
    for standby in ["2", "0"] {
        let server = Server::serve(
            data.path(),
            &[
                "--insecure-local",
                "--fresh-sandbox-per-request",
                "--standby",
                standby,
            ],
        );
        if standby == "2" {
            crate::harness::deploy_ok(&server, imports.path());
            crate::harness::deploy_ok(&server, full.path());
        }
        for host in ["imports.localhost", "full.localhost"] {
            let check = |marker: String| {
                let (status, body) = server.host_text(host, &format!("/?m={marker}"));
                assert_eq!(status, 200, "{body}\n{}", server.output());
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(
                    json,
                    serde_json::json!({"fresh": true, "seen": [marker], "bytes": 16 << 20}),
                    "{host}, standby {standby}: a sandbox saw an earlier request's state"
                );
            };
            for i in 0..10 {
                check(format!("one-{i}"));
            }
            std::thread::scope(|s| {
                for t in 0..8 {
                    let check = &check;
                    s.spawn(move || {
                        for i in 0..4 {
                            check(format!("many-{t}-{i}"));
                        }
                    });
                }
            });
        }
    }
}
