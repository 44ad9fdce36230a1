//! The cluster database's schema, versioned. Every node runs [`run`] on
//! start; an advisory lock held for the transaction makes nodes starting at
//! once apply each migration exactly once, and a node older than the schema
//! refuses to start rather than misread it.

use anyhow::{Context, Result, bail};

use crate::Db;

/// The advisory lock key migrations take ("taipan" in ASCII).
const MIGRATION_LOCK: i64 = 0x7461_6970_616e;

/// `(version, SQL)`, in order. Never edit a released entry: add one.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
    -- Cluster-wide settings (the nodes' shared secret).
    CREATE TABLE settings (key text PRIMARY KEY, value text NOT NULL);
    -- Live and past nodes; alive while their heartbeat is recent.
    CREATE TABLE nodes (
        id text PRIMARY KEY,
        public_addr text NOT NULL,
        admin_addr text NOT NULL,
        internal_url text,
        taipan_version text NOT NULL,
        started timestamptz NOT NULL,
        heartbeat timestamptz NOT NULL,
        draining boolean NOT NULL DEFAULT false
    );
    -- The control plane. `generation` changes with anything a node serving
    -- the worker must reload for (deploy, rollback, secrets).
    CREATE TABLE workers (
        name text PRIMARY KEY,
        current integer,
        generation bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE versions (
        worker text NOT NULL,
        number integer NOT NULL,
        record jsonb NOT NULL,
        created timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (worker, number)
    );
    -- Values sealed with the operator's key (nonce || ciphertext).
    CREATE TABLE secrets (
        worker text NOT NULL,
        name text NOT NULL,
        sealed bytea NOT NULL,
        PRIMARY KEY (worker, name)
    );
    -- Workers KV; keys sort by bytes, as on Workers.
    CREATE TABLE kv (
        namespace text NOT NULL,
        key text COLLATE "C" NOT NULL,
        value bytea NOT NULL,
        metadata text,
        expiration bigint,
        PRIMARY KEY (namespace, key)
    );
    -- Single-owner things (a Durable Object, a D1 database, the cron
    -- leader): one node holds each until `expires`; `token` grows with every
    -- new owner (fencing).
    CREATE TABLE leases (
        name text PRIMARY KEY,
        owner text NOT NULL,
        token bigint NOT NULL,
        expires timestamptz NOT NULL
    );
    -- A cron trigger's scheduled minutes already claimed by a node.
    CREATE TABLE cron_runs (
        worker text NOT NULL,
        cron text NOT NULL,
        minute bigint NOT NULL,
        node text NOT NULL,
        PRIMARY KEY (worker, cron, minute)
    );
    "#,
    ),
    (
        2,
        r#"
    -- SQLite databases (D1, Durable Object storage) shipped by their owner
    -- (src/replica.rs): the current generation's snapshot object, if any,
    -- and that generation's WAL, in pieces whose concatenation in `seq`
    -- order is a prefix of the owner's -wal file ending at a commit.
    CREATE TABLE sqlite_replicas (
        name text PRIMARY KEY,
        generation bigint NOT NULL,
        snapshot text
    );
    CREATE TABLE sqlite_wal (
        name text NOT NULL,
        generation bigint NOT NULL,
        seq bigint NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (name, generation, seq)
    );
    "#,
    ),
    (
        3,
        r#"
    -- Queue messages (taipan-bindings' queues/postgres.rs). Times are ms
    -- since the epoch by the database's clock. A message is ready once
    -- `visible_ms` has passed; a lease sets `lease_owner` (the leasing
    -- process) and pushes `visible_ms` to when the lease lapses, which its
    -- owner keeps renewing while alive; `seq` orders messages visible at
    -- the same time by their sending.
    CREATE TABLE queue_messages (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        id text NOT NULL UNIQUE,
        queue text COLLATE "C" NOT NULL,
        body bytea NOT NULL,
        content_type text NOT NULL,
        sent_ms bigint NOT NULL,
        visible_ms bigint NOT NULL,
        attempts bigint NOT NULL DEFAULT 0,
        lease_owner text
    );
    CREATE INDEX queue_messages_ready ON queue_messages (queue, visible_ms, seq);
    CREATE INDEX queue_messages_leased ON queue_messages (lease_owner)
        WHERE lease_owner IS NOT NULL;
    "#,
    ),
    (
        4,
        r#"
    -- R2 buckets: each object's record here, its bytes in object storage
    -- under `blob`, a key made for that one write (`r2/<bucket>/<uuid>`), so
    -- a put uploads first and then points the row at its blob in one
    -- transaction. Keys sort by bytes, as on R2. The metadata columns hold
    -- JSON text exactly as the worker gave it (jsonb would reorder keys and
    -- refuse \u0000 in strings).
    CREATE TABLE r2_objects (
        bucket text NOT NULL,
        key text COLLATE "C" NOT NULL,
        blob text NOT NULL,
        size bigint NOT NULL,
        etag text NOT NULL,
        uploaded bigint NOT NULL,
        http_metadata text NOT NULL,
        custom_metadata text NOT NULL,
        version text NOT NULL,
        PRIMARY KEY (bucket, key)
    );
    "#,
    ),
    (
        5,
        r#"
    -- Durable Object alarms (taipan-bindings' alarms.rs), one per object.
    -- Times are ms since the epoch by the database's clock. A node firing
    -- an alarm claims it (`claim`, a token of that one firing) until
    -- `claim_until`; finished, the row goes (or is rescheduled for a
    -- retry); a claim that lapses (its node died mid-fire) is taken again.
    CREATE TABLE alarms (
        script text COLLATE "C" NOT NULL,
        class text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        at bigint NOT NULL,
        retry integer NOT NULL DEFAULT 0,
        claim text,
        claim_until bigint,
        PRIMARY KEY (script, class, id)
    );
    CREATE INDEX alarms_due ON alarms (script, at);
    "#,
    ),
    (
        6,
        r#"
    -- Workflow instances (taipan-bindings' workflows/postgres.rs), their
    -- completed steps and the events sent to them. JSON is kept as the text
    -- the worker gave (as in r2_objects). `wake_ms` is when the instance is
    -- due, by the clock of the node that set it; a run leases the instance
    -- until `leased_until` (ms since the epoch by the database's clock),
    -- which its node renews while the run goes on; a lease that lapses (its
    -- node died) is taken again and `generation` bumped, as a restart bumps
    -- it, so the lapsed run stores nothing more.
    CREATE TABLE workflow_instances (
        workflow text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        params text NOT NULL,
        created_ms bigint NOT NULL,
        status text NOT NULL,
        output text,
        error text,
        wake_ms bigint,
        leased_until bigint,
        generation bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (workflow, id)
    );
    CREATE INDEX workflow_instances_due ON workflow_instances (workflow, wake_ms)
        WHERE status IN ('queued', 'running', 'waiting');
    CREATE TABLE workflow_steps (
        workflow text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        name text COLLATE "C" NOT NULL,
        record text NOT NULL,
        PRIMARY KEY (workflow, id, name)
    );
    -- `seq` numbers one instance's events in the order they were sent.
    CREATE TABLE workflow_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        workflow text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        type text NOT NULL,
        payload text NOT NULL,
        consumed boolean NOT NULL DEFAULT false
    );
    CREATE INDEX workflow_events_instance ON workflow_events (workflow, id, seq);
    "#,
    ),
];

/// Bring the schema up to date; returns its version.
pub async fn run(db: &Db) -> Result<i32> {
    let mut client = db.client().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .context("waiting for the migration lock")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS taipan_migrations (
            version integer PRIMARY KEY,
            applied timestamptz NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query("SELECT version FROM taipan_migrations", &[])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (version, sql) in pending(MIGRATIONS, &applied)? {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("applying migration {version}"))?;
        tx.execute(
            "INSERT INTO taipan_migrations (version) VALUES ($1)",
            &[version],
        )
        .await?;
        tracing::info!("database schema: applied migration {version}");
    }
    tx.commit().await?;
    Ok(MIGRATIONS.last().map_or(0, |(v, _)| *v))
}

/// The migrations to apply, in order: every version not recorded as
/// `applied` (one added below the newest applied, as when two changes are
/// merged in either order, too). An applied version newer than all of
/// `migrations` means a newer taipan migrated the database: an error.
fn pending<'a>(
    migrations: &'a [(i32, &'a str)],
    applied: &[i32],
) -> Result<Vec<&'a (i32, &'a str)>> {
    let latest = migrations.last().map_or(0, |(v, _)| *v);
    if let Some(newest) = applied.iter().copied().max()
        && newest > latest
    {
        bail!(
            "the database's schema is at version {newest}, newer than this taipan knows ({latest})\n\
             hint: run the same taipan version on every node"
        );
    }
    Ok(migrations
        .iter()
        .filter(|(v, _)| !applied.contains(v))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_unique_and_in_order() {
        for pair in MIGRATIONS.windows(2) {
            assert!(
                pair[0].0 < pair[1].0,
                "migration {} is listed before {}",
                pair[0].0,
                pair[1].0
            );
        }
    }

    #[test]
    fn every_unrecorded_version_is_applied_in_order() {
        let migrations = [(1, "a"), (2, "b"), (3, "c"), (4, "d")];
        let versions = |applied: &[i32]| -> Vec<i32> {
            pending(&migrations, applied)
                .unwrap()
                .iter()
                .map(|(v, _)| *v)
                .collect()
        };
        assert_eq!(versions(&[]), [1, 2, 3, 4]);
        assert_eq!(versions(&[1, 2]), [3, 4]);
        // 2 merged after 3 was applied somewhere: 2 still runs.
        assert_eq!(versions(&[1, 3]), [2, 4]);
        assert_eq!(versions(&[4, 1, 3, 2]), Vec::<i32>::new());
        let newer = pending(&migrations, &[1, 5]).unwrap_err().to_string();
        assert!(newer.contains("version 5, newer"), "{newer}");
    }

    #[tokio::test]
    async fn migrating_twice_applies_each_version_once() {
        let database = crate::testing::TestDatabase::create().await;
        let db = database.connect().await;
        assert_eq!(run(&db).await.unwrap(), MIGRATIONS.last().unwrap().0);
        let recorded: Vec<i32> = db
            .client()
            .await
            .unwrap()
            .query(
                "SELECT version FROM taipan_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let all: Vec<i32> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(recorded, all);
    }
}
