//! Edits rebuild and swap atomically; a failed rebuild keeps the old build serving.

use std::time::Duration;

use crate::harness::{CONFIG, Server, project};

const RELOAD_TIMEOUT: Duration = Duration::from_secs(300);

const FIRST: &str = r#"
import asyncio
from workers import Response

async def on_fetch(request, env):
    if request.url.endswith("/slow"):
        # Long enough for the edit below to be rebuilt while this runs.
        await asyncio.sleep(15)
        return Response("one " + env.WHO + " (slow)")
    return Response("one " + env.WHO)
"#;

#[test]
fn edits_reload_and_failed_builds_keep_the_old_one() {
    let dir = project(&[
        (
            "wrangler.toml",
            &format!("{CONFIG}\n[vars]\nWHO = \"v1\"\n"),
        ),
        ("src/entry.py", FIRST),
    ]);
    let server = Server::dev(dir.path(), &[]);
    assert_eq!(server.text("/"), (200, "one v1".to_string()));

    // A code edit, while a slow request is in flight: it finishes on the old build.
    let slow = {
        let url = format!("{}/slow", server.url);
        std::thread::spawn(move || Server::client().get(url).send().unwrap().text().unwrap())
    };
    std::thread::sleep(Duration::from_millis(300));
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
    assert_eq!(slow.join().unwrap(), "one v1 (slow)");

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
