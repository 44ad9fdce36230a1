//! The control plane's tables: workers, their versions (records are the
//! server's JSON), which version serves, and secrets. A change a serving
//! node must pick up bumps the worker's `generation` and notifies
//! [`CHANNEL`] in the same transaction, so a node that hears of it reads
//! committed state.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{Db, SecretBox};

/// The `NOTIFY` channel of control-plane changes (payload: the worker).
pub const CHANNEL: &str = "taipan_workers";

/// What a node serves of one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct Serving {
    pub name: String,
    pub generation: i64,
    pub record: Value,
}

/// Which of two deploys of a worker goes on: the first holds an advisory
/// lock on a connection of its own, taken out of the pool: however the
/// deploy ends (released, dropped half-way because its client left, the
/// node killed), the connection closes with it, and the lock with that.
pub struct DeployLock {
    client: deadpool_postgres::ClientWrapper,
    key: i64,
}

impl DeployLock {
    pub async fn release(self) {
        let _ = self
            .client
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await;
    }
}

fn lock_key(worker: &str) -> i64 {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("deploy\0{worker}").as_bytes());
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

pub struct Control<'a> {
    pub db: &'a Db,
    pub secrets: &'a SecretBox,
}

impl Control<'_> {
    /// Take the deploy lock of `worker`, or None when another deploy holds it.
    pub async fn lock_deploy(&self, worker: &str) -> Result<Option<DeployLock>> {
        let client = deadpool_postgres::Object::take(self.db.client().await?);
        let key = lock_key(worker);
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await?
            .get(0);
        Ok(got.then_some(DeployLock { client, key }))
    }

    /// Every worker with a serving version.
    pub async fn serving(&self) -> Result<Vec<Serving>> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT w.name, w.generation, v.record FROM workers w
                 JOIN versions v ON v.worker = w.name AND v.number = w.current
                 ORDER BY w.name",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Serving {
                name: r.get(0),
                generation: r.get(1),
                record: r.get(2),
            })
            .collect())
    }

    pub async fn current(&self, worker: &str) -> Result<Option<Value>> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT v.record FROM workers w
                 JOIN versions v ON v.worker = w.name AND v.number = w.current
                 WHERE w.name = $1",
                &[&worker],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn versions(&self, worker: &str) -> Result<Vec<Value>> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT record FROM versions WHERE worker = $1 ORDER BY number",
                &[&worker],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn version(&self, worker: &str, number: i32) -> Result<Option<Value>> {
        let client = self.db.client().await?;
        let row = client
            .query_opt(
                "SELECT record FROM versions WHERE worker = $1 AND number = $2",
                &[&worker, &number],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// The number the next version of `worker` gets.
    pub async fn next_number(&self, worker: &str) -> Result<i32> {
        let client = self.db.client().await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(number), 0) + 1 FROM versions WHERE worker = $1",
                &[&worker],
            )
            .await?;
        Ok(row.get(0))
    }

    /// Add version `number` and make it the serving one, in one transaction;
    /// returns the worker's new generation.
    pub async fn publish(&self, worker: &str, number: i32, record: &Value) -> Result<i64> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO versions (worker, number, record) VALUES ($1, $2, $3)",
            &[&worker, &number, record],
        )
        .await
        .with_context(|| format!("recording version {number} of {worker:?}"))?;
        let generation = bump(&tx, worker, Some(number)).await?;
        tx.commit().await?;
        Ok(generation)
    }

    /// Serve version `number` again; None if there is no such version.
    pub async fn set_current(&self, worker: &str, number: i32) -> Result<Option<i64>> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        let exists = tx
            .query_opt(
                "SELECT 1 FROM versions WHERE worker = $1 AND number = $2",
                &[&worker, &number],
            )
            .await?
            .is_some();
        if !exists {
            return Ok(None);
        }
        let generation = bump(&tx, worker, Some(number)).await?;
        tx.commit().await?;
        Ok(Some(generation))
    }

    /// Remove a worker's records and secrets; false if it had none.
    pub async fn delete(&self, worker: &str) -> Result<bool> {
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        // The row stays, with no serving version: its generation keeps
        // growing across a delete and a new deploy, so a node that missed
        // the delete still sees the new deploy as newer than what it has.
        let removed = tx
            .execute(
                "UPDATE workers SET current = NULL, generation = generation + 1
                 WHERE name = $1 AND current IS NOT NULL",
                &[&worker],
            )
            .await?;
        tx.execute("DELETE FROM versions WHERE worker = $1", &[&worker])
            .await?;
        tx.execute("DELETE FROM secrets WHERE worker = $1", &[&worker])
            .await?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &worker])
            .await?;
        tx.commit().await?;
        Ok(removed > 0)
    }

    /// Forget `worker`'s versions but its `keep` most recent and its
    /// serving one; how many were forgotten.
    pub async fn forget_old_versions(&self, worker: &str, keep: usize) -> Result<usize> {
        let client = self.db.client().await?;
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let forgotten = client
            .execute(
                "DELETE FROM versions WHERE worker = $1
                   AND number NOT IN (SELECT number FROM versions WHERE worker = $1
                                      ORDER BY number DESC LIMIT $2)
                   AND number IS DISTINCT FROM (SELECT current FROM workers WHERE name = $1)",
                &[&worker, &keep],
            )
            .await?;
        Ok(forgotten as usize)
    }

    /// The build ids and the assets ids every remaining version names.
    pub async fn kept(&self) -> Result<(Vec<String>, Vec<String>)> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT DISTINCT record->>'artifact', record->>'assets' FROM versions",
                &[],
            )
            .await?;
        let artifacts = rows.iter().filter_map(|r| r.get(0)).collect();
        let assets = rows.iter().filter_map(|r| r.get(1)).collect();
        Ok((artifacts, assets))
    }

    pub async fn secrets(&self, worker: &str) -> Result<BTreeMap<String, String>> {
        let client = self.db.client().await?;
        let rows = client
            .query(
                "SELECT name, sealed FROM secrets WHERE worker = $1",
                &[&worker],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let name: String = r.get(0);
                let sealed: Vec<u8> = r.get(1);
                let value = self.secrets.open(worker, &name, &sealed)?;
                Ok((name, value))
            })
            .collect()
    }

    /// Set (`Some`) or remove (`None`) a secret; the worker's new generation
    /// if something changed. A change reaches the nodes serving the worker.
    pub async fn set_secret(
        &self,
        worker: &str,
        name: &str,
        value: Option<&str>,
    ) -> Result<Option<i64>> {
        let current = self.secrets(worker).await?;
        if current.get(name).map(String::as_str) == value {
            return Ok(None);
        }
        let mut client = self.db.client().await?;
        let tx = client.transaction().await?;
        match value {
            Some(value) => {
                let sealed = self.secrets.seal(worker, name, value)?;
                tx.execute(
                    "INSERT INTO secrets (worker, name, sealed) VALUES ($1, $2, $3)
                     ON CONFLICT (worker, name) DO UPDATE SET sealed = excluded.sealed",
                    &[&worker, &name, &sealed],
                )
                .await?;
            }
            None => {
                tx.execute(
                    "DELETE FROM secrets WHERE worker = $1 AND name = $2",
                    &[&worker, &name],
                )
                .await?;
            }
        }
        let generation = bump(&tx, worker, None).await?;
        tx.commit().await?;
        Ok(Some(generation))
    }
}

