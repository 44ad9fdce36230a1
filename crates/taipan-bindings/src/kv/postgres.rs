//! Cluster mode's KV: every namespace's entries in the cluster database's
//! `kv` table (`taipan_cluster::migrations`), one namespace's rows told
//! apart by its id, so every node reads what any node wrote.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use taipan_cluster::Db;

use super::{Found, KvStore, Listed};
use crate::protocol::BindingError;

/// `list` within a prefix: a range of the primary key (the `key` column is
/// `COLLATE "C"`, which compares bytes), from the prefix to the first string
/// after every string it starts.
const LIST_BOUNDED: &str = "SELECT key, metadata, expiration FROM kv
    WHERE namespace = $1 AND key > $2 AND key >= $3 AND key < $6
      AND (expiration IS NULL OR expiration > $4)
    ORDER BY key LIMIT $5";
/// `list` of a prefix with no string after all those it starts ("" or
/// only U+10FFFF).
const LIST_UNBOUNDED: &str = "SELECT key, metadata, expiration FROM kv
    WHERE namespace = $1 AND key > $2 AND key >= $3
      AND (expiration IS NULL OR expiration > $4)
    ORDER BY key LIMIT $5";

pub struct PostgresKv {
    db: Db,
    namespace: String,
}

impl PostgresKv {
    /// The namespace `namespace` (its configured id) of the cluster's KV.
    pub fn new(db: Db, namespace: &str) -> Arc<Self> {
        Arc::new(Self {
            db,
            namespace: namespace.to_string(),
        })
    }
}

impl KvStore for PostgresKv {
    fn get(&self, key: &str, now: i64) -> BoxFuture<'static, Result<Option<Found>, BindingError>> {
        let (db, namespace, key) = (self.db.clone(), self.namespace.clone(), key.to_string());
        Box::pin(async move {
            // PostgreSQL text holds no NUL: no entry has such a key.
            if key.contains('\0') {
                return Ok(None);
            }
            let client = db.client().await.map_err(failed("GET"))?;
            let row = client
                .query_opt(
                    "SELECT value, metadata FROM kv
                     WHERE namespace = $1 AND key = $2 AND (expiration IS NULL OR expiration > $3)",
                    &[&namespace, &key, &now],
                )
                .await
                .map_err(failed("GET"))?;
            Ok(row.map(|row| Found {
                value: row.get(0),
                metadata: row.get(1),
            }))
        })
    }

    fn put(
        &self,
        key: &str,
        value: Bytes,
        metadata: Option<String>,
        expiration: Option<i64>,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, namespace, key) = (self.db.clone(), self.namespace.clone(), key.to_string());
        Box::pin(async move {
            if key.contains('\0') {
                return Err(BindingError::type_error(
                    "KV PUT failed: the key contains a NUL character, which cluster mode's \
                     database cannot store; use a key without one",
                ));
            }
            let client = db.client().await.map_err(failed("PUT"))?;
            client
                .execute(
                    "INSERT INTO kv (namespace, key, value, metadata, expiration)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value,
                       metadata = excluded.metadata, expiration = excluded.expiration",
                    &[&namespace, &key, &&value[..], &metadata, &expiration],
                )
                .await
                .map_err(failed("PUT"))?;
            Ok(())
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, namespace, key) = (self.db.clone(), self.namespace.clone(), key.to_string());
        Box::pin(async move {
            if key.contains('\0') {
                return Ok(());
            }
            let client = db.client().await.map_err(failed("DELETE"))?;
            client
                .execute(
                    "DELETE FROM kv WHERE namespace = $1 AND key = $2",
                    &[&namespace, &key],
                )
                .await
                .map_err(failed("DELETE"))?;
            Ok(())
        })
    }

    fn list(
        &self,
        prefix: &str,
        after: &str,
        now: i64,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<Listed>, BindingError>> {
        let (db, namespace) = (self.db.clone(), self.namespace.clone());
        let (prefix, mut after) = (prefix.to_string(), after.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(async move {
            if prefix.contains('\0') {
                return Ok(Vec::new());
            }
            // No key holds a NUL, so the keys after "ab\0…" are those after "ab".
            if let Some(nul) = after.find('\0') {
                after.truncate(nul);
            }
            let client = db.client().await.map_err(failed("list"))?;
            let rows = match taipan_cluster::db::prefix_end(&prefix) {
                Some(end) => {
                    client
                        .query(
                            LIST_BOUNDED,
                            &[&namespace, &after, &prefix, &now, &limit, &end],
                        )
                        .await
                }
                None => {
                    client
                        .query(LIST_UNBOUNDED, &[&namespace, &after, &prefix, &now, &limit])
                        .await
                }
            }
            .map_err(failed("list"))?;
            Ok(rows
                .iter()
                .map(|row| Listed {
                    key: row.get(0),
                    metadata: row.get(1),
                    expiration: row.get(2),
                })
                .collect())
        })
    }
}

/// A failed operation as the worker sees it (`KV GET failed: …`).
fn failed<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> BindingError {
    move |e| {
        BindingError::error(format!(
            "KV {op} failed on the cluster database: {e}; try again"
        ))
    }
}
