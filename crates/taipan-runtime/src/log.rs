//! A sandbox's stdout/stderr: each line goes to a [`LogSink`], tagged with
//! the worker and the request it belongs to. The runtime prints nothing
//! itself: the CLI's sink puts lines on the terminal.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The current request of a sandbox, as shown in log lines ("GET /path").
#[derive(Clone, Default)]
pub struct RequestTag(Arc<Mutex<String>>);

impl RequestTag {
    pub fn set(&self, tag: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = tag;
    }

    fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Where a sandbox's output lines go.
pub trait LogSink: Send + Sync + 'static {
    /// One line the guest wrote (without its newline), during request `tag`.
    fn line(&self, worker: &str, tag: &str, stderr: bool, line: &str);
}

/// `tracing` events (target `taipan::worker`): the default where no
/// program gave a sink of its own.
pub struct TracingSink;

impl LogSink for TracingSink {
    fn line(&self, worker: &str, tag: &str, stderr: bool, line: &str) {
        tracing::info!(target: "taipan::worker", worker, request = tag, stderr, "{line}");
    }
}

/// Longest line kept; longer output is split.
const MAX_LINE: usize = 16 * 1024;

#[derive(Clone)]
pub struct LogStream {
    worker: Arc<str>,
    tag: RequestTag,
    is_stderr: bool,
    sink: Arc<dyn LogSink>,
    partial: Arc<Mutex<Vec<u8>>>,
}

impl LogStream {
    pub fn new(worker: Arc<str>, tag: RequestTag, is_stderr: bool, sink: Arc<dyn LogSink>) -> Self {
        Self {
            worker,
            tag,
            is_stderr,
            sink,
            partial: Arc::default(),
        }
    }

    fn emit(&self, bytes: &[u8]) {
        let mut partial = self.partial.lock().unwrap_or_else(|e| e.into_inner());
        partial.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(pos) = partial.iter().position(|&b| b == b'\n') {
            lines.push(partial.drain(..=pos).collect::<Vec<u8>>());
        }
        if partial.len() > MAX_LINE {
            lines.push(std::mem::take(&mut *partial));
        }
        drop(partial);
        if lines.is_empty() {
            return;
        }
        let tag = self.tag.get();
        for line in lines {
            let text = String::from_utf8_lossy(&line);
            self.sink.line(
                &self.worker,
                &tag,
                self.is_stderr,
                text.trim_end_matches(['\n', '\r']),
            );
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.emit(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LogStream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.emit(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
