//! WebSockets: the sockets workers accepted, the connections that carry
//! them, and the calls guests make about them.
//!
//! A socket is born in a guest: `server.accept()` (or a Durable Object's
//! `ctx.acceptWebSocket(server)`) registers it here (`ops.rs`) with its
//! **owner**, the pinned slot its events run in: the Durable Object's
//! `<class>/<id>`, or for a socket accepted elsewhere a slot of its own
//! (`ws:<random>`) that the accepting sandbox moves into when its call ends,
//! so the socket's listeners (Python closures) keep living there. The guest
//! returns `101` with the socket's id (`HEADER_WEBSOCKET`), possibly through
//! a Durable Object stub and the worker that called it; the outermost
//! [`Worker::handle`](crate::Worker::handle) upgrades the client connection
//! and [`session`] binds it to the id: each client message becomes a guest
//! call in the owner's slot, one at a time, in order; what guests send goes
//! through the socket's outbox to a writer task.
//!
//! Hibernation: a Durable Object whose sockets are all hibernatable gives
//! its sandbox up after `websocket_hibernate_after` without events (the
//! sweeper in `objects.rs`); the registry here keeps the sockets, their tags
//! and attachments, so the next event starts a fresh sandbox from the
//! snapshot and the object is constructed again, as on Workers.
//!
//! In a cluster a Durable Object's sockets live on the node that owns it;
//! another node the client reached relays the connection there
//! ([`remote`]).

mod connect;
pub(crate) mod ops;
pub mod remote;
pub mod session;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::worker::Worker;

/// What goes out to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Bytes),
    Close(u16, String),
}

/// Frames one socket buffers for its client; a send past that fails (the
/// client is not reading).
pub const MAX_BUFFERED_FRAMES: usize = 4096;
/// Bytes of a socket's attachment (`serializeAttachment`), as JSON.
pub const MAX_ATTACHMENT_BYTES: usize = 16 * 1024;
/// A socket accepted but never returned in a 101 response is dropped after
/// this.
pub const PENDING_TTL: Duration = Duration::from_secs(30);
/// Tags one socket may carry (Workers: 10, each up to 256 characters).
pub const MAX_TAGS: usize = 10;
pub const MAX_TAG_LEN: usize = 256;

/// Who a socket's events go to.
#[derive(Clone)]
pub struct Owner {
    pub worker: Weak<Worker>,
    /// The pinned slot its events run in.
    pub key: String,
    /// A Durable Object's socket (its events go to the object's handlers).
    pub object: bool,
    /// Accepted with `ctx.acceptWebSocket`: the object may hibernate.
    pub hibernatable: bool,
}

impl Owner {
    fn same_worker(&self, worker: &Weak<Worker>) -> bool {
        Weak::ptr_eq(&self.worker, worker)
    }
}

struct Entry {
    owner: Owner,
    tags: Vec<String>,
    /// JSON text.
    attachment: Option<String>,
    outbox: mpsc::Sender<Frame>,
    /// Taken by the connection that claims the socket.
    receiver: Option<mpsc::Receiver<Frame>>,
    /// The worker sent a close frame.
    closing: bool,
}

/// A socket as `ctx.getWebSockets()` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Listed {
    pub id: String,
    pub tags: Vec<String>,
    /// JSON text, or None.
    pub attachment: Option<String>,
}

/// Why a send failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// No such socket, or it is closed.
    Closed,
    /// The client is not reading: `MAX_BUFFERED_FRAMES` are waiting.
    Full,
}

/// Every socket of the process, by id. Process-wide: a socket accepted by a
/// Durable Object of one worker is bound to a connection that reached
/// another.
#[derive(Default)]
pub struct Sockets {
    entries: Mutex<HashMap<String, Entry>>,
    /// Durable Objects' automatic replies, by (worker, key): request text →
    /// response text, sent without waking the object.
    auto: Mutex<Vec<AutoResponse>>,
}

/// `ctx.setWebSocketAutoResponse` of one object.
struct AutoResponse {
    worker: Weak<Worker>,
    key: String,
    request: String,
    response: String,
}

/// The process's sockets.
pub fn sockets() -> &'static Sockets {
    static SOCKETS: OnceLock<Sockets> = OnceLock::new();
    SOCKETS.get_or_init(Sockets::default)
}

