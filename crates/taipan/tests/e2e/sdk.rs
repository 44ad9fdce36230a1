//! The Python SDK's own unit tests (python/tests), run inside a real sandbox
//! on the same CPython the workers use.

use crate::harness::{CONFIG, Server, project, repo_root};

const RUNNER: &str = r#"
import io
import unittest

from workers import Response

IMPORTS


# Not async: the tests run with no event loop running (some start one).
def on_fetch(request):
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(
        loader.loadTestsFromModule(m) for m in (MODULES,)
    )
    out = io.StringIO()
    result = unittest.TextTestRunner(stream=out, verbosity=2).run(suite)
    return Response.json({"run": result.testsRun, "failures": len(result.failures) + len(result.errors), "log": out.getvalue()})
"#;

#[test]
fn python_sdk_unit_tests_pass_in_the_sandbox() {
    let tests = repo_root().join("python/tests");
    let mut files = vec![("wrangler.toml".to_string(), CONFIG.to_string())];
    // Every test module, imported at module level (so at snapshot time).
    let mut modules = Vec::new();
    for entry in std::fs::read_dir(&tests).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "py") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with("test_") {
                modules.push(format!("tests.{}", name.trim_end_matches(".py")));
            }
            files.push((
                format!("src/tests/{name}"),
                std::fs::read_to_string(&path).unwrap(),
            ));
        }
    }
    modules.sort();
    assert!(modules.len() >= 10, "{modules:?}");
    let imports: Vec<String> = modules.iter().map(|m| format!("import {m}")).collect();
    let runner = RUNNER
        .replace("IMPORTS", &imports.join("\n"))
        .replace("MODULES", &modules.join(", "));
    files.push(("src/entry.py".into(), runner));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let dir = project(&files);
    let server = Server::dev(dir.path(), &[]);
    let (status, body) = server.text("/");
    assert_eq!(status, 200, "{body}");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        result["run"].as_u64().unwrap() >= 20,
        "{}",
        result["log"].as_str().unwrap()
    );
    assert_eq!(result["failures"], 0, "{}", result["log"].as_str().unwrap());
}
