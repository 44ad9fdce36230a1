//! Conformance cases: each folder under `tests/conformance/` holds a worker
//! (config + source) and `expect.json`, a list of requests and what the
//! client must see. Adding a case needs no Rust.
//!
//! A step: `request` {method, path, headers, body}, optional `delay_ms`
//! before sending, and expectations: `status`, `body`, `body_hex`, `json`
//! (exact; "HOST" stands for the server's host:port), `json_subset`,
//! `headers` (values joined with ", "), `header_values` (each value, in
//! order), `absent_headers`.

use std::path::Path;

use serde_json::Value;

use crate::harness::{Server, repo_root};

#[test]
fn conformance_cases() {
    let root = repo_root().join("tests/conformance");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 8,
        "conformance cases missing from {}",
        root.display()
    );
    // Start every case's server first: their builds overlap.
    let servers: Vec<(String, Server)> = cases
        .iter()
        .map(|dir| (dir.file_name().unwrap().to_string_lossy().into_owned(), dir))
        .map(|(name, dir)| (name, Server::dev(dir, &[])))
        .collect();
    let mut failures = Vec::new();
    for ((name, server), dir) in servers.iter().zip(&cases) {
        if let Err(e) = run_case(server, dir) {
            failures.push(format!(
                "{name}: {e}\n--- server output ---\n{}",
                server.output()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn run_case(server: &Server, dir: &Path) -> Result<(), String> {
    let expect: Vec<Value> =
        serde_json::from_slice(&std::fs::read(dir.join("expect.json")).map_err(|e| e.to_string())?)
            .map_err(|e| format!("expect.json: {e}"))?;
    let host = server.url.trim_start_matches("http://");
    for (i, step) in expect.iter().enumerate() {
        if let Some(delay) = step["delay_ms"].as_u64() {
            std::thread::sleep(std::time::Duration::from_millis(delay));
        }
        let request = &step["request"];
        let method = request["method"].as_str().unwrap_or("GET");
        let path = request["path"].as_str().unwrap_or("/");
        let mut builder =
            Server::client().request(method.parse().unwrap(), format!("{}{path}", server.url));
        if let Some(headers) = request["headers"].as_object() {
            for (k, v) in headers {
                builder = builder.header(k, v.as_str().unwrap());
            }
        }
        if let Some(body) = request["body"].as_str() {
            builder = builder.body(body.to_string());
        }
        let response = builder.send().map_err(|e| format!("step {i}: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&body).into_owned();
        let fail = |what: String| Err(format!("step {i} ({method} {path}): {what}; body: {text}"));

        if let Some(expected) = step["status"].as_u64()
            && u64::from(status) != expected
        {
            return fail(format!("status {status}, expected {expected}"));
        }
        if let Some(expected) = step["body"].as_str()
            && text != expected
        {
            return fail(format!("body {text:?}, expected {expected:?}"));
        }
        if let Some(expected) = step["body_hex"].as_str() {
            let hex: String = body.iter().map(|b| format!("{b:02x}")).collect();
            if hex != expected {
                return fail(format!("body hex {hex}, expected {expected}"));
            }
        }
        if let Some(expected) = step["headers"].as_object() {
            for (name, value) in expected {
                let got: Vec<&str> = headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                if got.join(", ") != value.as_str().unwrap() {
                    return fail(format!("header {name}: {got:?}, expected {value}"));
                }
            }
        }
        if let Some(expected) = step["header_values"].as_object() {
            for (name, values) in expected {
                let got: Vec<&str> = headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .collect();
                let want: Vec<&str> = values
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                if got != want {
                    return fail(format!("header {name}: {got:?}, expected {want:?}"));
                }
            }
        }
        if let Some(absent) = step["absent_headers"].as_array() {
            for name in absent.iter().filter_map(Value::as_str) {
                if headers.contains_key(name) {
                    return fail(format!("header {name} should be absent"));
                }
            }
        }
        if step.get("json").is_some() || step.get("json_subset").is_some() {
            let got: Value = serde_json::from_str(&text)
                .map_err(|e| format!("step {i}: not JSON ({e}): {text}"))?;
            if let Some(expected) = step.get("json") {
                let expected: Value =
                    serde_json::from_str(&expected.to_string().replace("HOST", host)).unwrap();
                if got != expected {
                    return fail(format!("json {got}, expected {expected}"));
                }
            }
            if let Some(subset) = step["json_subset"].as_object() {
                for (k, v) in subset {
                    if &got[k] != v {
                        return fail(format!("json[{k}] = {}, expected {v}", got[k]));
                    }
                }
            }
        }
    }
    Ok(())
}
