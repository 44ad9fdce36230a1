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
