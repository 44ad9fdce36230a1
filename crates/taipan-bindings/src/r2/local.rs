//! A single node's R2 bucket: an index in SQLite (the `objects` table of
//! the bucket's own database) and each object's bytes in a file of the
//! bucket's folder, named by the SHA-256 of its key. A `put` writes a
//! temporary file next to it and renames it into place.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

use super::{ByteRange, Found, R2Object, R2Store, Upload, parse_metadata};
use crate::protocol::{BindingError, stream_body};
use crate::store::Database;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS objects (
    key TEXT PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    uploaded INTEGER NOT NULL,
    http_metadata TEXT NOT NULL,
    custom_metadata TEXT NOT NULL,
    version TEXT NOT NULL
) WITHOUT ROWID;";

const COLUMNS: &str = "key, size, etag, uploaded, http_metadata, custom_metadata, version";

pub struct LocalR2 {
    db: Database,
    blobs: PathBuf,
}

impl LocalR2 {
    pub fn open(db: Database, blobs: PathBuf) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&blobs)?;
        db.with_blocking(|conn| conn.execute_batch(SCHEMA))?;
        Ok(Arc::new(Self { db, blobs }))
    }
}

/// `<blobs>/<first two hex digits>/<SHA-256 of the key, hex>`.
fn blob_path(blobs: &Path, key: &str) -> PathBuf {
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    blobs.join(&hex[..2]).join(hex)
}

async fn head_row(db: &Database, key: String) -> Result<Option<R2Object>, BindingError> {
    db.with(move |conn| {
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM objects WHERE key = ?1"))?;
        let mut rows = stmt.query([key])?;
        match rows.next()? {
            Some(row) => Ok(Some(object(row)?)),
            None => Ok(None),
        }
    })
    .await
}

impl R2Store for LocalR2 {
    fn put(
        &self,
        key: &str,
        body: Upload,
        http_metadata: Value,
        custom_metadata: Value,
    ) -> BoxFuture<'static, Result<R2Object, BindingError>> {
        let (db, key) = (self.db.clone(), key.to_string());
        let target = blob_path(&self.blobs, &key);
        Box::pin(async move {
            let failed = |e: std::io::Error| BindingError::error(format!("R2 put failed: {e}"));
            let dir = target.parent().map(PathBuf::from).unwrap_or_default();
            tokio::fs::create_dir_all(&dir).await.map_err(failed)?;
            let temp = dir.join(format!(".upload-{}", unique()));
            let (size, etag) = match write_file(body, &temp).await {
                Ok(done) => done,
                Err(e) => {
                    let _ = tokio::fs::remove_file(&temp).await;
                    return Err(e);
                }
            };
            tokio::fs::rename(&temp, &target).await.map_err(failed)?;
            let object = R2Object {
                key,
                size,
                etag,
                uploaded: jiff::Timestamp::now().as_millisecond(),
                http_metadata,
                custom_metadata,
                version: unique(),
            };
            let row = object.clone();
            db.with(move |conn| {
                conn.prepare_cached(
                    "INSERT INTO objects (key, size, etag, uploaded, http_metadata, custom_metadata, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT(key) DO UPDATE SET size = excluded.size, etag = excluded.etag,
                       uploaded = excluded.uploaded, http_metadata = excluded.http_metadata,
                       custom_metadata = excluded.custom_metadata, version = excluded.version",
                )?
                .execute(rusqlite::params![
                    row.key,
                    row.size as i64,
                    row.etag,
                    row.uploaded,
                    row.http_metadata.to_string(),
                    row.custom_metadata.to_string(),
                    row.version
                ])
            })
            .await?;
            Ok(object)
        })
    }

    fn get(
        &self,
        key: &str,
        range: ByteRange,
    ) -> BoxFuture<'static, Result<Option<Found>, BindingError>> {
        let (db, key) = (self.db.clone(), key.to_string());
        let path = blob_path(&self.blobs, &key);
        Box::pin(async move {
            let Some(object) = head_row(&db, key).await? else {
                return Ok(None);
            };
            let (offset, length) = range.resolve(object.size)?;
            let failed = |e: std::io::Error| BindingError::error(format!("R2 get failed: {e}"));
            let mut file = tokio::fs::File::open(path).await.map_err(failed)?;
            file.seek(SeekFrom::Start(offset)).await.map_err(failed)?;
            let stream = tokio_util::io::ReaderStream::new(file.take(length));
            Ok(Some(Found {
                object,
                offset,
                length,
                body: stream_body(stream),
            }))
        })
    }

    fn head(&self, key: &str) -> BoxFuture<'static, Result<Option<R2Object>, BindingError>> {
        let (db, key) = (self.db.clone(), key.to_string());
        Box::pin(async move { head_row(&db, key).await })
    }

    fn delete(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), BindingError>> {
        let db = self.db.clone();
        let paths: Vec<PathBuf> = keys.iter().map(|k| blob_path(&self.blobs, k)).collect();
        Box::pin(async move {
            db.with(move |conn| {
                let tx = conn.transaction()?;
                for key in &keys {
                    tx.execute("DELETE FROM objects WHERE key = ?1", [key])?;
                }
                tx.commit()
            })
            .await?;
            for path in paths {
                let _ = tokio::fs::remove_file(path).await;
            }
            Ok(())
        })
    }

    fn list(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> BoxFuture<'static, Result<Vec<R2Object>, BindingError>> {
        let db = self.db.clone();
        let (prefix, after) = (prefix.to_string(), after.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        Box::pin(async move {
            db.with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM objects
                     WHERE key > ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key LIMIT ?3"
                ))?;
                let mut rows = stmt.query(rusqlite::params![after, prefix, limit])?;
                let mut objects = Vec::new();
                while let Some(row) = rows.next()? {
                    objects.push(object(row)?);
                }
                Ok(objects)
            })
            .await
        })
    }
}

/// A row of `SELECT {COLUMNS}`.
fn object(row: &rusqlite::Row<'_>) -> rusqlite::Result<R2Object> {
    Ok(R2Object {
        key: row.get(0)?,
        size: row.get::<_, i64>(1)? as u64,
        etag: row.get(2)?,
        uploaded: row.get(3)?,
        http_metadata: parse_metadata(&row.get::<_, String>(4)?),
        custom_metadata: parse_metadata(&row.get::<_, String>(5)?),
        version: row.get(6)?,
    })
}

/// Stream `body` into `path`: (size, MD5 hex).
async fn write_file(mut body: Upload, path: &Path) -> Result<(u64, String), BindingError> {
    let io = |e: std::io::Error| BindingError::error(format!("R2 put failed: {e}"));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    while let Some(data) = body.chunk().await? {
        file.write_all(&data).await.map_err(io)?;
    }
    file.sync_all().await.map_err(io)?;
    Ok(body.finish())
}

/// Unique enough for a version or a temporary file's name on one node.
fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{:x}{:x}{:x}",
        jiff::Timestamp::now().as_nanosecond(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
