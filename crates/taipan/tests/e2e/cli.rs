//! Subcommands that don't serve.

use crate::harness::run;

#[test]
fn runtimes_lists_the_builtin_runtime() {
    let output = run(&["runtimes"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("cpython-3.14"), "{text}");
    assert!(text.contains("2030-10-07"), "support window end: {text}");
}

#[test]
fn bad_flags_are_rejected_before_anything_starts() {
    let output = run(&["dev", ".", "--memory-mb", "4"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--memory-mb 4 is too small"));
}
