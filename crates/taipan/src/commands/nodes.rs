//! `taipan nodes`: the nodes of a cluster, as the server's database sees them.

use anyhow::Result;
use clap::Args;
use taipan_server::api;

use super::client::ServerArgs;

#[derive(Args)]
pub struct NodesArgs {
    #[command(flatten)]
    server: ServerArgs,
}

impl NodesArgs {
    pub fn run(self) -> Result<()> {
        let client = self.server.client(None)?;
        let body: api::Nodes = self
            .server
            .json(client.get(self.server.url("/api/nodes")))?;
        if !body.cluster {
            println!(
                "this server runs alone, not in a cluster\nhint: start each node with --database and --objects (docs/cluster.md)"
            );
            return Ok(());
        }
        println!(
            "{:<18} {:<6} {:<22} {:<22} {:>10}  started",
            "node", "state", "public", "admin", "heartbeat"
        );
        for node in body.nodes {
            let state = match (node.alive, node.draining) {
                (false, _) => "dead",
                (true, true) => "drain",
                (true, false) => "live",
            };
            let this = if body.this.as_deref() == Some(node.id.as_str()) {
                " (answered)"
            } else {
                ""
            };
            println!(
                "{:<18} {:<6} {:<22} {:<22} {:>8}ms  {}{this}",
                node.id,
                state,
                node.public_addr,
                node.admin_addr,
                node.last_heartbeat_ms,
                node.started
            );
        }
        Ok(())
    }
}
