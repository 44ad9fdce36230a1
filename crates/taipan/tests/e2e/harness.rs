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
    output: Arc<Mutex<String>>,
}

impl Server {
    /// `taipan dev DIR --port 0 ARGS…`, waiting for `Ready on`.
    pub fn dev(dir: &Path, args: &[&str]) -> Server {
        Self::dev_with_env(dir, args, &[])
    }

    pub fn dev_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> Server {
        let mut child = taipan()
            .envs(env.iter().copied())
            .arg("dev")
            .arg(dir)
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting taipan dev");
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
            output,
        };
        let started = Instant::now();
        loop {
            let text = server.output();
            if let Some(line) = text.lines().find(|l| l.starts_with("Ready on ")) {
                server.url = line.trim_start_matches("Ready on ").trim().to_string();
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("taipan dev exited ({status}) before it was ready:\n{text}");
            }
            assert!(
                started.elapsed() < READY_TIMEOUT,
                "taipan dev was not ready in time:\n{text}"
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
