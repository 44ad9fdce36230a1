//! A single node's KV: one SQLite file per namespace in the state folder.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use super::{Found, KvStore, Listed};
use crate::protocol::BindingError;
use crate::store::Database;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL,
    metadata TEXT,
    expiration INTEGER
) WITHOUT ROWID;";

pub struct SqliteKv {
    db: Database,
}

impl SqliteKv {
    pub fn open(db: Database) -> anyhow::Result<Arc<Self>> {
        db.with_blocking(|conn| conn.execute_batch(SCHEMA))?;
        Ok(Arc::new(Self { db }))
    }
}

impl KvStore for SqliteKv {
    fn get(&self, key: &str, now: i64) -> BoxFuture<'static, Result<Option<Found>, BindingError>> {
        let (db, key) = (self.db.clone(), key.to_string());
        Box::pin(async move {
            db.with(move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT value, metadata FROM kv WHERE key = ?1 AND (expiration IS NULL OR expiration > ?2)",
                )?;
                let mut rows = stmt.query(rusqlite::params![key, now])?;
                match rows.next()? {
                    Some(row) => Ok(Some(Found {
                        value: row.get(0)?,
                        metadata: row.get(1)?,
                    })),
                    None => Ok(None),
                }
            })
            .await
        })
    }

    fn put(
        &self,
        key: &str,
        value: Bytes,
        metadata: Option<String>,
        expiration: Option<i64>,
    ) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, key) = (self.db.clone(), key.to_string());
        Box::pin(async move {
            db.with(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO kv (key, value, metadata, expiration) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value,
                       metadata = excluded.metadata, expiration = excluded.expiration",
                )?
                .execute(rusqlite::params![key, &value[..], metadata, expiration])
            })
            .await?;
            Ok(())
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, key) = (self.db.clone(), key.to_string());
        Box::pin(async move {
            db.with(move |conn| {
                conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                    .execute([key])
            })
            .await?;
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
        let (db, prefix, after) = (self.db.clone(), prefix.to_string(), after.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(async move {
            db.with(move |conn| {
                // TEXT compares with BINARY (memcmp of the UTF-8) by default:
                // byte order, as on Workers. substr and length count
                // characters alike, so the prefix test is exact.
                let mut stmt = conn.prepare_cached(
                    "SELECT key, metadata, expiration FROM kv
                     WHERE key > ?1 AND substr(key, 1, length(?2)) = ?2
                       AND (expiration IS NULL OR expiration > ?3)
                     ORDER BY key LIMIT ?4",
                )?;
                let rows = stmt
                    .query_map(rusqlite::params![after, prefix, now, limit], |row| {
                        Ok(Listed {
                            key: row.get(0)?,
                            metadata: row.get(1)?,
                            expiration: row.get(2)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await
        })
    }
}
