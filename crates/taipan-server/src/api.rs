//! The admin API's bodies, as types: the server (`admin.rs`) writes them and
//! the CLI reads them with the same definitions, so the two cannot drift.
//! `docs/admin-api.yaml` describes them for other clients; a test here
//! checks it names every field.

use serde::{Deserialize, Serialize};

pub use crate::store::VersionRecord;

/// `POST /api/deploy` → 201.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeployResult {
    pub worker: String,
    pub version: String,
    pub url: String,
    pub build_ms: u64,
    pub reused_build: bool,
    /// The packages the server installed, as "name version".
    pub packages: Vec<String>,
}

/// `GET /api/workers`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerList {
    pub workers: Vec<WorkerSummary>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorkerSummary {
    pub name: String,
    pub version: String,
    pub routes: Vec<String>,
    pub url: String,
    pub created: String,
}

/// `GET /api/workers/{name}/versions`: the server sends whole
/// `VersionRecord`s; a client reads what it needs (`VersionRow`), so a
/// server that records more still answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Versions<V = VersionRecord> {
    /// The version serving now (none while a worker has no current version).
    pub current: Option<String>,
    pub versions: Vec<V>,
}

/// What `taipan versions` shows of a version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionRow {
    pub id: String,
    pub created: String,
    pub build_ms: u64,
    pub artifact: String,
}

/// `POST /api/workers/{name}/rollback`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RollbackRequest {
    pub version: String,
}

/// The answer to a rollback: the version now serving.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Serving {
    pub worker: String,
    pub version: String,
}

/// `DELETE` of a worker or a secret: what is gone.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Deleted {
    pub deleted: String,
}

/// `GET /api/workers/{name}/secrets`: names only; values never leave the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecretNames {
    pub secrets: Vec<String>,
}

/// `GET /api/nodes`: the nodes of this server's cluster (empty, with
/// `cluster: false`, for a server on its own).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Nodes {
    pub cluster: bool,
    /// The node that answered.
    pub this: Option<String>,
    pub nodes: Vec<taipan_cluster::nodes::NodeInfo>,
}

/// `GET /api/queues`: every queue with messages, and its backlog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueList {
    pub queues: Vec<QueueStats>,
}

pub use taipan_bindings::queues::QueueStats;

/// `POST /api/queues/{queue}/messages?content_type=…` (the body is the
/// message) → 201.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct QueueSent {
    pub queue: String,
}

/// `PUT /api/workers/{name}/secrets/{secret}` (the body is the value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SecretSet {
    pub worker: String,
    pub secret: String,
}

/// `POST /api/d1/{database}/execute`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct D1Execute {
    /// One or more statements.
    pub sql: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct D1Executed {
    pub statements: usize,
    /// The last statement's result, as D1 gives it (`columns`, `rows`,
    /// `meta`); none for a script of several statements.
    pub result: Option<serde_json::Value>,
}

/// `POST /api/d1/{database}/migrations`: applied in order, each once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct D1Migrations {
    pub migrations: Vec<Migration>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Migration {
    pub name: String,
    pub sql: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Applied {
    pub applied: Vec<String>,
}

/// Every failure: a 4xx/5xx with this body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /api/workers/{name}/tail`: one JSON object per line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TailEvent {
    /// The first line: the stream is open.
    Connected { worker: String },
    /// A request the worker answered.
    Request {
        worker: String,
        request: String,
        status: u16,
        duration_ms: f64,
    },
    /// A line the worker printed.
    Stdout {
        worker: String,
        request: String,
        line: String,
    },
    Stderr {
        worker: String,
        request: String,
        line: String,
    },
    /// The client fell behind; this many lines were skipped.
    Lagged { skipped: u64 },
}

impl TailEvent {
    /// The event as one line of the stream (without the newline).
    pub fn line(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/admin-api.yaml is for other clients: it must name every field
    /// these types carry.
    #[test]
    fn the_openapi_file_names_every_field() {
        let yaml = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/admin-api.yaml"),
        )
        .unwrap();
        let samples = [
            serde_json::to_value(DeployResult {
                worker: "w".into(),
                version: "v1".into(),
                url: "u".into(),
                build_ms: 1,
                reused_build: false,
                packages: vec![],
            }),
            serde_json::to_value(WorkerSummary {
                name: "w".into(),
                version: "v1".into(),
                routes: vec![],
                url: "u".into(),
                created: "c".into(),
            }),
            serde_json::to_value(Versions::<VersionRow> {
                current: None,
                versions: vec![],
            }),
            serde_json::to_value(VersionRow {
                id: "v1".into(),
                created: "c".into(),
                build_ms: 1,
                artifact: "a".into(),
            }),
            serde_json::to_value(Serving {
                worker: "w".into(),
                version: "v".into(),
            }),
            serde_json::to_value(Deleted {
                deleted: "w".into(),
            }),
            serde_json::to_value(SecretNames { secrets: vec![] }),
            serde_json::to_value(Nodes {
                cluster: true,
                this: None,
                nodes: vec![],
            }),
            serde_json::to_value(taipan_cluster::nodes::NodeInfo {
                id: "n".into(),
                public_addr: "p".into(),
                admin_addr: "a".into(),
                internal_url: None,
                taipan_version: "0".into(),
                started: "s".into(),
                last_heartbeat_ms: 0,
                alive: true,
                draining: false,
            }),
            serde_json::to_value(QueueList { queues: vec![] }),
            serde_json::to_value(QueueStats {
                queue: "q".into(),
                ready: 1,
                delayed: 0,
                in_flight: 0,
            }),
            serde_json::to_value(QueueSent { queue: "q".into() }),
            serde_json::to_value(SecretSet {
                worker: "w".into(),
                secret: "s".into(),
            }),
            serde_json::to_value(D1Executed {
                statements: 1,
                result: None,
            }),
            serde_json::to_value(Applied { applied: vec![] }),
            serde_json::to_value(ErrorBody { error: "e".into() }),
            serde_json::to_value(TailEvent::Request {
                worker: "w".into(),
                request: "r".into(),
                status: 200,
                duration_ms: 1.0,
            }),
            serde_json::to_value(TailEvent::Lagged { skipped: 1 }),
        ];
        let mut missing = Vec::new();
        for sample in samples {
            for field in sample.unwrap().as_object().unwrap().keys() {
                if !yaml.contains(&format!("{field}:")) {
                    missing.push(field.clone());
                }
            }
        }
        assert!(
            missing.is_empty(),
            "docs/admin-api.yaml does not describe {missing:?}"
        );
    }
}