impl Sockets {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register a socket for `owner`; its id, or why not (`max` sockets of
    /// that worker are open).
    pub fn accept(&self, owner: Owner, tags: Vec<String>, max: usize) -> Result<String, String> {
        let mut entries = self.entries();
        let open = entries
            .values()
            .filter(|e| e.owner.same_worker(&owner.worker))
            .count();
        if open >= max {
            return Err(format!(
                "the worker has {open} WebSockets open, its max_websockets limit"
            ));
        }
        let id = random_id();
        let (outbox, receiver) = mpsc::channel(MAX_BUFFERED_FRAMES);
        entries.insert(
            id.clone(),
            Entry {
                owner,
                tags,
                attachment: None,
                outbox,
                receiver: Some(receiver),
                closing: false,
            },
        );
        Ok(id)
    }

    /// Bind a connection to socket `id`: its owner and the frames to send.
    /// None if there is no such socket or a connection has it already.
    pub fn claim(&self, id: &str) -> Option<(Owner, mpsc::Receiver<Frame>)> {
        let mut entries = self.entries();
        let entry = entries.get_mut(id)?;
        let receiver = entry.receiver.take()?;
        Some((entry.owner.clone(), receiver))
    }

    /// Whether socket `id` waits for its connection and belongs to a
    /// version of worker `name`.
    pub fn waiting_for(&self, id: &str, name: &str) -> bool {
        self.entries().get(id).is_some_and(|e| {
            e.receiver.is_some() && e.owner.worker.upgrade().is_some_and(|w| &*w.name == name)
        })
    }

    /// Whether socket `id` is registered and no connection claimed it.
    pub fn unclaimed(&self, id: &str) -> bool {
        self.entries().get(id).is_some_and(|e| e.receiver.is_some())
    }

    /// Queue `frame` for socket `id`'s client; only a sandbox of the worker
    /// that owns the socket may.
    pub fn send(&self, worker: &Weak<Worker>, id: &str, frame: Frame) -> Result<(), SendError> {
        let mut entries = self.entries();
        let entry = entries
            .get_mut(id)
            .filter(|e| e.owner.same_worker(worker))
            .ok_or(SendError::Closed)?;
        if entry.closing {
            return Err(SendError::Closed);
        }
        let close = matches!(frame, Frame::Close(..));
        entry.outbox.try_send(frame).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })?;
        entry.closing = close;
        Ok(())
    }

    /// Close socket `id` for a limit (idle, message size, a lost owner): the
    /// close frame goes out, and the owner still gets its close event.
    pub fn close_from_host(&self, id: &str, code: u16, reason: &str) {
        let mut entries = self.entries();
        if let Some(entry) = entries.get_mut(id)
            && !entry.closing
        {
            let _ = entry
                .outbox
                .try_send(Frame::Close(code, reason.to_string()));
            entry.closing = true;
        }
    }

    /// Sockets registered in this process.
    pub fn open(&self) -> usize {
        self.entries().len()
    }

    /// Whether the worker closed socket `id` (or it is gone).
    pub fn closing(&self, id: &str) -> bool {
        self.entries().get(id).is_none_or(|e| e.closing)
    }

    /// Forget socket `id`; its owner, if it was there. The connection's
    /// writer ends once it has sent what was queued.
    pub fn remove(&self, id: &str) -> Option<Owner> {
        self.entries().remove(id).map(|e| e.owner)
    }

    /// Socket `id`'s tags and attachment, for an event.
    pub fn describe(&self, id: &str) -> Option<(Vec<String>, Option<String>)> {
        self.entries()
            .get(id)
            .map(|e| (e.tags.clone(), e.attachment.clone()))
    }

    /// Set socket `id`'s attachment (JSON text, or None to clear it); only
    /// its owner may.
    pub fn set_attachment(
        &self,
        worker: &Weak<Worker>,
        id: &str,
        attachment: Option<String>,
    ) -> Result<(), String> {
        if attachment
            .as_ref()
            .is_some_and(|a| a.len() > MAX_ATTACHMENT_BYTES)
        {
            return Err(format!(
                "a WebSocket attachment may be at most {MAX_ATTACHMENT_BYTES} bytes once serialized"
            ));
        }
        let mut entries = self.entries();
        match entries.get_mut(id) {
            Some(entry) if entry.owner.same_worker(worker) => {
                entry.attachment = attachment;
                Ok(())
            }
            _ => Err("that WebSocket is closed".into()),
        }
    }

    /// The open sockets of `key` in `worker`, those with `tag` if given.
    pub fn list(&self, worker: &Weak<Worker>, key: &str, tag: Option<&str>) -> Vec<Listed> {
        let mut listed: Vec<Listed> = self
            .entries()
            .iter()
            .filter(|(_, e)| e.owner.same_worker(worker) && e.owner.key == key && !e.closing)
            .filter(|(_, e)| tag.is_none_or(|t| e.tags.iter().any(|x| x == t)))
            .map(|(id, e)| Listed {
                id: id.clone(),
                tags: e.tags.clone(),
                attachment: e.attachment.clone(),
            })
            .collect();
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        listed
    }

    /// Sockets owned by `key` in `worker`: (all, hibernatable ones).
    pub fn count(&self, worker: &Weak<Worker>, key: &str) -> (usize, usize) {
        let entries = self.entries();
        let owned = entries
            .values()
            .filter(|e| e.owner.same_worker(worker) && e.owner.key == key);
        owned.fold((0, 0), |(all, hib), e| {
            (all + 1, hib + usize::from(e.owner.hibernatable))
        })
    }

    /// Set (or with None clear) `key`'s automatic reply.
    pub fn set_auto_response(
        &self,
        worker: &Weak<Worker>,
        key: &str,
        pair: Option<(String, String)>,
    ) {
        let mut auto = self.auto.lock().unwrap_or_else(|e| e.into_inner());
        auto.retain(|a| {
            !(Weak::ptr_eq(&a.worker, worker) && a.key == key) && a.worker.strong_count() > 0
        });
        if let Some((request, response)) = pair {
            auto.push(AutoResponse {
                worker: worker.clone(),
                key: key.to_string(),
                request,
                response,
            });
        }
    }

    /// The automatic reply to `text` for `owner`, if one is set.
    pub fn auto_response(&self, owner: &Owner, text: &str) -> Option<String> {
        let auto = self.auto.lock().unwrap_or_else(|e| e.into_inner());
        auto.iter()
            .find(|a| owner.same_worker(&a.worker) && a.key == owner.key && a.request == text)
            .map(|a| a.response.clone())
    }
}

