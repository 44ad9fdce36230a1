//! Compiled packages with no toolchain: FastAPI on pydantic v2, whose
//! pydantic-core comes from the WASI wheel Taipan ships, offline.

use serde_json::{Value, json};

use crate::harness::{Server, example_copy, repo_root};

fn offline_dev(dir: &std::path::Path) -> Server {
    let wheelhouse = repo_root().join("testdata/wheelhouse");
    Server::dev(
        dir,
        &["--no-index", "--find-links", wheelhouse.to_str().unwrap()],
    )
}

fn send(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let client = Server::client();
    let url = format!("{}{path}", server.url);
    let request = match method {
        "POST" => client.post(url),
        _ => client.get(url),
    };
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    json_answer(server, request, &format!("{method} {path}"))
}

/// Send `request`; its status and JSON body (a panic with the server's
/// output when the body is not JSON).
fn json_answer(
    server: &Server,
    request: reqwest::blocking::RequestBuilder,
    what: &str,
) -> (u16, Value) {
    let response = request.send().unwrap();
    let status = response.status().as_u16();
    let text = response.text().unwrap();
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: {e}: {text}\n{}", server.output()));
    (status, value)
}

#[test]
fn fastapi_example_validates_with_pydantic_core() {
    let dir = example_copy("fastapi");
    let server = offline_dev(dir.path());
    assert!(
        server.output().contains("pydantic-core 2.50.5"),
        "{}",
        server.output()
    );
    let lock = std::fs::read_to_string(dir.path().join("taipan.lock")).unwrap();
    assert!(
        lock.contains("pydantic_core-2.50.5-cp314-cp314-wasi_0_0_0_wasm32.whl"),
        "{lock}"
    );

    // env through the ASGI scope.
    assert_eq!(
        send(&server, "GET", "/", None),
        (200, json!({"message": "Hello from FastAPI on Taipan"}))
    );
    // A sync endpoint with a sync dependency (anyio's thread helpers).
    let (status, items) = send(&server, "GET", "/items?limit=5", None);
    assert_eq!(status, 200, "{items}");
    assert_eq!(items["page"], json!({"limit": 5, "offset": 0}));
    assert_eq!(items["items"][0]["name"], "teapot");
    // Query validation: a 422 naming the parameter and the rule.
    let (status, error) = send(&server, "GET", "/items?limit=0", None);
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["detail"][0]["loc"], json!(["query", "limit"]));
    assert_eq!(error["detail"][0]["type"], "greater_than_equal");
    // Path parameters, response models, HTTPException.
    assert_eq!(
        send(&server, "GET", "/items/1", None),
        (
            200,
            json!({"name": "teapot", "price": 18.5, "tags": ["kitchen"]})
        )
    );
    assert_eq!(
        send(&server, "GET", "/items/99", None),
        (404, json!({"detail": "no item 99"}))
    );
    let (status, error) = send(&server, "GET", "/items/abc", None);
    assert_eq!(
        (status, &error["detail"][0]["type"]),
        (422, &json!("int_parsing"))
    );
    // Body validation: every error, with its location.
    let (status, created) = send(
        &server,
        "POST",
        "/items",
        Some(json!({"name": "cup", "price": 3})),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], "cup");
    let (status, error) = send(
        &server,
        "POST",
        "/items",
        Some(json!({"name": "", "price": -1})),
    );
    assert_eq!(status, 422, "{error}");
    let kinds: Vec<(&Value, &Value)> = error["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e["loc"], &e["type"]))
        .collect();
    assert_eq!(
        kinds,
        [
            (&json!(["body", "name"]), &json!("string_too_short")),
            (&json!(["body", "price"]), &json!("greater_than")),
        ]
    );
    // A sync endpoint with a body and a response model.
    let (status, quote) = send(
        &server,
        "POST",
        "/quote?quantity=3",
        Some(json!({"name": "cup", "price": 2.5})),
    );
    assert_eq!((status, &quote["total"]), (200, &json!(7.5)), "{quote}");
    // OpenAPI generated in the sandbox.
    let (status, openapi) = send(&server, "GET", "/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(openapi["info"]["title"], "Taipan items");
    assert!(
        openapi["paths"]["/items/{item_id}"]["get"].is_object(),
        "{openapi}"
    );
    assert!(openapi["components"]["schemas"]["Item"].is_object());
}

const CRASHING_WORKER: &str = r#"
from urllib.parse import urlparse

import taipan_crashtest
from workers import Response


async def on_fetch(request):
    path = urlparse(request.url).path
    if path == "/answer":
        return Response(str(taipan_crashtest.answer()))
    if path == "/grow":
        return Response(str(taipan_crashtest.grow(4096)))
    getattr(taipan_crashtest, path.strip("/"))()  # abort, trap, spin, boom
    return Response("not reached")
"#;

/// A compiled extension that aborts, traps, loops or runs out of memory in C
/// ends its request cleanly; the next request gets a clean sandbox.
#[test]
fn a_crashing_extension_ends_only_its_request() {
    let dir = crate::harness::project(&[
        ("wrangler.toml", crate::harness::CONFIG),
        ("src/entry.py", CRASHING_WORKER),
        ("requirements.txt", "taipan-crashtest\n"),
    ]);
    let wheels = repo_root().join("testdata/wasi-wheelhouse");
    let server = Server::dev(
        dir.path(),
        &[
            "--no-index",
            "--find-links",
            wheels.to_str().unwrap(),
            "--cpu-ms",
            "500",
            "--memory-mb",
            "64",
        ],
    );
    assert_eq!(server.text("/answer"), (200, "42".into()));
    for (path, status, says) in [
        ("/abort", 500, "crash"),
        ("/trap", 500, "crash"),
        ("/spin", 503, "CPU time limit"),
        ("/grow", 500, "MemoryError"),
        ("/boom", 500, "boom from C"),
    ] {
        let (got, body) = server.text(path);
        assert_eq!(got, status, "{path}: {body}\n{}", server.output());
        assert!(body.contains(says), "{path}: {body}\n{}", server.output());
        assert_eq!(server.text("/answer"), (200, "42".into()), "after {path}");
    }
}

const NUMPY_WORKER: &str = r#"
import numpy as np
from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        body = await request.json()
        a = np.array(body["matrix"], dtype=float)
        x = np.linalg.solve(a, np.array(body["rhs"], dtype=float))
        spectrum = np.abs(np.fft.rfft(np.arange(8.0)))
        rng = np.random.default_rng(7)
        return Response.json({
            "version": np.__version__,
            "sum_axis0": a.sum(axis=0).tolist(),
            "solve": np.round(x, 6).tolist(),
            "norm": float(np.linalg.norm([3.0, 4.0])),
            "fft0": float(spectrum[0]),
            "unique": np.unique(np.array(["b", "a", "b"])).tolist(),
            "random_shape": list(rng.standard_normal((2, 3)).shape),
        })
"#;

/// numpy from the WASI wheel Taipan ships: linear algebra, FFT, random,
/// string arrays, in a worker with no find-links and no index.
#[test]
fn numpy_array_math_in_a_worker() {
    let dir = crate::harness::project(&[
        ("wrangler.toml", crate::harness::CONFIG),
        ("src/entry.py", NUMPY_WORKER),
        ("requirements.txt", "numpy\n"),
    ]);
    let server = Server::dev(dir.path(), &["--no-index"]);
    let (status, result) = send(
        &server,
        "POST",
        "/",
        Some(json!({"matrix": [[2, 1], [1, 3]], "rhs": [3, 5]})),
    );
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["version"], "2.5.5");
    assert_eq!(result["sum_axis0"], json!([3.0, 4.0]));
    assert_eq!(result["solve"], json!([0.8, 1.4]));
    assert_eq!(result["norm"], json!(5.0));
    assert_eq!(result["fft0"], json!(28.0));
    assert_eq!(result["unique"], json!(["a", "b"]));
    assert_eq!(result["random_shape"], json!([2, 3]));
}

