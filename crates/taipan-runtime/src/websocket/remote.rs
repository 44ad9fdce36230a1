//! Sockets accepted on another node of a cluster. A Durable Object runs on
//! the node that holds its lease; a client whose upgrade reached another
//! node gets its 101 from that node, which then carries the connection's
//! bytes, unread, to the owner (`Dial`: a WebSocket handshake over the
//! owner's internal listener, where the socket is bound as if the client
//! had connected there). Every limit and event stays with the owner; this
//! node only relays.
//!
//! Only the host registers a remote socket (the binding that forwarded the
//! call and got the owner's answer), so a guest cannot point a connection
//! at an address of its choosing: it only passes the socket's id along.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::SinkExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};

use super::PENDING_TTL;

/// How long a remote socket waits for its connection here: half the
/// owner's `PENDING_TTL`, which started earlier (at accept), so a
/// connection claimed here finds the socket still waiting on the owner.
pub const REMOTE_TTL: Duration = Duration::from_secs(PENDING_TTL.as_secs() / 2);

/// Connects to the node that holds a socket: the owner's end of the relay.
pub type Dial =
    Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = Result<Upgraded, String>> + Send>> + Send>;

/// Sockets other nodes accepted, by id, until a connection here claims them.
#[derive(Default)]
pub struct Remotes {
    waiting: Mutex<HashMap<String, (Instant, Dial)>>,
}

/// The process's remote sockets.
pub fn remotes() -> &'static Remotes {
    static REMOTES: OnceLock<Remotes> = OnceLock::new();
    REMOTES.get_or_init(Remotes::default)
}

impl Remotes {
    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Dial)>> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Socket `id` lives on another node, reached with `dial`. One never
    /// claimed is forgotten after `REMOTE_TTL`.
    pub fn add(&self, id: String, dial: Dial) {
        let mut waiting = self.waiting();
        waiting.retain(|_, (at, _)| at.elapsed() < REMOTE_TTL);
        waiting.insert(id, (Instant::now(), dial));
    }

    /// How to reach socket `id`, once.
    pub fn claim(&self, id: &str) -> Option<Dial> {
        let mut waiting = self.waiting();
        let claimed = waiting.remove(id);
        waiting.retain(|_, (at, _)| at.elapsed() < REMOTE_TTL);
        let (at, dial) = claimed?;
        (at.elapsed() < REMOTE_TTL).then_some(dial)
    }

    /// Remote sockets not claimed yet.
    pub fn waiting_count(&self) -> usize {
        self.waiting().len()
    }
}

/// Carry the client's upgraded connection to the owner, both ways, until
/// either end closes. If the owner cannot be reached the client gets a
/// close frame (1011) saying so.
pub(crate) async fn relay(client: OnUpgrade, dial: Dial) {
    let (client, owner) = tokio::join!(client, dial());
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            tracing::debug!("a WebSocket upgrade failed: {e}");
            return;
        }
    };
    let owner = match owner {
        Ok(owner) => owner,
        Err(e) => {
            tracing::warn!("relaying a WebSocket to its owner node failed: {e}");
            let mut socket =
                WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, None).await;
            let frame = CloseFrame {
                code: CloseCode::Error,
                reason: "the node that holds this WebSocket is unreachable".into(),
            };
            let _ = socket.send(Message::Close(Some(frame))).await;
            let _ = tokio::time::timeout(super::session::CLOSE_GRACE, socket.close(None)).await;
            return;
        }
    };
    let (mut from_client, mut to_client) = tokio::io::split(TokioIo::new(client));
    let (mut from_owner, mut to_owner) = tokio::io::split(TokioIo::new(owner));
    let up = async {
        let _ = tokio::io::copy(&mut from_client, &mut to_owner).await;
        let _ = to_owner.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut from_owner, &mut to_client).await;
        let _ = to_client.shutdown().await;
    };
    tokio::pin!(up, down);
    // Once either side is done (the owner closed after its close handshake
    // or a limit; the client went away), the other gets CLOSE_GRACE to
    // finish, then both connections are dropped: a silent client cannot
    // hold the relay open past the owner's limits.
    tokio::select! {
        () = &mut up => { let _ = tokio::time::timeout(super::session::CLOSE_GRACE, down).await; }
        () = &mut down => { let _ = tokio::time::timeout(super::session::CLOSE_GRACE, up).await; }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> Dial {
        Box::new(|| Box::pin(async { Err("unreachable".to_string()) }))
    }

    #[test]
    fn a_remote_socket_is_claimed_once() {
        let remotes = Remotes::default();
        remotes.add("a".into(), never());
        assert!(remotes.claim("b").is_none());
        assert!(remotes.claim("a").is_some());
        assert!(remotes.claim("a").is_none(), "claimed once");
        assert_eq!(remotes.waiting_count(), 0);
    }
}
