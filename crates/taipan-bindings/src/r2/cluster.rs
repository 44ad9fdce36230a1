//! Cluster mode's R2: every bucket's records in the cluster database's
//! `r2_objects` table (`taipan_cluster::migrations`), one bucket's rows told
//! apart by its name, and each object's bytes in the cluster's object
//! storage, so every node reads what any node wrote.
//!
//! An object's bytes live under a key made for that one write,
//! `r2/<bucket>/<uuid>` (the bucket's name as `store::file_stem` makes it
//! safe for a path), never overwritten: a `put` uploads the new blob
//! first, then points the row at it in a transaction, then deletes the blob
//! the row pointed at before (best effort). So a reader never sees half an
//! object, nor an object's record with another write's bytes: the row names
//! the bytes it describes. A node that dies between the upload and the
//! commit, or before the old blob is deleted, leaves an orphan blob under
//! `r2/<bucket>/` that no row names — wasted space, never wrong data.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde_json::Value;
use taipan_cluster::{Db, Objects};

use super::{ByteRange, Found, R2Object, R2Store, Upload, parse_metadata};
use crate::protocol::{BindingError, stream_body};
use crate::store::file_stem;

const COLUMNS: &str = "key, size, etag, uploaded, http_metadata, custom_metadata, version, blob";

/// `list` within a prefix: a range of the primary key (the `key` column is
/// `COLLATE "C"`, which compares bytes), from the prefix to the first string
/// after every string it starts.
const LIST_BOUNDED: &str =
    "SELECT key, size, etag, uploaded, http_metadata, custom_metadata, version, blob
    FROM r2_objects WHERE bucket = $1 AND key > $2 AND key >= $3 AND key < $5
    ORDER BY key LIMIT $4";
/// `list` of a prefix with no string after all those it starts ("" or
/// only U+10FFFF).
const LIST_UNBOUNDED: &str =
    "SELECT key, size, etag, uploaded, http_metadata, custom_metadata, version, blob
    FROM r2_objects WHERE bucket = $1 AND key > $2 AND key >= $3
    ORDER BY key LIMIT $4";

/// How many times `get` reads the record again when the blob it named has
/// gone meanwhile (replaced or deleted by another put or delete).
const GET_ATTEMPTS: usize = 5;

pub struct ClusterR2 {
    db: Db,
    objects: Objects,
    bucket: String,
}

impl ClusterR2 {
    /// The bucket `bucket` (its configured name) of the cluster's R2.
    pub fn new(db: Db, objects: Objects, bucket: &str) -> Arc<Self> {
        Arc::new(Self {
            db,
            objects,
            bucket: bucket.to_string(),
        })
    }
}

/// A row of `SELECT {COLUMNS}`: (the record, its blob). (A macro: this
/// crate does not name `tokio_postgres`'s types.)
macro_rules! object {
    ($row:expr) => {{
        let row = $row;
        let object = R2Object {
            key: row.get(0),
            size: row.get::<_, i64>(1) as u64,
            etag: row.get(2),
            uploaded: row.get(3),
            http_metadata: parse_metadata(row.get(4)),
            custom_metadata: parse_metadata(row.get(5)),
            version: row.get(6),
        };
        (object, row.get::<_, String>(7))
    }};
}

