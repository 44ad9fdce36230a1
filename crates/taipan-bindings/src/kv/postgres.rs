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
            let rows = match prefix_end(&prefix) {
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

/// The least string greater than every string starting with `prefix`: the
/// prefix with its last character raised by one (UTF-8 sorts as code points
/// do), dropping trailing U+10FFFF first; None when nothing is left.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A failed operation as the worker sees it (`KV GET failed: …`).
fn failed<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> BindingError {
    move |e| {
        BindingError::error(format!(
            "KV {op} failed on the cluster database: {e}; try again"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_at_its_last_character_raised() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_end("a\u{7F}").as_deref(), Some("a\u{80}"));
        assert_eq!(prefix_end("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        assert_eq!(prefix_end("ab\u{10FFFF}").as_deref(), Some("ac"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
    }
}
