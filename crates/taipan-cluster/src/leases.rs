//! Single ownership: a named thing (a Durable Object, a D1 database) is
//! held by one node at a time, for [`LEASE_TTL`] past its last renewal.
//! Taking a lease from another node (only once it expired) raises its
//! `token`, so writes fenced with the old token fail: a node that paused
//! past its lease cannot write over its successor's work.

use std::time::Duration;

use anyhow::Result;

use crate::Db;

/// How long a lease lasts without renewal: a dead owner's things move after this.
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often an owner renews what it holds (well inside the TTL).
pub const RENEW_EVERY: Duration = Duration::from_secs(5);

/// A lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub name: String,
    pub owner: String,
    pub token: i64,
}

/// Who holds a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// This node (just taken, or already held).
    Me(Lease),
    /// Another live node, reachable at its internal URL (None when it has none).
    Node {
        /// The holder: `<node id>#<process>`.
        id: String,
        internal_url: Option<String>,
    },
}

fn ttl_ms() -> f64 {
    LEASE_TTL.as_millis() as f64
}

/// Take `name` for `node` when it is free, expired or already ours (then
/// it is renewed); else say who holds it.
pub async fn acquire(db: &Db, name: &str, node: &str) -> Result<Holder> {
    let client = db.client().await?;
    let taken = client
        .query_opt(
            "INSERT INTO leases (name, owner, token, expires)
             VALUES ($1, $2, 1, now() + $3 * interval '1 millisecond')
             ON CONFLICT (name) DO UPDATE SET
               owner = excluded.owner,
               token = CASE WHEN leases.owner = excluded.owner AND leases.expires > now()
                            THEN leases.token ELSE leases.token + 1 END,
               expires = excluded.expires
             WHERE leases.owner = excluded.owner OR leases.expires <= now()
             RETURNING token",
            &[&name, &node, &ttl_ms()],
        )
        .await?;
    if let Some(row) = taken {
        return Ok(Holder::Me(Lease {
            name: name.to_string(),
            owner: node.to_string(),
            token: row.get(0),
        }));
    }
    let row = client
        .query_one(
            "SELECT l.owner, n.internal_url FROM leases l
             LEFT JOIN nodes n ON n.id = split_part(l.owner, '#', 1)
             WHERE l.name = $1",
            &[&name],
        )
        .await?;
    Ok(Holder::Node {
        id: row.get(0),
        internal_url: row.get(1),
    })
}

/// Extend every lease in `held`; returns the names no longer ours.
pub async fn renew(db: &Db, node: &str, held: &[Lease]) -> Result<Vec<String>> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let client = db.client().await?;
    let names: Vec<&str> = held.iter().map(|l| l.name.as_str()).collect();
    let tokens: Vec<i64> = held.iter().map(|l| l.token).collect();
    let rows = client
        .query(
            "UPDATE leases l SET expires = now() + $3 * interval '1 millisecond'
             FROM unnest($1::text[], $2::bigint[]) AS h(name, token)
             WHERE l.name = h.name AND l.token = h.token AND l.owner = $4 AND l.expires > now()
             RETURNING l.name",
            &[&names, &tokens, &ttl_ms(), &node],
        )
        .await?;
    let kept: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
    Ok(held
        .iter()
        .filter(|l| !kept.contains(&l.name))
        .map(|l| l.name.clone())
        .collect())
}

/// Give a lease up now (its row stays, expired, so tokens keep growing).
pub async fn release(db: &Db, lease: &Lease) -> Result<()> {
    let client = db.client().await?;
    client
        .execute(
            "UPDATE leases SET expires = now() - interval '1 millisecond'
             WHERE name = $1 AND owner = $2 AND token = $3",
            &[&lease.name, &lease.owner, &lease.token],
        )
        .await?;
    Ok(())
}

/// Give up everything `node` holds (a draining node).
pub async fn release_all(db: &Db, node: &str) -> Result<u64> {
    let client = db.client().await?;
    Ok(client
        .execute(
            "UPDATE leases SET expires = now() - interval '1 millisecond'
             WHERE owner = $1 AND expires > now()",
            &[&node],
        )
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    #[tokio::test]
    async fn one_holder_at_a_time_and_tokens_fence_old_owners() {
        let database = TestDatabase::create().await;
        let db = database.connect().await;
        let Holder::Me(first) = acquire(&db, "do:x", "a").await.unwrap() else {
            panic!("a free name is taken");
        };
        assert_eq!(first.token, 1);
        // Held: b is told who has it; a renews without a new token.
        assert_eq!(
            acquire(&db, "do:x", "b").await.unwrap(),
            Holder::Node {
                id: "a".into(),
                internal_url: None
            }
        );
        assert_eq!(
            acquire(&db, "do:x", "a").await.unwrap(),
            Holder::Me(first.clone())
        );
        assert!(
            renew(&db, "a", std::slice::from_ref(&first))
                .await
                .unwrap()
                .is_empty()
        );
        // Released: b takes it with a higher token; a's renewal fails.
        release(&db, &first).await.unwrap();
        let Holder::Me(second) = acquire(&db, "do:x", "b").await.unwrap() else {
            panic!("a released name is taken");
        };
        assert_eq!(second.token, 2);
        assert_eq!(renew(&db, "a", &[first]).await.unwrap(), ["do:x"]);
        assert_eq!(release_all(&db, "b").await.unwrap(), 1);
        assert!(matches!(acquire(&db, "do:x", "a").await.unwrap(), Holder::Me(l) if l.token == 3));
    }
}