impl R2Store for ClusterR2 {
    fn put(
        &self,
        key: &str,
        mut body: Upload,
        http_metadata: Value,
        custom_metadata: Value,
    ) -> BoxFuture<'static, Result<R2Object, BindingError>> {
        let (db, objects, bucket) = (self.db.clone(), self.objects.clone(), self.bucket.clone());
        let key = key.to_string();
        Box::pin(async move {
            // PostgreSQL text holds no NUL.
            if key.contains('\0') {
                return Err(BindingError::type_error(
                    "R2 put failed: the key contains a NUL character, which cluster mode's \
                     database cannot store; use a key without one",
                ));
            }
            let version = uuid::Uuid::new_v4().simple().to_string();
            let blob = format!("r2/{}/{version}", file_stem(&bucket));
            // 1. The bytes, under a key no one else writes or reads yet.
            let mut writer = objects.writer(&blob);
            loop {
                let chunk = match body.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => break,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(e);
                    }
                };
                if let Err(e) = writer.write(chunk).await {
                    let _ = writer.abort().await;
                    return Err(storage("put", e));
                }
            }
            writer.finish().await.map_err(|e| storage("put", e))?;
            let (size, etag) = body.finish();
            let object = R2Object {
                key,
                size,
                etag,
                uploaded: jiff::Timestamp::now().as_millisecond(),
                http_metadata,
                custom_metadata,
                version,
            };
            // 2. The row, pointed at them.
            let replaced = match point_row(&db, &bucket, &object, &blob).await {
                Ok(replaced) => replaced,
                Err(Flip::Before(e)) => {
                    // Nothing names the new blob: remove it.
                    if let Err(e) = objects.delete(&blob).await {
                        tracing::warn!("R2: could not remove the unused blob {blob:?}: {e:#}");
                    }
                    return Err(database("put", e));
                }
                // The commit's outcome is unknown: the row may name the new
                // blob, which must stay.
                Err(Flip::Commit(e)) => return Err(database("put", e)),
            };
            // 3. The bytes no row names any more.
            if let Some(old) = replaced {
                remove_blob(&objects, &old).await;
            }
            Ok(object)
        })
    }

    fn get(
        &self,
        key: &str,
        range: ByteRange,
    ) -> BoxFuture<'static, Result<Option<Found>, BindingError>> {
        let (db, objects, bucket) = (self.db.clone(), self.objects.clone(), self.bucket.clone());
        let key = key.to_string();
        Box::pin(async move {
            if key.contains('\0') {
                return Ok(None);
            }
            let mut missing: Option<String> = None;
            for _ in 0..GET_ATTEMPTS {
                let Some((object, blob)) = record(&db, &bucket, &key, "get").await? else {
                    return Ok(None);
                };
                if missing.as_ref() == Some(&blob) {
                    // Read again, the record still names it: not a race.
                    return Err(BindingError::error(format!(
                        "R2 get failed: the object storage has lost the bytes of {key:?} \
                         (expected at {blob:?})"
                    )));
                }
                let (offset, length) = range.resolve(object.size)?;
                let found = |body| Found {
                    object: object.clone(),
                    offset,
                    length,
                    body,
                };
                if length == 0 {
                    // Object storage refuses an empty range: nothing to fetch.
                    let body = stream_body(futures::stream::empty());
                    return Ok(Some(found(body)));
                }
                let bytes = (offset > 0 || length < object.size).then_some(offset..offset + length);
                match objects.get_stream(&blob, bytes).await {
                    Ok(Some(stream)) => return Ok(Some(found(stream_body(stream)))),
                    // Replaced or deleted since the record was read (by a
                    // put or delete elsewhere): read the record again.
                    Ok(None) => missing = Some(blob),
                    Err(e) => return Err(storage("get", e)),
                }
            }
            Err(BindingError::error(format!(
                "R2 get failed: the object {key:?} kept changing while being read; the \
                 operation may be retried"
            )))
        })
    }

    fn head(&self, key: &str) -> BoxFuture<'static, Result<Option<R2Object>, BindingError>> {
        let (db, bucket, key) = (self.db.clone(), self.bucket.clone(), key.to_string());
        Box::pin(async move {
            if key.contains('\0') {
                return Ok(None);
            }
            Ok(record(&db, &bucket, &key, "head")
                .await?
                .map(|(object, _)| object))
        })
    }

    fn delete(&self, keys: Vec<String>) -> BoxFuture<'static, Result<(), BindingError>> {
        let (db, objects, bucket) = (self.db.clone(), self.objects.clone(), self.bucket.clone());
        Box::pin(async move {
            let keys: Vec<String> = keys.into_iter().filter(|k| !k.contains('\0')).collect();
            if keys.is_empty() {
                return Ok(());
            }
            let client = db.client().await.map_err(|e| database("delete", e))?;
            let rows = client
                .query(
                    "DELETE FROM r2_objects WHERE bucket = $1 AND key = ANY($2) RETURNING blob",
                    &[&bucket, &keys],
                )
                .await
                .map_err(|e| database("delete", e))?;
            for row in rows {
                remove_blob(&objects, row.get(0)).await;
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
        let (db, bucket) = (self.db.clone(), self.bucket.clone());
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
            let client = db.client().await.map_err(|e| database("list", e))?;
            let rows = match taipan_cluster::db::prefix_end(&prefix) {
                Some(end) => {
                    client
                        .query(LIST_BOUNDED, &[&bucket, &after, &prefix, &limit, &end])
                        .await
                }
                None => {
                    client
                        .query(LIST_UNBOUNDED, &[&bucket, &after, &prefix, &limit])
                        .await
                }
            }
            .map_err(|e| database("list", e))?;
            Ok(rows.iter().map(|row| object!(row).0).collect())
        })
    }
}

