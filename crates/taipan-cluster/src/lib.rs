//! Cluster mode's shared state, on engines operators already run:
//! PostgreSQL for the control plane (workers, versions, secrets), KV, nodes
//! and leases ([`db`], [`migrations`], [`control`], [`nodes`]), and object
//! storage for builds and asset trees ([`objects`]).
//!
//! This crate knows tables and objects, not the Workers platform: the server
//! stores its version records here as JSON, and bindings keep their rows.
//! A node of a cluster is a `taipan serve` started with `--database` and
//! `--objects`; everything it must share lives behind [`Cluster`].

pub mod control;
pub mod db;
pub mod leases;
pub mod migrations;
pub mod nodes;
pub mod objects;
pub mod replica;
pub mod secrets;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::sync::Arc;

use anyhow::Result;

pub use db::Db;
pub use objects::Objects;
pub use secrets::SecretBox;

/// How a node reaches the cluster's shared state.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// `postgres://…`
    pub database_url: String,
    /// `s3://bucket[/prefix]` or `file:///dir`.
    pub objects_url: String,
    /// The key secrets are sealed with (32 bytes), the same on every node.
    pub secrets_key: [u8; 32],
}

/// Process lifetime: the connections to the shared state.
pub struct Cluster {
    pub db: Db,
    pub objects: Objects,
    pub secrets: SecretBox,
}

impl Cluster {
    /// Connect, bring the schema up to date, and open the object store.
    pub async fn connect(options: &ClusterOptions) -> Result<Arc<Self>> {
        let db = Db::connect(&options.database_url).await?;
        migrations::run(&db).await?;
        let objects = Objects::open(&options.objects_url)?;
        objects.check().await?;
        Ok(Arc::new(Self {
            db,
            objects,
            secrets: SecretBox::new(&options.secrets_key),
        }))
    }
}
