//! Bad input gives a clear message and a non-zero exit, never a panic.

use crate::harness::{CONFIG, Server, project, run};

fn dev_fails(dir: &std::path::Path) -> String {
    let output = run(&["dev", dir.to_str().unwrap(), "--port", "0", "--no-watch"]);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        !output.status.success(),
        "expected failure:\n{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stdout.contains("Ready on"), "{stdout}");
    stderr
}

#[test]
fn missing_config() {
    let dir = project(&[("src/entry.py", "")]);
    let err = dev_fails(dir.path());
    assert!(
        err.contains("no wrangler.toml, wrangler.jsonc or wrangler.json"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn malformed_toml_names_the_line() {
    let dir = project(&[
        (
            "wrangler.toml",
            "name = \"t\"\nmain = \"src/entry.py\ncompatibility_date = \"2025-11-01\"\n",
        ),
        ("src/entry.py", ""),
    ]);
    let err = dev_fails(dir.path());
    assert!(err.contains("wrangler.toml\":2"), "{err}");
}

#[test]
fn missing_main_file_names_file_line_and_key() {
    let dir = project(&[(
        "wrangler.toml",
        "name = \"t\"\nmain = \"src/nope.py\"\ncompatibility_date = \"2025-11-01\"\n",
    )]);
    let err = dev_fails(dir.path());
    assert!(
        err.contains("\"src/nope.py\", which does not exist"),
        "{err}"
    );
    assert!(err.contains("wrangler.toml\":2 (key `main`)"), "{err}");
}

#[test]
fn bad_and_future_dates() {
    let dir = project(&[
        (
            "wrangler.toml",
            "main = \"src/entry.py\"\ncompatibility_date = \"2025-02-30\"\n",
        ),
        ("src/entry.py", ""),
    ]);
    let err = dev_fails(dir.path());
    assert!(
        err.contains("is not a date") && err.contains(":2 (key `compatibility_date`)"),
        "{err}"
    );
    let dir = project(&[
        (
            "wrangler.json",
            "{\"main\": \"src/entry.py\",\n \"compatibility_date\": \"2999-01-01\"}",
        ),
        ("src/entry.py", ""),
    ]);
    let err = dev_fails(dir.path());
    assert!(err.contains("in the future") && err.contains(":2"), "{err}");
}

#[test]
fn python_syntax_error_names_file_and_line() {
    let dir = project(&[
        ("wrangler.toml", CONFIG),
        (
            "src/entry.py",
            "from workers import Response\n\ndef on_fetch(request)\n    return Response('x')\n",
        ),
    ]);
    let err = dev_fails(dir.path());
    assert!(err.contains("src/entry.py:3"), "{err}");
    assert!(err.contains("SyntaxError"), "{err}");
}

#[test]
fn failing_import_names_the_module_and_line() {
    let files = |config: &str| {
        project(&[
            ("wrangler.toml", config),
            (
                "src/entry.py",
                "import json\nfrom helper import thing\n\ndef on_fetch(request):\n    pass\n",
            ),
            ("src/helper.py", "import not_a_real_module_xyz\nthing = 1\n"),
        ])
    };
    // The default snapshot runs the main module: the traceback leads there.
    let err = dev_fails(files(CONFIG).path());
    assert!(err.contains("File \"src/helper.py\", line 1"), "{err}");
    assert!(
        err.contains("No module named 'not_a_real_module_xyz'"),
        "{err}"
    );
    // "imports" executes the import statements it finds, and says which.
    let dir = files(&format!("{CONFIG}snapshot = \"imports\"\n"));
    let err = dev_fails(dir.path());
    assert!(err.contains("src/helper.py:1"), "{err}");
    assert!(err.contains("not_a_real_module_xyz"), "{err}");
}

#[test]
fn exception_at_import_time_with_full_snapshot_shows_traceback() {
    let config = format!("{CONFIG}snapshot = \"full\"\n");
    let dir = project(&[
        ("wrangler.toml", &config),
        (
            "src/entry.py",
            "x = 1\nraise RuntimeError('boom at import')\n",
        ),
    ]);
    let err = dev_fails(dir.path());
    assert!(err.contains("RuntimeError: boom at import"), "{err}");
    assert!(err.contains("src/entry.py\", line 2"), "{err}");
}

/// The main module runs at build time by default: randomness its top-level
/// code asks for would be the same in every sandbox, so the build refuses it
/// with file:line and a hint; with `snapshot = "imports"` the top level runs
/// in each sandbox, at its first request, where randomness is fine.
#[test]
fn top_level_randomness_fails_the_build_unless_the_top_level_runs_per_sandbox() {
    let entry = "import uuid\nfrom js import Response\n\nINSTANCE = str(uuid.uuid4())\n\n\ndef on_fetch(request):\n    return Response.new(INSTANCE)\n";
    let dir = project(&[("wrangler.toml", CONFIG), ("src/entry.py", entry)]);
    let err = dev_fails(dir.path());
    assert!(err.contains("src/entry.py\", line 4"), "{err}");
    assert!(
        err.contains("os.urandom() was called by the worker's top-level code"),
        "{err}"
    );
    assert!(err.contains("snapshot = \"imports\""), "{err}");

    let config = format!("{CONFIG}snapshot = \"imports\"\n");
    let dir = project(&[("wrangler.toml", &config), ("src/entry.py", entry)]);
    let server = Server::dev(dir.path(), &["--no-watch"]);
    let (status, body) = server.text("/");
    assert_eq!((status, body.len()), (200, 36), "{body}");
}

#[test]
fn a_start_up_that_failed_runs_again_with_the_vars() {
    // The main module raises the first time a sandbox imports it (the
    // "imports" snapshot runs only its imports at build time), then imports.
    let config = format!("{CONFIG}snapshot = \"imports\"\n\n[vars]\nGREETING = \"hello again\"\n");
    let dir = project(&[
        ("wrangler.toml", &config),
        (
            "src/entry.py",
            "import attempts\n\nattempts.count += 1\nif attempts.count == 1:\n    raise RuntimeError('first start-up fails')\n\n\ndef on_fetch(request, env):\n    from js import Response\n\n    return Response.new(f'{env.GREETING} after {attempts.count} attempts')\n",
        ),
        ("src/attempts.py", "count = 0\n"),
    ]);
    let server = Server::dev(dir.path(), &["--no-watch"]);
    let (status, body) = server.text("/");
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("first start-up fails"), "{body}");
    // The same sandbox (dev keeps it) starts up again: the host's vars are
    // still there although start-up hid them from os.environ the first time.
    let (status, body) = server.text("/");
    assert_eq!(
        (status, body.as_str()),
        (200, "hello again after 2 attempts")
    );
}