/// The record at `key` and its blob.
async fn record(
    db: &Db,
    bucket: &str,
    key: &str,
    op: &str,
) -> Result<Option<(R2Object, String)>, BindingError> {
    let client = db.client().await.map_err(|e| database(op, e))?;
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM r2_objects WHERE bucket = $1 AND key = $2"),
            &[&bucket, &key],
        )
        .await
        .map_err(|e| database(op, e))?;
    Ok(row.map(|row| object!(row)))
}

/// Why the row could not be pointed at a new blob.
enum Flip {
    /// Before the commit: the transaction did nothing.
    Before(anyhow::Error),
    /// At the commit: it may or may not have happened.
    Commit(anyhow::Error),
}

/// Create or update the row of `object`, naming `blob`, in one transaction;
/// the blob it named before, if any.
async fn point_row(
    db: &Db,
    bucket: &str,
    object: &R2Object,
    blob: &str,
) -> Result<Option<String>, Flip> {
    let mut client = db.client().await.map_err(Flip::Before)?;
    let tx = client.transaction().await.map_err(before)?;
    let size = i64::try_from(object.size).unwrap_or(i64::MAX);
    let (http, custom) = (
        object.http_metadata.to_string(),
        object.custom_metadata.to_string(),
    );
    let (key, etag, version) = (&object.key, &object.etag, &object.version);
    // Lock the row if there is one; else insert it, unless another put
    // inserted it first (then lock that one: another round).
    let replaced = loop {
        let old = tx
            .query_opt(
                "SELECT blob FROM r2_objects WHERE bucket = $1 AND key = $2 FOR UPDATE",
                &[&bucket, key],
            )
            .await
            .map_err(before)?;
        if let Some(old) = old {
            tx.execute(
                "UPDATE r2_objects SET blob = $3, size = $4, etag = $5, uploaded = $6,
                   http_metadata = $7, custom_metadata = $8, version = $9
                 WHERE bucket = $1 AND key = $2",
                &[
                    &bucket,
                    key,
                    &blob,
                    &size,
                    etag,
                    &object.uploaded,
                    &http,
                    &custom,
                    version,
                ],
            )
            .await
            .map_err(before)?;
            break Some(old.get::<_, String>(0));
        }
        let inserted = tx
            .execute(
                "INSERT INTO r2_objects
                   (bucket, key, blob, size, etag, uploaded, http_metadata, custom_metadata, version)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (bucket, key) DO NOTHING",
                &[&bucket, key, &blob, &size, etag, &object.uploaded, &http, &custom, version],
            )
            .await
            .map_err(before)?;
        if inserted == 1 {
            break None;
        }
    };
    tx.commit().await.map_err(|e| Flip::Commit(e.into()))?;
    Ok(replaced)
}

fn before(e: impl Into<anyhow::Error>) -> Flip {
    Flip::Before(e.into())
}

/// Delete a blob no row names; a failure only leaves it orphaned.
async fn remove_blob(objects: &Objects, blob: &str) {
    if let Err(e) = objects.delete(blob).await {
        tracing::warn!("R2: could not remove the replaced blob {blob:?}: {e:#}");
    }
}

/// A failed operation on the cluster database, as the worker sees it.
fn database(op: &str, e: impl std::fmt::Display) -> BindingError {
    BindingError::error(format!(
        "R2 {op} failed: the cluster database: {e:#}; the operation may be retried"
    ))
}

/// A failed operation on the object storage, as the worker sees it.
fn storage(op: &str, e: anyhow::Error) -> BindingError {
    BindingError::error(format!(
        "R2 {op} failed: the object storage: {e:#}; the operation may be retried"
    ))
}
