//! The live log channels `taipan tail` reads: per worker, the requests it
//! answered and the lines it printed, as `api::TailEvent`s, beside the
//! operator's own output. A slow reader skips lines rather than slowing the
//! worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use taipan_runtime::log::LogSink;
use tokio::sync::broadcast;

use crate::api::TailEvent;

/// Per-worker live log channels for `taipan tail`, fed beside `output`.
pub struct Logs {
    channels: Mutex<HashMap<String, broadcast::Sender<String>>>,
    /// Where every worker's lines also go (the operator's terminal).
    output: Arc<dyn LogSink>,
}

/// Lines a slow `tail` client may fall behind before it skips some.
const TAIL_BUFFER: usize = 1024;

impl Logs {
    pub fn new(output: Arc<dyn LogSink>) -> Self {
        Self {
            channels: Mutex::default(),
            output,
        }
    }

    fn sender(&self, name: &str) -> broadcast::Sender<String> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels
            .entry(name.to_string())
            .or_insert_with(|| broadcast::channel(TAIL_BUFFER).0)
            .clone()
    }

    pub fn subscribe(&self, name: &str) -> broadcast::Receiver<String> {
        self.sender(name).subscribe()
    }

    /// A request worker `name` answered.
    pub fn request(&self, name: &str, line: &str, status: u16, elapsed: Duration) {
        let event = TailEvent::Request {
            worker: name.to_string(),
            request: line.to_string(),
            status,
            duration_ms: (elapsed.as_secs_f64() * 1e6).round() / 1e3,
        };
        let _ = self.sender(name).send(event.line());
    }

    /// Where worker `name`'s output goes: `output` and its tail channel.
    pub fn sink(&self, name: &str) -> Arc<dyn LogSink> {
        Arc::new(TailSink {
            sender: self.sender(name),
            output: self.output.clone(),
        })
    }
}

struct TailSink {
    sender: broadcast::Sender<String>,
    output: Arc<dyn LogSink>,
}

impl LogSink for TailSink {
    fn line(&self, worker: &str, tag: &str, stderr: bool, line: &str) {
        self.output.line(worker, tag, stderr, line);
        let (worker, request, line) = (worker.to_string(), tag.to_string(), line.to_string());
        let event = if stderr {
            TailEvent::Stderr {
                worker,
                request,
                line,
            }
        } else {
            TailEvent::Stdout {
                worker,
                request,
                line,
            }
        };
        let _ = self.sender.send(event.line());
    }
}
