//! Starting the real `taipan` binary and talking to it over real HTTP.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a server may take to build and print `Ready on` (cold CI, busy cores).
const READY_TIMEOUT: Duration = Duration::from_secs(600);

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A `taipan` command with a shared compile cache, so tests reuse machine code.
pub fn taipan() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_taipan"));
    command.env(
        "TAIPAN_CACHE_DIR",
        repo_root().join("target/taipan-test-cache"),
    );
    command.env("NO_COLOR", "1");
    command
}

pub fn run(args: &[&str]) -> Output {
    taipan()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running taipan")
}

/// A running `taipan dev`, killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    /// The admin API (serve only).
    pub admin: String,
    output: Arc<Mutex<String>>,
}

impl Server {
    /// `taipan dev DIR --port 0 ARGS…`, waiting for `Ready on`.
    pub fn dev(dir: &Path, args: &[&str]) -> Server {
        Self::dev_with_env(dir, args, &[])
    }

    pub fn dev_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Server {
        let mut command = taipan();
        command
            .envs(env.iter().copied())
            .arg("dev")
            .arg(dir)
            .args(["--port", "0"])
            .args(args);
        Self::spawn(command, "Ready on ")
    }

    /// `taipan serve --data-dir DIR` on free ports; `url` is the public
    /// address, `admin` the admin API's.
    pub fn serve(data_dir: &Path, args: &[&str]) -> Server {
        Self::serve_env(data_dir, args, &[])
    }

    /// `serve` with extra environment variables (cluster mode's).
    pub fn serve_env(data_dir: &Path, args: &[&str], env: &[(String, String)]) -> Server {
        let mut command = taipan();
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args);
        let mut server = Self::spawn(command, "Admin API on ");
        let output = server.output();
        let line = output.lines().find(|l| l.starts_with("Serving ")).unwrap();
        server.admin = std::mem::replace(
            &mut server.url,
            line.rsplit(' ').next().unwrap().to_string(),
        );
        server
    }

    fn spawn(mut command: Command, ready: &str) -> Server {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting taipan");
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut out = output.lock().unwrap();
                    out.push_str(&line);
                    out.push('\n');
                }
            });
        }
        let mut server = Server {
            child,
            url: String::new(),
            admin: String::new(),
            output,
        };
        let started = Instant::now();
        loop {
            let text = server.output();
            if let Some(line) = text.lines().find(|l| l.starts_with(ready)) {
                server.url = line.trim_start_matches(ready).trim().to_string();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("taipan exited ({status}) before it was ready:\n{text}");
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "taipan was not ready in time:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Wait until the output contains `needle` `count` times.
    pub fn wait_for(&self, needle: &str, count: usize, timeout: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if self.output().matches(needle).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        Self::client()
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap()
    }

    pub fn text(&self, path: &str) -> (u16, String) {
        let response = self.get(path);
        (response.status().as_u16(), response.text().unwrap())
    }
}

impl Server {
    /// A request to the public listener with a Host header (for routing).
    pub fn host_text(&self, host: &str, path: &str) -> (u16, String) {
        let response = Self::client()
            .get(format!("{}{path}", self.url))
            .header("host", host)
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }

    /// Ask the server to stop (SIGTERM) and wait for it to exit.
    /// POST declaring a body of `len` bytes without sending it; the raw reply.
    /// (A client that sends the body races the server's early 413 and may
    /// see a broken pipe instead of the answer.)
    pub fn declare_body(&self, host: &str, len: u64) -> String {
        use std::io::{Read, Write};
        let address = self.url.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        let head = format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply
    }

    pub fn stop(mut self) -> String {
        self.terminate();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.output()
    }
}

impl Server {
    /// Send SIGTERM and return at once (the server drains, then exits).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGKILL, at once: no drain, no goodbye to a cluster.
    pub fn child_kill(&mut self) -> std::io::Result<()> {
        self.child.kill()?;
        self.child.wait().map(|_| ())
    }

    /// Whether the process has exited.
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Write a project from (path, contents) pairs into a fresh temporary folder.
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    dir
}

pub const CONFIG: &str = "name = \"t\"\nmain = \"src/entry.py\"\ncompatibility_date = \"2025-11-01\"\ncompatibility_flags = [\"python_workers\"]\n";

/// A copy of an example in a temporary folder, so its `.taipan/state` starts empty.
pub fn example_copy(name: &str) -> tempfile::TempDir {
    let source = repo_root().join("examples").join(name);
    let copy = tempfile::tempdir().unwrap();
    let mut stack = vec![source.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let target = copy.path().join(path.strip_prefix(&source).unwrap());
            if path.is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                stack.push(path);
            } else {
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    copy
}

/// A one-connection-at-a-time HTTP upstream on loopback, answering every
/// request with its method and body.
pub fn upstream() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then the declared body.
            loop {
                let n = std::io::Read::read(&mut stream, &mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&request).to_string();
            let method = text.split(' ').next().unwrap_or("").to_string();
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
            let answer = format!("upstream {method} {body}");
            let reply = format!(
                "HTTP/1.1 201 Created\r\nx-upstream: yes\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = std::io::Write::write_all(&mut stream, reply.as_bytes());
        }
    });
    format!("http://{address}/")
}

/// `taipan d1 ARGS -c DIR`, which must succeed; its output.
pub fn d1(dir: &std::path::Path, args: &[&str]) -> String {
    let output = taipan()
        .arg("d1")
        .args(args)
        .arg("-c")
        .arg(dir)
        .output()
        .unwrap();
    let text = text_of(&output);
    assert!(output.status.success(), "taipan d1 {args:?}: {text}");
    text
}

/// A finished command's stdout then stderr, as text.
pub fn text_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `taipan deploy DIR` to `server`'s admin API.
pub fn deploy(server: &Server, dir: &Path) -> Output {
    taipan()
        .arg("deploy")
        .arg(dir)
        .args(["--server", &server.admin])
        .output()
        .unwrap()
}

/// `taipan secret put NAME --name WORKER`, the value on stdin (as a person
/// types it); must succeed.
pub fn secret_put(server: &Server, worker: &str, name: &str, value: &str) {
    use std::io::Write;
    let mut put = taipan()
        .args([
            "secret",
            "put",
            name,
            "--name",
            worker,
            "--server",
            &server.admin,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    put.stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    let output = put.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `deploy`, which must succeed.
pub fn deploy_ok(server: &Server, dir: &Path) {
    let output = deploy(server, dir);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
