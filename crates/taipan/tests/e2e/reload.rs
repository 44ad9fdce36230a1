//! Edits rebuild and swap atomically; a failed rebuild keeps the old build serving.

use std::time::Duration;

use crate::harness::{CONFIG, Server, project};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn edits_reload_and_failed_builds_keep_the_old_one() {
    let dir = project(&[
        (
            "wrangler.toml",
            &format!("{CONFIG}\n[vars]\nWHO = \"v1\"\n"),
        ),
        (
            "src/entry.py",
            "from workers import Response\n\nasync def on_fetch(request, env):\n    return Response('one ' + env.WHO)\n",
        ),
    ]);
    let server = Server::dev(dir.path(), &[]);
    assert_eq!(server.text("/"), (200, "one v1".to_string()));

    // A code edit.
    std::fs::write(
        dir.path().join("src/entry.py"),
        "from workers import Response\n\nasync def on_fetch(request, env):\n    return Response('two ' + env.WHO)\n",
    )
    .unwrap();
    assert!(
        server.wait_for("Reloaded t in ", 1, RELOAD_TIMEOUT),
        "{}",
        server.output()
    );
    assert_eq!(server.text("/"), (200, "two v1".to_string()));

    // A config edit.
    std::fs::write(
        dir.path().join("wrangler.toml"),
        format!("{CONFIG}\n[vars]\nWHO = \"v2\"\n"),
    )
    .unwrap();
    assert!(
        server.wait_for("Reloaded t in ", 2, RELOAD_TIMEOUT),
        "{}",
        server.output()
    );
    assert_eq!(server.text("/"), (200, "two v2".to_string()));

    // A broken edit: the error is printed, the last good build keeps serving.
    std::fs::write(dir.path().join("src/entry.py"), "def on_fetch(request:\n").unwrap();
    assert!(
        server.wait_for("The previous build keeps serving.", 1, RELOAD_TIMEOUT),
        "{}",
        server.output()
    );
    assert!(
        server.output().contains("src/entry.py:1"),
        "{}",
        server.output()
    );
    assert_eq!(server.text("/"), (200, "two v2".to_string()));
}
