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

#[test]
fn wheels_lists_what_ships_with_its_recipes() {
    let output = run(&["wheels", "list"]);
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for shipped in ["numpy", "pandas", "pydantic-core"] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{shipped} ")))
            .unwrap_or_else(|| panic!("{shipped}: {text}"));
        // A shipped wheel shows its size and sha256.
        assert!(
            line.contains(" MB ") && line.split_whitespace().last().unwrap().len() == 64,
            "{line}"
        );
    }
}

/// `taipan wheels build` checks the recipe's toolchain before it downloads
/// anything, and names each missing tool with how to install it. The test
/// gives it a PATH with only bash and python3, so the outcome is the same on
/// a machine that has the toolchain.
#[test]
fn wheels_build_names_the_missing_toolchain() {
    let bin = tempfile::tempdir().unwrap();
    let python = std::process::Command::new("python3")
        .args(["-c", "import sys, tomllib; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    for tool in ["bash", "dirname"] {
        let path = ["/usr/bin", "/bin"]
            .iter()
            .map(|d| std::path::Path::new(d).join(tool))
            .find(|p| p.exists())
            .expect("bash and dirname");
        std::os::unix::fs::symlink(path, bin.path().join(tool)).unwrap();
    }
    if let Some(python) = &python {
        std::os::unix::fs::symlink(python, bin.path().join("python3")).unwrap();
    }
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let output = crate::harness::taipan()
        .args(["wheels", "build", "numpy", "--work"])
        .arg(work.path())
        .arg("--out")
        .arg(&out)
        .env("PATH", bin.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("building numpy 2.5.5 needs tools this machine lacks"),
        "{stderr}"
    );
    assert!(stderr.contains("hint: install them"), "{stderr}");
    if python.is_some() {
        // With python3 to read the recipe, every tool of the flow is named.
        assert!(
            stderr.contains("clang-22: apt-get install clang-22"),
            "{stderr}"
        );
        assert!(
            stderr.contains("wasm-ld-22: apt-get install lld-22"),
            "{stderr}"
        );
    } else {
        assert!(stderr.contains("python3 3.11 or newer"), "{stderr}");
    }
    // Nothing was built or downloaded.
    assert!(!out.exists());
    assert!(!work.path().join("downloads").exists());

    let output = run(&["wheels", "build", "lxml==6.0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("there is no recipe for lxml"), "{stderr}");
}

#[test]
fn build_keeps_a_snapshot_and_standalone_also_a_component() {
    let project = crate::harness::example_copy("hello");
    let dir = project.path().to_str().unwrap();
    let builds = project.path().join(".taipan/builds");
    let folders = || -> Vec<std::path::PathBuf> {
        let mut all: Vec<_> = std::fs::read_dir(&builds)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("complete").exists())
            .collect();
        all.sort();
        all
    };

    let output = run(&["build", dir]);
    assert!(
        output.status.success(),
        "{}",
        crate::harness::text_of(&output)
    );
    let plain = folders();
    assert_eq!(plain.len(), 1);
    assert!(plain[0].join("snapshot/memory.img.zst").is_file());
    assert!(!plain[0].join("component.wasm").exists());

    let output = run(&["build", "--standalone", dir]);
    assert!(
        output.status.success(),
        "{}",
        crate::harness::text_of(&output)
    );
    let standalone: Vec<_> = folders().into_iter().filter(|p| *p != plain[0]).collect();
    assert_eq!(standalone.len(), 1, "a build of its own");
    let component = std::fs::read(standalone[0].join("component.wasm")).unwrap();
    // A component binary: the wasm magic, then version 0x0d and layer 1.
    assert_eq!(component[..8], *b"\0asm\x0d\0\x01\0");
    assert!(standalone[0].join("snapshot/snapshot.json").is_file());
    // Made for any wasi:http host: none of Taipan's own host calls.
    let taipan_call = b"taipan:worker/response";
    assert!(
        !component
            .windows(taipan_call.len())
            .any(|w| w == taipan_call),
        "a standalone component imports taipan:worker/response"
    );
}
