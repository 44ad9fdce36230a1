//! A real S3-compatible object store for the tests that need one (cluster
//! mode's `--objects s3://bucket`): `s3s-fs`, the s3s project's S3 server over
//! a folder, started here (a temporary folder, a free loopback port, path-style
//! addressing over plain http, SigV4 authentication with a key pair of its
//! own, one bucket) and killed when dropped.
//!
//! `s3s-fs` must be installed (`.ci/run` runs `cargo install --locked
//! --features binary s3s-fs@0.14.1` when it is missing, into cargo's bin
//! folder); a server that is missing or cannot start fails the test.
//!
//! What the server does for object_store's AWS client (checked by hand against
//! object_store 0.12 and 0.14): PUT, GET with ranges, HEAD, DELETE and bulk
//! DeleteObjects, ListObjectsV2 with prefix, delimiter and start-after,
//! multipart upload (and abort, and UploadPartCopy), copy, `PutMode::Create`
//! (`If-None-Match: *`) and `PutMode::Update` (`If-Match`). Not atomic: two
//! conditional PUTs racing for the same key can both succeed (the existence
//! check and the write are separate steps). Ignored: `If-Match` and
//! `If-None-Match` on GET and HEAD (object_store's `GetOptions::if_match` /
//! `if_none_match` get a 200, never a 412 or 304).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The crates.io version `.ci/run` installs (the newest that builds with the
/// toolchain CI has; later ones need a newer rustc).
const VERSION: &str = "0.14.1";