const SALES_CSV: &str = "date,region,units,price
2026-01-05,north,3,2.50
2026-01-20,south,5,4.00
2026-02-02,north,2,2.50
2026-02-14,south,1,10.00
2026-03-01,east,4,1.25
";

fn post_csv(server: &Server, path: &str, csv: &str) -> (u16, Value) {
    let request = Server::client()
        .post(format!("{}{path}", server.url))
        .header("content-type", "text/csv")
        .body(csv.to_string());
    json_answer(server, request, &format!("POST {path}"))
}

/// examples/pandas, with pandas and numpy from the WASI wheels Taipan ships
/// (dateutil and tzdata from the offline wheelhouse): read_csv of a request
/// body, groupby, describe, a rolling window (C++), dates, to_json.
#[test]
fn pandas_example_summarizes_an_uploaded_csv() {
    let dir = example_copy("pandas");
    let server = offline_dev(dir.path());
    let lock = std::fs::read_to_string(dir.path().join("taipan.lock")).unwrap();
    assert!(
        lock.contains("pandas-3.1.1-cp314-cp314-wasi_0_0_0_wasm32.whl")
            && lock.contains("numpy-2.5.5-cp314-cp314-wasi_0_0_0_wasm32.whl"),
        "{lock}"
    );

    let (status, summary) = post_csv(&server, "/summary?by=region", SALES_CSV);
    assert_eq!(status, 200, "{summary}\n{}", server.output());
    assert_eq!(summary["rows"], 5);
    assert_eq!(summary["columns"]["date"], "str");
    assert_eq!(summary["columns"]["units"], "int64");
    assert_eq!(summary["columns"]["price"], "float64");
    assert_eq!(summary["describe"]["units"]["count"], json!(5.0));
    assert_eq!(summary["describe"]["units"]["mean"], json!(3.0));
    assert_eq!(summary["describe"]["price"]["max"], json!(10.0));
    assert_eq!(
        summary["sum"],
        json!({
            "east": {"units": 4, "price": 1.25},
            "north": {"units": 5, "price": 5.0},
            "south": {"units": 6, "price": 14.0},
        })
    );
    assert_eq!(
        summary["mean"]["south"],
        json!({"units": 3.0, "price": 7.0})
    );
    assert_eq!(summary["count"]["north"], json!({"rows": 2}));
    assert_eq!(
        summary["rolling_mean"],
        json!({"column": "units", "values": [null, null, 3.3333, 2.6667, 2.3333]})
    );
    assert_eq!(
        summary["monthly"],
        json!({
            "2026-01": {"units": 8, "price": 6.5},
            "2026-02": {"units": 3, "price": 12.5},
            "2026-03": {"units": 4, "price": 1.25},
        })
    );
    assert_eq!(summary["span_days"], 55);

    // Bad input: a clean 4xx naming the problem, and the worker keeps serving.
    let (status, error) = post_csv(&server, "/summary?by=city", SALES_CSV);
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("no column 'city'"),
        "{error}"
    );
    let (status, error) = post_csv(&server, "/summary", "");
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"].as_str().unwrap().starts_with("not a CSV"),
        "{error}"
    );
    let (status, error) = post_csv(&server, "/summary", "a,b\n1,2\n3,4,5,6,7\n");
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("Expected 2 fields in line 3, saw 5"),
        "{error}"
    );
    assert_eq!(server.text("/summary").0, 405);
    let (status, summary) = post_csv(&server, "/summary", "x\n1\n2\n");
    assert_eq!((status, &summary["rows"]), (200, &json!(2)));
}
