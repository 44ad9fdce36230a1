//! A real PostgreSQL for tests, a fresh database per test.
//!
//! ```ignore
//! let database = taipan_cluster::testing::TestDatabase::create().await;
//! let db = database.connect().await; // migrated
//! ```
//!
//! With `TAIPAN_TEST_DATABASE_URL` set (`postgres://user:password@host:port/db`,
//! a user allowed to `CREATE DATABASE`), databases are made on that server.
//! Otherwise the first test of the process starts a private server: `initdb`
//! into a temporary folder (run as the `postgres` user through `setpriv`
//! when the tests run as root, as PostgreSQL refuses root), listening on a
//! free loopback port with a random password. The server lives as long as
//! the test process: a shell supervises it with a pipe from this process as
//! its stdin, and when the process ends, however it ends, the pipe closes
//! and the shell stops PostgreSQL and removes its folder.
//!
//! PostgreSQL must be installed: `initdb` and `postgres` on the PATH or in
//! `/usr/lib/postgresql/<version>/bin` (`.ci/run` installs Debian's
//! `postgresql`). Failures panic with what went wrong: a test never passes
//! for want of a database.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;

use crate::Db;

/// The variable naming a server to make test databases on.
pub const DATABASE_URL_VAR: &str = "TAIPAN_TEST_DATABASE_URL";

const USER: &str = "taipan";
/// How long the private server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A database of its own for one test, dropped with this value.
pub struct TestDatabase {
    url: String,
    name: String,
    /// The server's maintenance database, where the test database is dropped from.
    admin_url: String,
}

impl TestDatabase {
    /// Make an empty database (no schema: see [`TestDatabase::connect`]).
    pub async fn create() -> TestDatabase {
        let admin_url = match std::env::var(DATABASE_URL_VAR) {
            Ok(url) if !url.trim().is_empty() => url,
            _ => tokio::task::spawn_blocking(|| private_server().url.clone())
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic())),
        };
        let name = format!("taipan_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_client(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating the test database {name:?} on {:?} failed: {e}\n\
                     hint: the user of {DATABASE_URL_VAR} needs the CREATEDB privilege",
                    crate::db::redact(&admin_url)
                )
            });
        let mut url = url::Url::parse(&admin_url).unwrap_or_else(|e| {
            panic!(
                "{DATABASE_URL_VAR}={:?} is not a URL ({e})\n\
                 hint: write it as postgres://user:password@host:port/database",
                crate::db::redact(&admin_url)
            )
        });
        url.set_path(&name);
        TestDatabase {
            url: url.to_string(),
            name,
            admin_url,
        }
    }

    /// `postgres://…/<this database>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on this database, with the cluster's schema applied.
    pub async fn connect(&self) -> Db {
        let db = Db::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database: {e:#}"));
        crate::migrations::run(&db)
            .await
            .unwrap_or_else(|e| panic!("migrating the test database: {e:#}"));
        db
    }
}

impl Drop for TestDatabase {
    /// Drop the database (its connections too), so a shared server does not
    /// fill up with them; on a thread of its own, as `drop` cannot await.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&admin_url, NoTls).await?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            // Not worth failing a test for: the database stays behind.
            eprintln!("dropping the test database {:?}: {e}", self.name);
        }
    }
}

async fn admin_client(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting to the test PostgreSQL {:?} failed: {e}\n\
                 hint: unset {DATABASE_URL_VAR} to have the tests start their own",
                crate::db::redact(url)
            )
        });
    tokio::spawn(connection);
    client
}

/// The process's private server.
struct Server {
    url: String,
    /// The supervising shell; its stdin stays open until the process exits.
    _supervisor: Child,
}

fn private_server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(start)
}

