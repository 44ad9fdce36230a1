//! The nodes of a cluster: each registers on start and beats every
//! [`HEARTBEAT`]; a node whose last beat is older than [`NODE_TTL`] is
//! taken for dead. Also what the nodes share: their internal secret, and
//! which node runs each scheduled minute of a cron trigger.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::Db;

pub const HEARTBEAT: Duration = Duration::from_secs(2);
pub const NODE_TTL: Duration = Duration::from_secs(10);

/// What a node says about itself when it joins.
#[derive(Debug, Clone)]
pub struct Joining {
    pub id: String,
    pub public_addr: String,
    pub admin_addr: String,
    pub internal_url: Option<String>,
    pub taipan_version: String,
}

/// A node as `taipan nodes` lists it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct NodeInfo {
    pub id: String,
    pub public_addr: String,
    pub admin_addr: String,
    pub internal_url: Option<String>,
    pub taipan_version: String,
    /// RFC 3339, UTC.
    pub started: String,
    pub last_heartbeat_ms: i64,
    pub alive: bool,
    pub draining: bool,
}

/// Record (or refresh, after a restart) this node.
pub async fn join(db: &Db, node: &Joining) -> Result<()> {
    let client = db.client().await?;
    client
        .execute(
            "INSERT INTO nodes (id, public_addr, admin_addr, internal_url, taipan_version, started, heartbeat)
             VALUES ($1, $2, $3, $4, $5, now(), now())
             ON CONFLICT (id) DO UPDATE SET public_addr = excluded.public_addr,
               admin_addr = excluded.admin_addr, internal_url = excluded.internal_url,
               taipan_version = excluded.taipan_version, started = now(), heartbeat = now(),
               draining = false",
            &[
                &node.id,
                &node.public_addr,
                &node.admin_addr,
                &node.internal_url,
                &node.taipan_version,
            ],
        )
        .await?;
    Ok(())
}

pub async fn heartbeat(db: &Db, id: &str, draining: bool) -> Result<()> {
    let client = db.client().await?;
    client
        .execute(
            "UPDATE nodes SET heartbeat = now(), draining = $2 WHERE id = $1",
            &[&id, &draining],
        )
        .await?;
    Ok(())
}

/// This node is gone for good (a clean stop): others need not wait for
/// its heartbeat to age.
pub async fn leave(db: &Db, id: &str) -> Result<()> {
    let client = db.client().await?;
    client
        .execute(
            "UPDATE nodes SET heartbeat = now() - interval '1 day' WHERE id = $1",
            &[&id],
        )
        .await?;
    Ok(())
}

/// Every node seen in the last day, live ones first.
pub async fn list(db: &Db) -> Result<Vec<NodeInfo>> {
    let client = db.client().await?;
    let ttl_ms = NODE_TTL.as_millis() as i64;
    let rows = client
        .query(
            "SELECT id, public_addr, admin_addr, internal_url, taipan_version,
                    to_char(started AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    (extract(epoch FROM (now() - heartbeat)) * 1000)::bigint AS age, draining
             FROM nodes WHERE heartbeat > now() - interval '2 days'
             ORDER BY (now() - heartbeat) > $1 * interval '1 millisecond', id",
            &[&(ttl_ms as f64)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let age: i64 = r.get(6);
            NodeInfo {
                id: r.get(0),
                public_addr: r.get(1),
                admin_addr: r.get(2),
                internal_url: r.get(3),
                taipan_version: r.get(4),
                started: r.get(5),
                last_heartbeat_ms: age,
                alive: age <= ttl_ms,
                draining: r.get(7),
            }
        })
        .collect())
}

/// The secret nodes authenticate each other with: made by the first node.
pub async fn shared_secret(db: &Db) -> Result<String> {
    let client = db.client().await?;
    let fresh = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    client
        .execute(
            "INSERT INTO settings (key, value) VALUES ('internal_secret', $1)
             ON CONFLICT (key) DO NOTHING",
            &[&fresh],
        )
        .await?;
    let row = client
        .query_one(
            "SELECT value FROM settings WHERE key = 'internal_secret'",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Claim the scheduled `minute` (since the epoch) of a worker's cron for
/// `node`: true for exactly one node of the cluster.
pub async fn claim_cron(
    db: &Db,
    worker: &str,
    cron: &str,
    minute: i64,
    node: &str,
) -> Result<bool> {
    let client = db.client().await?;
    let claimed = client
        .execute(
            "INSERT INTO cron_runs (worker, cron, minute, node) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
            &[&worker, &cron, &minute, &node],
        )
        .await?;
    // Claims older than a day serve no one.
    if claimed == 1 && minute % 60 == 0 {
        let _ = client
            .execute(
                "DELETE FROM cron_runs WHERE minute < $1",
                &[&(minute - 24 * 60)],
            )
            .await;
    }
    Ok(claimed == 1)
}
