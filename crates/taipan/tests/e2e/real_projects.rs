//! Real projects run unchanged: placeholder binding ids, `[env.*]`
//! environments (dev, d1, serve), D1 scripts that create a table and then use
//! it, vendored packages, and no internal values in `os.environ`.

use serde_json::Value;

use crate::harness::{Server, d1, project, taipan};

const CONFIG: &str = r#"name = "quotes"
main = "src/entry.py"
compatibility_date = "2025-11-01"
compatibility_flags = ["python_workers"]

[vars]
MODE = "production"

# Placeholders, as Cloudflare's templates ship them.
[[kv_namespaces]]
binding = "KV"
id = "<YOUR_KV_NAMESPACE_ID>"

[[d1_databases]]
binding = "DB"
database_name = "quotes"
database_id = "<YOUR_DATABASE_ID>"

[env.staging.vars]
MODE = "staging"

[[env.staging.kv_namespaces]]
binding = "KV"
id = "staging kv/namespace"

[[env.staging.d1_databases]]
binding = "DB"
database_name = "quotes"
database_id = "<YOUR_STAGING_DATABASE_ID>"
"#;

const WORKER: &str = r#"
import os

import helpers
import vendored_dep
from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3]
        if path == "mode":
            return Response(f"{self.env.MODE} {getattr(self.env, 'API_KEY', '-')}")
        if path == "environ":
            return Response.json(sorted(os.environ))
        if path == "kv":
            await self.env.KV.put("k", self.env.MODE)
            return Response(await self.env.KV.get("k"))
        if path == "quotes":
            rows = await self.env.DB.prepare("SELECT quote FROM qtable ORDER BY id").all()
            return Response.json([r["quote"] for r in rows.results])
        if path == "vendored":
            return Response(f"{vendored_dep.WHERE} | {helpers.vendored_where()}")
        return Response("?", status=404)
"#;

/// Cloudflare's `04-query-d1/db_init.sql`: the INSERT names the table the
/// CREATE before it makes, so it cannot be prepared up front.
const DB_INIT: &str = r#"CREATE TABLE IF NOT EXISTS qtable (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    quote TEXT,
    author Text
);

INSERT INTO qtable (quote, author)
SELECT * FROM (
    VALUES
        ("This is a very cool quote", "Hood Chatham"),
        ("Some words of wisdom", "Dominik Picheta")
) WHERE NOT EXISTS (SELECT 1 FROM qtable);
"#;

fn quotes_project() -> tempfile::TempDir {
    project(&[
        ("wrangler.toml", CONFIG),
        ("src/entry.py", WORKER),
        (".dev.vars", "API_KEY=dev-secret\n"),
        (".dev.vars.staging", "API_KEY=staging-secret\n"),
        ("db_init.sql", DB_INIT),
        // Cloudflare's vendoring folder: on the path, not the worker's code.
        (
            "python_modules/vendored_dep/__init__.py",
            "WHERE = 'python_modules'\n",
        ),
        (
            "src/helpers.py",
            "from vendorpkg import core\n\n\ndef vendored_where():\n    return core.WHERE\n",
        ),
        // A package copied into src/: its pytest plugin and tests import
        // what the sandbox lacks, and nothing the worker imports uses them.
        ("src/vendorpkg/__init__.py", ""),
        ("src/vendorpkg/core.py", "WHERE = 'src/vendorpkg'\n"),
        (
            "src/vendorpkg/pytest_plugin.py",
            "import pytest\nimport trio\n",
        ),
        ("src/vendorpkg/tests/test_old.py", "print 'python 2'\n"),
    ])
}

