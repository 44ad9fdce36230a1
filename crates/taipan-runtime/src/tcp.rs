//! Outbound TCP's byte budget: the bytes one request may move over the
//! guest's own sockets (`max_tcp_bytes`, read and written together).
//!
//! wasmtime-wasi hands a connected socket to the guest as a pair of
//! streams in `finish-connect`. `wasi:sockets/tcp` is linked again here,
//! shadowing wasmtime-wasi's: every method delegates to it, but
//! `finish-connect` wraps both streams in [`Counted`] ones that draw on the
//! sandbox's budget (reset per request) and fail once it is spent. Everything else about TCP stays
//! wasmtime-wasi's (the destination check is `WorkerHost::tcp_connect_allowed`,
//! through the WASI context's `socket_addr_check`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{self, HostTcpSocket, ShutdownType};
use wasmtime_wasi::p2::pipe::{ClosedInputStream, ClosedOutputStream};
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, DynPollable, InputStream, OutputStream, Pollable, SocketError,
    SocketResult, StreamError, StreamResult,
};
use wasmtime_wasi::sockets::{TcpSocket, WasiSocketsCtxView, WasiSocketsView};

use crate::sandbox::SandboxState;

/// Bytes a request may still move over TCP.
#[derive(Clone, Default)]
pub struct Budget(Arc<AtomicU64>);

impl Budget {
    /// A new request's budget.
    pub fn reset(&self, bytes: u64) {
        self.0.store(bytes, Ordering::Relaxed);
    }

    /// Take `n` bytes; false (and nothing taken) if fewer are left.
    fn take(&self, n: u64) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }

    fn left(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

fn spent() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::msg(
        "this request used up its max_tcp_bytes limit on TCP sockets",
    ))
}

/// Replace wasmtime-wasi's `wasi:sockets/tcp` with the same implementation
/// whose `finish-connect` counts (call after `add_to_linker_async`).
pub(crate) fn count_bytes(linker: &mut Linker<SandboxState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    tcp::add_to_linker::<SandboxState, CountedTcp>(linker, |state| CountedSockets {
        budget: state.tcp_budget.clone(),
        inner: state.sockets(),
    })?;
    linker.allow_shadowing(false);
    Ok(())
}

struct CountedTcp;

impl HasData for CountedTcp {
    type Data<'a> = CountedSockets<'a>;
}

/// wasmtime-wasi's TCP host, but the streams of a connected socket count.
struct CountedSockets<'a> {
    inner: WasiSocketsCtxView<'a>,
    budget: Budget,
}

impl tcp::Host for CountedSockets<'_> {}

impl network::Host for CountedSockets<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        self.inner.convert_error_code(error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        self.inner.network_error_code(err)
    }
}

impl network::HostNetwork for CountedSockets<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, this)
    }
}

type Streams = (Resource<DynInputStream>, Resource<DynOutputStream>);