/// An unguessable id: another worker can't bind a connection to a socket
/// it did not accept.
fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A test's owner: no worker behind it.
#[cfg(test)]
pub(crate) fn test_owner(key: &str, hibernatable: bool) -> (std::sync::Arc<()>, Owner) {
    (
        std::sync::Arc::new(()),
        Owner {
            worker: Weak::new(),
            key: key.into(),
            object: hibernatable,
            hibernatable,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_is_claimed_once_and_its_frames_arrive_in_order() {
        let sockets = Sockets::default();
        let (_keep, owner) = test_owner("Room/1", true);
        let owner_worker = owner.worker.clone();
        let id = sockets.accept(owner, vec!["a".into()], 10).unwrap();
        sockets
            .send(&owner_worker, &id, Frame::Text("one".into()))
            .unwrap();
        sockets
            .send(&owner_worker, &id, Frame::Binary(Bytes::from_static(b"2")))
            .unwrap();
        let (owner, mut frames) = sockets.claim(&id).unwrap();
        assert_eq!(owner.key, "Room/1");
        assert!(sockets.claim(&id).is_none(), "claimed once");
        assert_eq!(frames.try_recv().unwrap(), Frame::Text("one".into()));
        assert_eq!(
            frames.try_recv().unwrap(),
            Frame::Binary(Bytes::from_static(b"2"))
        );
        sockets
            .send(&owner_worker, &id, Frame::Close(1000, "bye".into()))
            .unwrap();
        assert!(sockets.closing(&id));
        assert_eq!(
            sockets.send(&owner_worker, &id, Frame::Text("late".into())),
            Err(SendError::Closed)
        );
        sockets.remove(&id);
        assert_eq!(frames.try_recv().unwrap(), Frame::Close(1000, "bye".into()));
        assert!(
            frames.try_recv().is_err(),
            "the writer ends after the queue"
        );
    }

    #[test]
    fn the_limit_counts_one_worker_and_listing_filters_by_key_and_tag() {
        let sockets = Sockets::default();
        let (_keep, owner) = test_owner("Room/1", true);
        let a = sockets
            .accept(owner.clone(), vec!["red".into()], 2)
            .unwrap();
        let b = sockets.accept(owner.clone(), vec![], 2).unwrap();
        assert!(sockets.accept(owner.clone(), vec![], 2).is_err());
        assert_eq!(sockets.list(&owner.worker, "Room/1", None).len(), 2);
        let red = sockets.list(&owner.worker, "Room/1", Some("red"));
        assert_eq!(red.len(), 1);
        assert_eq!(red[0].id, a);
        assert!(sockets.list(&owner.worker, "Room/2", None).is_empty());
        sockets
            .set_attachment(&owner.worker, &b, Some("{\"n\":1}".into()))
            .unwrap();
        assert_eq!(
            sockets.describe(&b).unwrap().1.as_deref(),
            Some("{\"n\":1}")
        );
        let big = Some("x".repeat(MAX_ATTACHMENT_BYTES + 1));
        assert!(sockets.set_attachment(&owner.worker, &b, big).is_err());
        assert_eq!(sockets.count(&owner.worker, "Room/1"), (2, 2));
    }

    #[test]
    fn a_claimed_socket_is_no_longer_unclaimed() {
        let sockets = Sockets::default();
        let (_keep, owner) = test_owner("ws:x", false);
        let a = sockets.accept(owner.clone(), vec![], 5).unwrap();
        let b = sockets.accept(owner, vec![], 5).unwrap();
        assert_ne!(a, b);
        let _claimed = sockets.claim(&b).unwrap();
        assert!(sockets.unclaimed(&a));
        assert!(!sockets.unclaimed(&b));
    }

    #[test]
    fn auto_responses_answer_only_their_object() {
        let sockets = Sockets::default();
        let (_keep, owner) = test_owner("Room/1", true);
        sockets.set_auto_response(
            &owner.worker,
            "Room/1",
            Some(("ping".into(), "pong".into())),
        );
        assert_eq!(
            sockets.auto_response(&owner, "ping").as_deref(),
            Some("pong")
        );
        assert_eq!(sockets.auto_response(&owner, "other"), None);
        let other = Owner {
            key: "Room/2".into(),
            ..owner.clone()
        };
        assert_eq!(sockets.auto_response(&other, "ping"), None);
    }
}
