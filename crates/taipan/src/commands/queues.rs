//! `taipan queues list` and `taipan queues send QUEUE BODY`: a queue's
//! backlog, and a message sent by hand to test a consumer, against the
//! project's local state (`.taipan/state`, as `taipan dev` uses it; a
//! running dev picks the message up within seconds), a `taipan serve` data
//! dir (`--data-dir`), or a running server (`--remote`).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use taipan_bindings::Stores;
use taipan_bindings::queues::sqlite::SqliteQueueStore;
use taipan_bindings::queues::{NewMessage, QueueStats, Queues, check_message};
use taipan_server::api;

#[derive(Args)]
pub struct QueuesArgs {
    #[command(subcommand)]
    action: QueuesAction,
}

#[derive(Args, Clone)]
struct Target {
    /// The project folder whose local state holds the queues.
    #[arg(short = 'c', long = "config", default_value = ".")]
    project: PathBuf,
    /// Use the state of a `taipan serve` with this data dir instead.
    #[arg(long, conflicts_with = "remote")]
    data_dir: Option<PathBuf>,
    /// Use a running `taipan serve` (--server, --token).
    #[arg(long)]
    remote: bool,
    #[command(flatten)]
    server: super::client::ServerArgs,
}

#[derive(Subcommand)]
enum QueuesAction {
    /// Every queue holding messages: ready, delayed and in-flight counts.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Send one message to a queue.
    Send {
        queue: String,
        /// The message: JSON by default (`--content-type text` sends it as is).
        body: String,
        #[arg(long, default_value = "json", value_parser = ["json", "text"])]
        content_type: String,
        #[command(flatten)]
        target: Target,
    },
}

impl QueuesArgs {
    pub fn run(self) -> Result<()> {
        match self.action {
            QueuesAction::List { target } => {
                let queues = if target.remote {
                    let client = target.server.client(None)?;
                    target
                        .server
                        .json::<api::QueueList>(client.get(target.server.url("/api/queues")))?
                        .queues
                } else {
                    block_on(async {
                        target
                            .local()?
                            .store()
                            .stats()
                            .await
                            .map_err(|e| anyhow::anyhow!(e.message))
                    })?
                };
                print_stats(&queues);
            }
            QueuesAction::Send {
                queue,
                body,
                content_type,
                target,
            } => {
                if !taipan_config::queues::valid_queue_name(&queue) {
                    bail!(
                        "{queue:?} is not a queue name\nhint: use letters, digits, dashes and underscores"
                    );
                }
                if content_type == "json"
                    && serde_json::from_str::<serde_json::Value>(&body).is_err()
                {
                    bail!(
                        "the message is not JSON\nhint: quote it as JSON ('\"hello\"'), or pass --content-type text"
                    );
                }
                if target.remote {
                    let client = target.server.client(None)?;
                    let url = target.server.url(&format!(
                        "/api/queues/{queue}/messages?content_type={content_type}"
                    ));
                    target
                        .server
                        .json::<api::QueueSent>(client.post(url).body(body))?;
                } else {
                    check_message(&content_type, body.len(), 0)
                        .map_err(|e| anyhow::anyhow!(e.message))?;
                    let message = NewMessage {
                        body: body.into(),
                        content_type,
                        delay_seconds: 0,
                    };
                    block_on(async {
                        let queues = target.local()?;
                        queues
                            .send(&queue, vec![message])
                            .await
                            .map_err(|e| anyhow::anyhow!(e.message))
                    })?;
                }
                println!("Sent a message to {queue}.");
            }
        }
        Ok(())
    }
}

impl Target {
    /// The queue store in the local state (or a data dir's), opened beside
    /// whatever server may be delivering from it.
    fn local(&self) -> Result<std::sync::Arc<Queues>> {
        let root = match &self.data_dir {
            Some(dir) => dir.join("state"),
            None => self.project.join(".taipan").join("state"),
        };
        let stores = Stores::new(root);
        let db = stores.database(stores.queues_path())?;
        Ok(Queues::new(SqliteQueueStore::open_beside(db)?))
    }
}

fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(future)
}

fn print_stats(queues: &[QueueStats]) {
    if queues.is_empty() {
        println!("No messages in any queue.");
        return;
    }
    println!(
        "{:<32} {:>8} {:>8} {:>10}",
        "QUEUE", "READY", "DELAYED", "IN FLIGHT"
    );
    for q in queues {
        println!(
            "{:<32} {:>8} {:>8} {:>10}",
            q.queue, q.ready, q.delayed, q.in_flight
        );
    }
}
