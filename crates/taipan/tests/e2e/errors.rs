//! Bad input gives a clear message and a non-zero exit, never a panic.

use crate::harness::{CONFIG, project, run};

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
    let dir = project(&[
        ("wrangler.toml", CONFIG),
        (
            "src/entry.py",
            "import json\nfrom helper import thing\n\ndef on_fetch(request):\n    pass\n",
        ),
        ("src/helper.py", "import not_a_real_module_xyz\nthing = 1\n"),
    ]);
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
