//! The PostgreSQL connection pool, and notifications (`LISTEN`).

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

/// Connections a node keeps to the database at most.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a request waits for a free connection before failing.
pub const CONNECTION_WAIT: Duration = Duration::from_secs(10);

/// A pool of connections to the cluster's database.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    config: tokio_postgres::Config,
}

pub type Client = deadpool_postgres::Object;

impl Db {
    /// Connect to `url` (`postgres://user:password@host:port/database`),
    /// checking at once that the database answers.
    pub async fn connect(url: &str) -> Result<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("{:?} is not a PostgreSQL URL", redact(url)))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .wait_timeout(Some(CONNECTION_WAIT))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .context("creating the database pool")?;
        let db = Self { pool, config };
        let _probe = db.client().await.with_context(|| {
            format!(
                "could not connect to the database {:?}\nhint: check that PostgreSQL runs there and \
                 that the user, password and database name are right",
                redact(url)
            )
        })?;
        Ok(db)
    }

    /// A connection from the pool (back to the pool when dropped).
    pub async fn client(&self) -> Result<Client> {
        self.pool
            .get()
            .await
            .map_err(|e| anyhow!("the database is unreachable: {e}"))
    }

    /// A connection of its own that receives `NOTIFY`s on `channels`, as
    /// `(channel, payload)`; the receiver ends when the connection is lost.
    pub async fn listen(&self, channels: &[&str]) -> Result<Listener> {
        let (client, mut connection) = self
            .config
            .connect(NoTls)
            .await
            .context("connecting to the database to listen")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if tx
                            .send((n.channel().to_string(), n.payload().to_string()))
                            .is_err()
                        {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!("the database listener's connection failed: {e}");
                        break;
                    }
                }
            }
        });
        for channel in channels {
            client
                .batch_execute(&format!("LISTEN {channel}"))
                .await
                .context("LISTEN")?;
        }
        Ok(Listener {
            _client: client,
            task,
            notifications: rx,
        })
    }
}

/// A `LISTEN`ing connection.
pub struct Listener {
    _client: tokio_postgres::Client,
    task: tokio::task::JoinHandle<()>,
    pub notifications: mpsc::UnboundedReceiver<(String, String)>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// For key ranges in a `COLLATE "C"` column (`key >= prefix AND key <
/// prefix_end`, which an index serves; LIKE would need escaping).
/// The least string greater than every string starting with `prefix`: the
/// prefix with its last character raised by one (UTF-8 sorts as code points
/// do), dropping trailing U+10FFFF first; None when nothing is left.
pub fn prefix_end(prefix: &str) -> Option<String> {
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

/// A URL with its password replaced, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_prefix_ends_at_its_last_character_raised() {
        use super::prefix_end;
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("a%").as_deref(), Some("a&"));
        assert_eq!(prefix_end("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_end("a\u{7F}").as_deref(), Some("a\u{80}"));
        assert_eq!(prefix_end("x\u{D7FF}").as_deref(), Some("x\u{E000}"));
        assert_eq!(prefix_end("ab\u{10FFFF}").as_deref(), Some("ac"));
        assert_eq!(prefix_end("\u{10FFFF}\u{10FFFF}"), None);
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            super::redact("postgres://u:secret@db:5432/t"),
            "postgres://u:***@db:5432/t"
        );
        assert_eq!(super::redact("postgres://db/t"), "postgres://db/t");
    }
}
