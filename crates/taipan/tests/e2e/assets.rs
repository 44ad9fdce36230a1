//! Static assets end to end (`examples/assets`): the host serves files with
//! content types, ETags and 304s; html_handling redirects; the worker runs
//! first for `run_worker_first` paths and for misses; `env.ASSETS.fetch`;
//! `taipan serve` keeps a deployed copy of the folder.

use reqwest::blocking::Response;

use crate::harness::{Server, deploy_ok, example_copy};

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn dev_serves_assets_and_runs_the_worker_for_the_rest() {
    let project = example_copy("assets");
    std::fs::write(project.path().join("public/.hidden"), "private").unwrap();
    let server = Server::dev(project.path(), &[]);
    let client = Server::client();
    let get = |path: &str| client.get(format!("{}{path}", server.url)).send().unwrap();

    let home = get("/");
    assert_eq!(home.status(), 200);
    assert_eq!(header(&home, "content-type"), "text/html; charset=utf-8");
    assert_eq!(
        header(&home, "cache-control"),
        "public, max-age=0, must-revalidate"
    );
    let etag = header(&home, "etag");
    assert!(etag.starts_with('"') && etag.len() == 34, "{etag}");
    assert!(home.text().unwrap().contains("<h1>Home</h1>"));

    // Conditional requests: the same ETag is a 304 with no body.
    let again = client
        .get(format!("{}/", server.url))
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(header(&again, "etag"), etag);
    assert_eq!(again.text().unwrap(), "");
    let other = client
        .get(format!("{}/", server.url))
        .header("if-none-match", "\"something-else\"")
        .send()
        .unwrap();
    assert_eq!(other.status(), 200);

    let css = std::fs::read(project.path().join("public/style.css")).unwrap();
    let head = client
        .head(format!("{}/style.css", server.url))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(header(&head, "content-type"), "text/css; charset=utf-8");
    assert_eq!(header(&head, "content-length"), css.len().to_string());
    // Content types as Cloudflare serves them (the full table is a unit test).
    for (file, bytes) in [
        ("favicon.ico", &[0u8, 0, 1, 0][..]),
        ("data.json", b"{}"),
        ("blob.unknownext", b"?"),
    ] {
        std::fs::write(project.path().join("public").join(file), bytes).unwrap();
    }
    for (path, want) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/favicon.ico", "image/vnd.microsoft.icon"),
        ("/data.json", "application/json"),
        ("/blob.unknownext", ""),
    ] {
        let response = get(path);
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), want, "{path}");
    }

    // html_handling = auto-trailing-slash (the default).
    let about = get("/about");
    assert_eq!(about.status(), 200);
    assert!(about.text().unwrap().contains("<h1>About</h1>"));
    for (from, to) in [
        ("/about.html", "/about"),
        ("/docs", "/docs/"),
        ("/index.html?x=1", "/?x=1"),
    ] {
        let response = get(from);
        assert_eq!(response.status(), 307, "{from}");
        assert_eq!(header(&response, "location"), to, "{from}");
    }
    assert!(get("/docs/").text().unwrap().contains("<h1>Docs</h1>"));

    // The worker: run_worker_first paths, misses, and methods other than GET/HEAD.
    let api = get("/api/hello");
    assert_eq!(api.status(), 200);
    assert_eq!(api.text().unwrap(), r#"{"hello":"from the worker"}"#);
    assert_eq!(get("/nope").text().unwrap(), "the worker handled GET /nope");
    let post = client
        .post(format!("{}/style.css", server.url))
        .send()
        .unwrap();
    assert_eq!(post.text().unwrap(), "the worker handled POST /style.css");
    // Nothing outside the folder, and no dotfiles, is ever served.
    for path in ["/%2e%2e/wrangler.toml", "/..%2fwrangler.toml", "/.hidden"] {
        let text = get(path).text().unwrap();
        assert!(text.starts_with("the worker handled"), "{path}: {text}");
    }

    // env.ASSETS.fetch from the worker, with not_found_handling = "404-page".
    let through = get("/api/asset/style.css");
    assert_eq!(through.status(), 200);
    assert_eq!(header(&through, "content-type"), "text/css; charset=utf-8");
    assert_eq!(
        through.text().unwrap(),
        String::from_utf8(css).unwrap().to_uppercase()
    );
    let missing = get("/api/asset/nope.txt");
    assert_eq!(missing.status(), 404);
    assert!(missing.text().unwrap().contains("PAGE NOT FOUND"));

    // Dev serves the folder live: an edited file has new content and a new ETag.
    std::fs::write(project.path().join("public/index.html"), "<h1>Edited</h1>").unwrap();
    let edited = get("/");
    assert_ne!(header(&edited, "etag"), etag);
    assert_eq!(edited.text().unwrap(), "<h1>Edited</h1>");

    // A single-page app: navigation misses get /index.html, other misses the worker.
    let config = project.path().join("wrangler.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("\"404-page\"", "\"single-page-application\"");
    std::fs::write(&config, text).unwrap();
    assert!(
        server.wait_for("Reloaded", 1, std::time::Duration::from_secs(60)),
        "{}",
        server.output()
    );
    let navigate = client
        .get(format!("{}/app/route", server.url))
        .header("sec-fetch-mode", "navigate")
        .send()
        .unwrap();
    assert_eq!(navigate.status(), 200);
    assert_eq!(navigate.text().unwrap(), "<h1>Edited</h1>");
    assert_eq!(
        get("/app/route").text().unwrap(),
        "the worker handled GET /app/route"
    );
}

#[test]
fn serve_keeps_a_copy_of_the_deployed_assets() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::serve(data.path(), &["--insecure-local"]);
    let project = example_copy("assets");
    deploy_ok(&server, project.path());
    let host = "assets-example.localhost";
    let get = |server: &Server, path: &str| {
        Server::client()
            .get(format!("{}{path}", server.url))
            .header("host", host)
            .send()
            .unwrap()
    };
    let first = get(&server, "/style.css");
    assert_eq!(first.status(), 200);
    let etag = header(&first, "etag");
    assert!(first.text().unwrap().contains("font-family"));
    assert_eq!(
        get(&server, "/api/hello").text().unwrap(),
        r#"{"hello":"from the worker"}"#
    );

    // The served copy does not follow the project folder until a deploy.
    std::fs::write(
        project.path().join("public/style.css"),
        "p { color: red; }\n",
    )
    .unwrap();
    assert_eq!(header(&get(&server, "/style.css"), "etag"), etag);
    deploy_ok(&server, project.path());
    let second = get(&server, "/style.css");
    assert_ne!(header(&second, "etag"), etag);
    assert_eq!(second.text().unwrap(), "p { color: red; }\n");

    // A restart serves the same files; the project folder is not needed.
    server.stop();
    drop(project);
    let server = Server::serve(data.path(), &["--insecure-local"]);
    assert_eq!(
        get(&server, "/style.css").text().unwrap(),
        "p { color: red; }\n"
    );
    assert_eq!(get(&server, "/about").status(), 200);
}