fn start() -> Server {
    let bin = postgres_bin();
    // The supervisor removes the folder once PostgreSQL has stopped.
    let dir = tempfile::Builder::new()
        .prefix("taipan-test-pg-")
        .tempdir()
        .expect("a temporary folder for PostgreSQL")
        .keep();
    let owner = postgres_owner(&dir);
    let password = uuid::Uuid::new_v4().simple().to_string();
    let password_file = dir.join("password");
    std::fs::write(&password_file, &password).expect("writing the password file");
    if let Some((uid, gid)) = owner {
        for path in [&dir, &password_file] {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("giving {} to `postgres`: {e}", path.display()));
        }
    }
    // As root, PostgreSQL's programs run as the `postgres` user.
    let as_owner = |program: &str| -> Vec<String> {
        let program = bin.join(program).display().to_string();
        match owner {
            Some(_) => [
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--clear-groups",
                "--",
                &program,
            ]
            .map(String::from)
            .to_vec(),
            None => vec![program],
        }
    };
    let data = dir.join("data");
    let initdb = as_owner("initdb");
    let init = Command::new(&initdb[0])
        .args(&initdb[1..])
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            USER,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
        ])
        .arg(format!("--pwfile={}", password_file.display()))
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", initdb.join(" ")));
    if !init.status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        panic!(
            "initdb failed, the test PostgreSQL cannot start:\n{}{}",
            String::from_utf8_lossy(&init.stdout),
            String::from_utf8_lossy(&init.stderr)
        );
    }
    let port = free_port();
    let log = dir.join("postgres.log");
    // `cat` returns when this process's end of the pipe closes, i.e. when
    // it exits; then PostgreSQL gets a fast shutdown (SIGINT) and the
    // folder goes. (A background job of `sh` ignores SIGINT only until
    // PostgreSQL installs its own handler, which it does at start.)
    let script = r#"dir=$1; shift
"$@" </dev/null >"$dir/postgres.log" 2>&1 &
pid=$!
cat >/dev/null
kill -INT "$pid" 2>/dev/null
wait "$pid"
rm -rf "$dir""#;
    let supervisor = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(&dir)
        .args(as_owner("postgres"))
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
        .arg(&dir)
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(["-c", "synchronous_commit=off", "-c", "max_connections=200"])
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting PostgreSQL under `sh`: {e}"));
    let server = Server {
        url: format!("postgres://{USER}:{password}@127.0.0.1:{port}/postgres"),
        _supervisor: supervisor,
    };
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("ready to accept connections")
            && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return server;
        }
        if text.contains("FATAL") || started.elapsed() > START_TIMEOUT {
            // Dropping `server` closes the pipe: the supervisor cleans up.
            panic!(
                "the test PostgreSQL did not start (port {port}, {} s):\n{text}",
                started.elapsed().as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `(uid, gid)` of the `postgres` user when running as root, else None.
fn postgres_owner(dir: &Path) -> Option<(u32, u32)> {
    let as_root = std::fs::metadata(dir)
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if !as_root {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap_or_else(|e| panic!("running `id`: {e}"));
        assert!(
            out.status.success(),
            "running as root, PostgreSQL needs the `postgres` user to run as (the Debian \
             package creates it; .ci/run installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("`id` prints a number")
    };
    Some((id("-u"), id("-g")))
}

/// The folder with `initdb` and `postgres`: on the PATH, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (the newest).
fn postgres_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("initdb"))
        .find(|p| p.is_file());
    if let Some(dir) = on_path
        .and_then(|initdb| initdb.canonicalize().ok())
        .and_then(|initdb| initdb.parent().map(Path::to_path_buf))
        .filter(|dir| dir.join("postgres").is_file())
    {
        return dir;
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    match versions.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL is not installed (no initdb on the PATH or in /usr/lib/postgresql/*/bin)\n\
             hint: apt-get install postgresql (.ci/run does), or set {DATABASE_URL_VAR} to a \
             server where the tests may create databases"
        ),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_test_database_is_fresh_and_migrated() {
        let (a, b) = (TestDatabase::create().await, TestDatabase::create().await);
        assert_ne!(a.url(), b.url());
        let db = a.connect().await;
        let client = db.client().await.unwrap();
        client
            .execute(
                "INSERT INTO kv (namespace, key, value) VALUES ('n', 'k', '\\x00')",
                &[],
            )
            .await
            .unwrap();
        let other = b.connect().await;
        let rows = other
            .client()
            .await
            .unwrap()
            .query("SELECT 1 FROM kv", &[])
            .await
            .unwrap();
        assert!(rows.is_empty());
    }
}