fn json(server: &Server, path: &str) -> Value {
    let (status, body) = server.text(path);
    assert_eq!(status, 200, "{path}: {body}\n{}", server.output());
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_cloudflare_style_project_runs_in_each_environment() {
    let dir = quotes_project();
    let script = dir.path().join("db_init.sql");
    let ran = d1(
        dir.path(),
        &[
            "execute",
            "quotes",
            "--local",
            "--file",
            script.to_str().unwrap(),
        ],
    );
    assert!(ran.contains("Ran 2 statement(s)"), "{ran}");
    d1(
        dir.path(),
        &[
            "execute",
            "quotes",
            "--env",
            "staging",
            "--command",
            "CREATE TABLE qtable (id INTEGER PRIMARY KEY, quote TEXT); INSERT INTO qtable (quote) VALUES ('staging quote')",
        ],
    );

    let server = Server::dev(dir.path(), &[]);
    assert_eq!(server.text("/mode"), (200, "production dev-secret".into()));
    assert_eq!(server.text("/kv"), (200, "production".into()));
    assert_eq!(
        json(&server, "/quotes"),
        serde_json::json!(["This is a very cool quote", "Some words of wisdom"])
    );
    assert_eq!(
        server.text("/vendored"),
        (200, "python_modules | src/vendorpkg".into())
    );
    let environ = json(&server, "/environ");
    assert!(
        environ
            .as_array()
            .unwrap()
            .iter()
            .all(|k| !k.as_str().unwrap().starts_with("TAIPAN")),
        "internal values leak into os.environ: {environ}"
    );
    drop(server);

    let staging = Server::dev(dir.path(), &["--env", "staging"]);
    assert_eq!(
        staging.text("/mode"),
        (200, "staging staging-secret".into())
    );
    // Its own KV namespace and database, not production's.
    assert_eq!(staging.text("/kv"), (200, "staging".into()));
    assert_eq!(
        json(&staging, "/quotes"),
        serde_json::json!(["staging quote"])
    );
    drop(staging);

    // Each placeholder id has a file of its own, named safely.
    let mut files: Vec<String> = ["kv", "d1"]
        .iter()
        .flat_map(|kind| std::fs::read_dir(dir.path().join(".taipan/state").join(kind)).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sqlite"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with('~') && !f.contains(['<', '>', ' ', '/'])),
        "{files:?}"
    );

    // An environment the config does not define: an error naming the ones it has.
    let output = taipan()
        .args(["build", "--env", "prod"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no environment \"prod\"")
            && stderr.contains("environments defined: staging"),
        "{stderr}"
    );
}

#[test]
fn serve_deploys_an_environment_as_its_own_worker() {
    let dir = quotes_project();
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--insecure-local"]);
    for env in [None, Some("staging")] {
        let mut command = taipan();
        command
            .arg("deploy")
            .arg(dir.path())
            .args(["--server", &server.admin]);
        if let Some(env) = env {
            command.args(["--env", env]);
        }
        let output = command.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let name = env.map_or("quotes".to_string(), |e| format!("quotes-{e}"));
        assert!(stdout.contains(&format!("Deployed {name} v1")), "{stdout}");
    }
    assert_eq!(
        server.host_text("quotes.localhost", "/mode"),
        (200, "production -".into())
    );
    assert_eq!(
        server.host_text("quotes-staging.localhost", "/mode"),
        (200, "staging -".into())
    );
    assert_eq!(
        server.host_text("quotes-staging.localhost", "/kv"),
        (200, "staging".into())
    );
}

#[test]
fn boolean_environment_values_read_as_uv_reads_them() {
    let dir = project(&[
        ("wrangler.toml", crate::harness::CONFIG),
        ("src/entry.py", "def on_fetch(request):\n    pass\n"),
        ("requirements.txt", "nonexistent-package-for-taipan-tests\n"),
    ]);
    for (value, offline) in [
        ("1", true),
        ("yes", true),
        ("true", true),
        ("0", false),
        ("no", false),
    ] {
        let output = taipan()
            .arg("build")
            .arg(dir.path())
            .env("TAIPAN_NO_INDEX", value)
            // An index nobody listens on: asked only when the index is on.
            .env("TAIPAN_INDEX_URL", "http://127.0.0.1:9/simple")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(!stderr.contains("possible values"), "{value}: {stderr}");
        assert_eq!(
            stderr.contains("127.0.0.1:9"),
            !offline,
            "TAIPAN_NO_INDEX={value}: {stderr}"
        );
    }
    let output = taipan()
        .arg("build")
        .arg(dir.path())
        .env("TAIPAN_NO_INDEX", "maybe")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("maybe"));
}