impl HostTcpSocket for CountedSockets<'_> {
    async fn start_bind(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.inner.start_bind(this, network, local_address).await
    }

    fn finish_bind(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.inner.finish_bind(this)
    }

    async fn start_connect(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        remote_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.inner
            .start_connect(this, network, remote_address)
            .await
    }

    fn finish_connect(&mut self, this: Resource<TcpSocket>) -> SocketResult<Streams> {
        let (input, output) = self.inner.finish_connect(this)?;
        let table = &mut *self.inner.table;
        let stream: &mut DynInputStream = table.get_mut(&input)?;
        let inner = std::mem::replace(stream, Box::new(ClosedInputStream));
        *stream = Box::new(Counted {
            inner,
            budget: self.budget.clone(),
        });
        let stream: &mut DynOutputStream = table.get_mut(&output)?;
        let inner = std::mem::replace(stream, Box::new(ClosedOutputStream));
        *stream = Box::new(Counted {
            inner,
            budget: self.budget.clone(),
        });
        Ok((input, output))
    }

    fn start_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.inner.start_listen(this)
    }

    fn finish_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.inner.finish_listen(this)
    }

    fn accept(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(
        Resource<TcpSocket>,
        Resource<DynInputStream>,
        Resource<DynOutputStream>,
    )> {
        self.inner.accept(this)
    }

    fn local_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        self.inner.local_address(this)
    }

    fn remote_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        self.inner.remote_address(this)
    }

    fn is_listening(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<bool> {
        self.inner.is_listening(this)
    }

    fn address_family(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<IpAddressFamily> {
        self.inner.address_family(this)
    }

    fn set_listen_backlog_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.inner.set_listen_backlog_size(this, value)
    }

    fn keep_alive_enabled(&mut self, this: Resource<TcpSocket>) -> SocketResult<bool> {
        self.inner.keep_alive_enabled(this)
    }

    fn set_keep_alive_enabled(
        &mut self,
        this: Resource<TcpSocket>,
        value: bool,
    ) -> SocketResult<()> {
        self.inner.set_keep_alive_enabled(this, value)
    }

    fn keep_alive_idle_time(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.inner.keep_alive_idle_time(this)
    }

    fn set_keep_alive_idle_time(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.inner.set_keep_alive_idle_time(this, value)
    }

    fn keep_alive_interval(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.inner.keep_alive_interval(this)
    }

    fn set_keep_alive_interval(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.inner.set_keep_alive_interval(this, value)
    }

    fn keep_alive_count(&mut self, this: Resource<TcpSocket>) -> SocketResult<u32> {
        self.inner.keep_alive_count(this)
    }

    fn set_keep_alive_count(&mut self, this: Resource<TcpSocket>, value: u32) -> SocketResult<()> {
        self.inner.set_keep_alive_count(this, value)
    }

    fn hop_limit(&mut self, this: Resource<TcpSocket>) -> SocketResult<u8> {
        self.inner.hop_limit(this)
    }

    fn set_hop_limit(&mut self, this: Resource<TcpSocket>, value: u8) -> SocketResult<()> {
        self.inner.set_hop_limit(this, value)
    }

    fn receive_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.inner.receive_buffer_size(this)
    }

    fn set_receive_buffer_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.inner.set_receive_buffer_size(this, value)
    }

    fn send_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.inner.send_buffer_size(this)
    }

    fn set_send_buffer_size(&mut self, this: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.inner.set_send_buffer_size(this, value)
    }

    fn subscribe(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<Resource<DynPollable>> {
        self.inner.subscribe(this)
    }

    fn shutdown(&mut self, this: Resource<TcpSocket>, how: ShutdownType) -> SocketResult<()> {
        self.inner.shutdown(this, how)
    }

    fn drop(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<()> {
        HostTcpSocket::drop(&mut self.inner, this)
    }
}

/// A socket's stream that draws on the request's budget.
struct Counted<S> {
    inner: S,
    budget: Budget,
}

#[async_trait::async_trait]
impl<S: Pollable + ?Sized + Send> Pollable for Counted<Box<S>> {
    async fn ready(&mut self) {
        self.inner.ready().await
    }
}

#[async_trait::async_trait]
impl InputStream for Counted<DynInputStream> {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        // Never read more than is left, so what was read can be paid for.
        let size = size.min(self.budget.left().try_into().unwrap_or(usize::MAX));
        if size == 0 && self.budget.left() == 0 {
            return Err(spent());
        }
        let data = self.inner.read(size)?;
        if !self.budget.take(data.len() as u64) {
            return Err(spent());
        }
        Ok(data)
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[async_trait::async_trait]
impl OutputStream for Counted<DynOutputStream> {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if !self.budget.take(bytes.len() as u64) {
            return Err(spent());
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        let room = self.inner.check_write()?;
        let left = self.budget.left();
        if left == 0 {
            return Err(spent());
        }
        Ok(room.min(left.try_into().unwrap_or(usize::MAX)))
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_taken_whole_or_not_at_all() {
        let budget = Budget::default();
        budget.reset(10);
        assert!(budget.take(6));
        assert!(!budget.take(5), "only 4 left");
        assert_eq!(budget.left(), 4);
        assert!(budget.take(4));
        assert!(!budget.take(1));
        budget.reset(3);
        assert_eq!(budget.left(), 3);
    }

    /// Reads and writes through wrapped in-memory pipes stop at the budget.
    #[tokio::test]
    async fn streams_fail_once_the_budget_is_spent() {
        use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
        let budget = Budget::default();
        budget.reset(5);
        let mut input = Counted {
            inner: Box::new(MemoryInputPipe::new("hello world")) as DynInputStream,
            budget: budget.clone(),
        };
        assert_eq!(
            &input.read(100).unwrap()[..],
            b"hello",
            "capped at what is left"
        );
        assert!(matches!(
            input.read(1),
            Err(StreamError::LastOperationFailed(_))
        ));
        budget.reset(4);
        let mut output = Counted {
            inner: Box::new(MemoryOutputPipe::new(1024)) as DynOutputStream,
            budget: budget.clone(),
        };
        assert_eq!(output.check_write().unwrap(), 4);
        output.write(Bytes::from_static(b"abc")).unwrap();
        assert!(output.write(Bytes::from_static(b"de")).is_err());
    }
}