/// An S3-compatible server of its own; killed when dropped.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`, path-style: objects are at `/{bucket}/{key}`.
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl S3Server {
    /// Starts `s3s-fs` on a free loopback port (it binds port 0 and logs the
    /// one it got), waits until it answers, and creates the bucket.
    pub fn start() -> S3Server {
        let bin = s3s_fs_bin();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let log_path = dir.path().join("s3s-fs.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let access_key = "taipan-test-access".to_string();
        let secret_key = "taipan-test-secret-key".to_string();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(["--access-key", &access_key, "--secret-key", &secret_key])
            .arg(&data)
            // The "server is running at http://ADDR" line says the port.
            .env("RUST_LOG", "s3s_fs=info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut server = S3Server {
            endpoint: String::new(),
            bucket: "taipan-test".to_string(),
            access_key,
            secret_key,
            region: "us-east-1".to_string(),
            child,
            dir,
        };
        let started = Instant::now();
        let marker = "server is running at http://";
        loop {
            let log = server.log();
            if let Some(at) = log.find(marker) {
                let addr: String = log[at + marker.len()..]
                    .chars()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                if std::net::TcpStream::connect(&addr).is_ok() {
                    server.endpoint = format!("http://{addr}");
                    break;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("s3s-fs exited ({status}) before it was ready:\n{log}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "s3s-fs was not ready in 30 s:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // CreateBucket: also proves that signed requests get through.
        let bucket = format!("/{}", server.bucket);
        let response = server.request("PUT", &bucket, &[], &[], Vec::new());
        let status = response.status();
        assert!(
            status.is_success(),
            "creating the bucket: {status} {}\n{}",
            response.text().unwrap_or_default(),
            server.log()
        );
        server
    }

    /// `s3://bucket`, for `taipan serve --objects`.
    pub fn url(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    /// The variables object_store's `AmazonS3Builder::from_env` reads: this
    /// server's endpoint and keys, path-style over plain http.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", self.access_key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.as_str()),
            ("AWS_REGION", self.region.as_str()),
            ("AWS_DEFAULT_REGION", self.region.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The folder the server keeps its buckets in (a bucket is a folder, an
    /// object a file at its key).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What the server logged (errors only, past the start-up lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("s3s-fs.log")).unwrap_or_default()
    }

    /// One request signed with AWS SigV4: `path` is `/bucket` or
    /// `/bucket/key` (not yet percent-encoded), `query` unencoded pairs.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> reqwest::blocking::Response {
        let host = self.endpoint.trim_start_matches("http://").to_string();
        let path = encode(path, false);
        let mut query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (encode(k, true), encode(v, true)))
            .collect();
        query.sort();
        let query = query
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let now = jiff::Timestamp::now();
        let amz_date = now.strftime("%Y%m%dT%H%M%SZ").to_string();
        let date = &amz_date[..8];
        let payload_hash = hex(&Sha256::digest(&body));
        let mut signed: Vec<(String, String)> = vec![
            ("host".into(), host.clone()),
            ("x-amz-content-sha256".into(), payload_hash.clone()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        signed.extend(
            headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_string())),
        );
        signed.sort();
        let canonical_headers: String = signed.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed_headers = signed
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_request = format!(
            "{method}\n{path}\n{query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}"
        );
        let scope = format!("{date}/{}/s3/aws4_request", self.region);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(
            format!("AWS4{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        );
        let url = if query.is_empty() {
            format!("{}{path}", self.endpoint)
        } else {
            format!("{}{path}?{query}", self.endpoint)
        };
        let mut request = client()
            .request(method.parse().unwrap(), url)
            .header("authorization", authorization);
        for (k, v) in &signed {
            request = request.header(k.as_str(), v.as_str());
        }
        request.body(body).send().unwrap()
    }

    /// PUT an object; the response's status.
    pub fn put_object(&self, key: &str, body: &[u8]) -> u16 {
        let path = format!("/{}/{key}", self.bucket);
        let response = self.request("PUT", &path, &[], &[], body.to_vec());
        response.status().as_u16()
    }

    /// GET an object: `None` when there is none (404).
    pub fn get_object(&self, key: &str) -> Option<Vec<u8>> {
        let path = format!("/{}/{key}", self.bucket);
        let response = self.request("GET", &path, &[], &[], Vec::new());
        match response.status().as_u16() {
            404 => None,
            200 => Some(response.bytes().unwrap().to_vec()),
            status => panic!("GET {key}: {status} {}", response.text().unwrap()),
        }
    }

    /// DELETE an object; the response's status (204, also for a missing key).
    pub fn delete_object(&self, key: &str) -> u16 {
        let path = format!("/{}/{key}", self.bucket);
        self.request("DELETE", &path, &[], &[], Vec::new())
            .status()
            .as_u16()
    }

    /// ListObjectsV2 under `prefix`: every key (one page, up to 1000).
    pub fn list(&self, prefix: &str) -> Vec<String> {
        self.list_delimited(prefix, None).0
    }

    /// ListObjectsV2 under `prefix` with a delimiter: (keys, common prefixes).
    pub fn list_delimited(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> (Vec<String>, Vec<String>) {
        let bucket = format!("/{}", self.bucket);
        let mut query = vec![("list-type", "2"), ("prefix", prefix)];
        if let Some(delimiter) = delimiter {
            query.push(("delimiter", delimiter));
        }
        let response = self.request("GET", &bucket, &query, &[], Vec::new());
        let status = response.status().as_u16();
        let xml = response.text().unwrap();
        assert_eq!(status, 200, "ListObjectsV2: {xml}");
        let prefixes = xml
            .split("<CommonPrefixes>")
            .skip(1)
            .flat_map(|part| elements(part.split("</CommonPrefixes>").next().unwrap(), "Prefix"))
            .collect();
        let keys = xml
            .split("<Contents>")
            .skip(1)
            .flat_map(|part| elements(part.split("</Contents>").next().unwrap(), "Key"))
            .collect();
        (keys, prefixes)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        // Nothing to flush: the data dies with the temporary folder.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s3s-fs`: on the PATH, else in cargo's bin folder (where `.ci/run`'s
/// `cargo install` puts it).
fn s3s_fs_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(Path::new(&home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    match dirs
        .into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
    {
        Some(bin) => bin,
        None => panic!(
            "s3s-fs, the S3-compatible server these tests store objects in, is not installed \
             (not on the PATH nor in cargo's bin folder): run .ci/run, which installs it, or \
             `cargo install --locked --features binary s3s-fs@{VERSION}`"
        ),
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()
        .unwrap()
}

/// SigV4's URI encoding: unreserved characters as they are, `/` kept in a
/// path (`slash` false) and encoded in a query (`slash` true).
fn encode(s: &str, slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b'/' if !slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(data);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of each `<name>…</name>` in `xml`, entities decoded.
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|part| part.split(close.as_str()).next())
        .map(|text| {
            text.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect()
}

/// The server answers a real client: PUT, GET (whole and a range), HEAD,
/// ListObjectsV2 (prefix, delimiter), a conditional PUT refused, a bad
/// signature refused, DELETE; and it is gone once dropped.
#[test]
fn s3_server_round_trip() {
    let s3 = S3Server::start();
    assert_eq!(s3.url(), "s3://taipan-test");
    let env = s3.env();
    assert!(env.contains(&("AWS_ALLOW_HTTP".into(), "true".into())));
    assert!(env.contains(&("AWS_ENDPOINT".into(), s3.endpoint.clone())));

    assert_eq!(s3.put_object("bundles/a.txt", b"hello world"), 200);
    assert_eq!(s3.put_object("bundles/sub/b.txt", b"b"), 200);
    assert_eq!(s3.put_object("assets/c txt", b"c"), 200);
    assert_eq!(s3.get_object("bundles/a.txt").unwrap(), b"hello world");
    assert_eq!(s3.get_object("assets/c txt").unwrap(), b"c");

    let path = format!("/{}/bundles/a.txt", s3.bucket);
    let range = s3.request("GET", &path, &[], &[("range", "bytes=6-10")], Vec::new());
    assert_eq!(range.status().as_u16(), 206);
    assert_eq!(range.bytes().unwrap().as_ref(), b"world");
    let head = s3.request("HEAD", &path, &[], &[], Vec::new());
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["content-length"], "11");
    assert!(head.headers().contains_key("etag"));

    assert_eq!(s3.list("bundles/"), ["bundles/a.txt", "bundles/sub/b.txt"]);
    assert_eq!(
        s3.list_delimited("bundles/", Some("/")),
        (
            vec!["bundles/a.txt".to_string()],
            vec!["bundles/sub/".to_string()]
        )
    );

    // If-None-Match: * (object_store's PutMode::Create) on a key that exists.
    let exists = s3.request(
        "PUT",
        &path,
        &[],
        &[("if-none-match", "*")],
        b"other".to_vec(),
    );
    assert_eq!(exists.status().as_u16(), 412);
    assert_eq!(s3.get_object("bundles/a.txt").unwrap(), b"hello world");

    // Authentication is on: an unsigned request is refused.
    let unsigned = client()
        .get(format!("{}{path}", s3.endpoint))
        .send()
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 403);

    assert_eq!(s3.delete_object("bundles/a.txt"), 204);
    assert_eq!(s3.get_object("bundles/a.txt"), None);
    assert_eq!(s3.list(""), ["assets/c txt", "bundles/sub/b.txt"]);
    assert!(
        s3.data_dir()
            .join("taipan-test/bundles/sub/b.txt")
            .is_file()
    );

    let endpoint = s3.endpoint.clone();
    drop(s3);
    let addr = endpoint.trim_start_matches("http://");
    assert!(std::net::TcpStream::connect(addr).is_err());
}
