//! TLS through the system's trust store: an HTTPS package index and an HTTPS
//! upstream on loopback, with a certificate from a test CA that only
//! `SSL_CERT_FILE` names (as a company's TLS-intercepting proxy is trusted).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::harness::{Server, project, repo_root, taipan};

const WHEEL: &str = "idna-3.20-py3-none-any.whl";

/// A test CA (written to `dir/ca.pem`) and an HTTPS server on loopback
/// signed by it, serving a one-package PEP 691 index at `/simple` and
/// `/hello`. Returns the CA file and `https://localhost:PORT`.
fn https_server(dir: &Path) -> (PathBuf, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Taipan test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let connection = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(connection, stream);
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => return, // an untrusting client hangs up here
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                let (status, body) = answer(&path, port);
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(reply.as_bytes());
                let _ = tls.write_all(&body);
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    (ca_file, format!("https://localhost:{port}"))
}

fn answer(path: &str, port: u16) -> (&'static str, Vec<u8>) {
    let wheel = repo_root().join("testdata/wheelhouse").join(WHEEL);
    match path {
        "/hello" => ("200 OK", b"hello over tls".to_vec()),
        "/simple/idna/" => {
            let sha = Sha256::digest(std::fs::read(&wheel).unwrap());
            let sha: String = sha.iter().map(|b| format!("{b:02x}")).collect();
            let page = serde_json::json!({
                "meta": {"api-version": "1.1"},
                "name": "idna",
                "files": [{
                    "filename": WHEEL,
                    "url": format!("https://localhost:{port}/files/{WHEEL}"),
                    "hashes": {"sha256": sha},
                }],
            });
            ("200 OK", page.to_string().into_bytes())
        }
        p if p == format!("/files/{WHEEL}") => ("200 OK", std::fs::read(&wheel).unwrap()),
        _ => ("404 Not Found", Vec::new()),
    }
}

#[test]
fn the_index_and_fetch_trust_the_ca_in_ssl_cert_file() {
    let certs = tempfile::tempdir().unwrap();
    let (ca_file, base) = https_server(certs.path());
    let config = format!(
        "{}\n[vars]\nUPSTREAM = \"{base}/hello\"\n",
        crate::harness::CONFIG
    );
    let worker = r#"
import idna
from workers import Response, fetch


async def on_fetch(request, env):
    upstream = await fetch(env.UPSTREAM)
    return Response(f"{idna.encode('bücher.example').decode()} {await upstream.text()}")
"#;
    let dir = project(&[
        ("wrangler.toml", config.as_str()),
        ("src/entry.py", worker),
        ("requirements.txt", "idna\n"),
    ]);
    let index = format!("{base}/simple");
    let cache = tempfile::tempdir().unwrap();

    // Without the CA the index is refused, and the error says what to do.
    let output = taipan()
        .arg("build")
        .arg(dir.path())
        .args(["--index-url", &index])
        .env("TAIPAN_CACHE_DIR", cache.path())
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .env("NO_PROXY", "localhost,127.0.0.1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("certificate") && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );

    // With SSL_CERT_FILE naming it, both the index and the worker's fetch work.
    let server = Server::dev_with_env(
        dir.path(),
        &["--index-url", &index],
        &[
            ("SSL_CERT_FILE", ca_file.as_path()),
            // The test's server is local even where a proxy is configured.
            ("NO_PROXY", Path::new("localhost,127.0.0.1")),
        ],
    );
    assert!(server.output().contains("idna 3.20"), "{}", server.output());
    assert_eq!(
        server.text("/"),
        (200, "xn--bcher-kva.example hello over tls".into())
    );
}