/// Count a change of `worker` (and maybe its serving version), and notify.
async fn bump(
    tx: &tokio_postgres::Transaction<'_>,
    worker: &str,
    current: Option<i32>,
) -> Result<i64> {
    let row = tx
        .query_one(
            "INSERT INTO workers (name, current, generation) VALUES ($1, $2, 1)
             ON CONFLICT (name) DO UPDATE SET
               current = coalesce($2, workers.current),
               generation = workers.generation + 1
             RETURNING generation",
            &[&worker, &current],
        )
        .await?;
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &worker])
        .await?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    #[tokio::test]
    async fn old_versions_are_forgotten_but_the_serving_one() {
        let database = TestDatabase::create().await;
        let db = database.connect().await;
        let secrets = SecretBox::new(&[7; 32]);
        let control = Control {
            db: &db,
            secrets: &secrets,
        };
        let record = |worker: &str, n: i32| serde_json::json!({"worker": worker, "artifact": format!("a{worker}{n}"), "assets": (n == 1).then_some("s1")});
        for n in 1..=5 {
            control.publish("w", n, &record("w", n)).await.unwrap();
        }
        control
            .publish("other", 1, &record("other", 1))
            .await
            .unwrap();
        // Rolled back to v2.
        control.set_current("w", 2).await.unwrap().unwrap();
        assert_eq!(control.forget_old_versions("w", 2).await.unwrap(), 2);
        let numbers: Vec<String> = control
            .versions("w")
            .await
            .unwrap()
            .iter()
            .map(|r| r["artifact"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(numbers, ["aw2", "aw4", "aw5"]);
        assert_eq!(control.next_number("w").await.unwrap(), 6);
        assert_eq!(control.forget_old_versions("w", 2).await.unwrap(), 0);
        let (mut artifacts, assets) = control.kept().await.unwrap();
        artifacts.sort();
        assert_eq!(artifacts, ["aother1", "aw2", "aw4", "aw5"]);
        assert_eq!(assets, ["s1"]);
    }
}
