"""Outbound TCP from the sandbox: CPython's own `socket` module, over `wasi:sockets`.

The sandbox's CPython (wasi-libc for WASI preview 2) implements `connect`,
`send`, `recv`, `poll` and `getaddrinfo` over `wasi:sockets`; the host
decides which addresses a worker may connect to (the same rule as `fetch`:
`taipan serve` refuses loopback, private and link-local addresses unless the
config allows them or a hyperdrive binding names them) and how many
connections a request may open (`max_tcp_connections`). So pure-Python
database drivers (pg8000, PyMySQL) work unchanged. What this module adds:

- a refused connection raises `PermissionError` saying why, instead of the
  bare `[Errno 2] Permission denied` the host's refusal becomes in libc;
- asyncio streams: the sandbox's event loop (`loop.Loop`) takes this
  module's `SocketLoop` methods: `add_reader`/`add_writer` (readiness through
  wasi-libc's `select`), `sock_recv`/`sock_sendall`/`sock_connect`, and
  `create_connection` with a socket transport, so `asyncio.open_connection`
  and drivers built on it (aiomysql) work. The connect itself blocks the
  sandbox, as a sync driver's does;
- there is no `ssl` in the sandbox (no `_ssl`: CPython for WASI is built
  without OpenSSL). A few libraries import `ssl` only for its names (scramp,
  the SCRAM library pg8000 uses: `isinstance(sock, SSLSocket)`); they get a
  stand-in `ssl` whose classes nothing is ever an instance of, while every
  other `import ssl` fails as before, so code that falls back without TLS
  (urllib3, asyncio) still does. Connect to a database with TLS off
  (pg8000: `ssl_context=False`).
"""

import asyncio
import importlib.abc
import importlib.util
import ipaddress
import select
import socket as _socket_module
import sys
import types

from . import contract

# At module level: the generated `wit_world` package exists only while
# building, so a binding module imported later, in a request, is not found.
try:
    from wit_world.imports import environment
except ImportError:  # outside a sandbox (unit tests)
    environment = None

# Modules that import `ssl` only for names (types to compare against).
SSL_NAMES_ONLY = frozenset({"scramp.core"})

NO_TLS = (
    "TLS over sockets is not available in a Taipan sandbox (its CPython has no ssl); "
    "connect with TLS off (pg8000: ssl_context=False), or use fetch() for HTTPS"
)


def refusal(address, dev: bool) -> str:
    """Why the host refused a connection to `address` (what the sandbox can tell)."""
    host, port = (address[0], address[1]) if isinstance(address, tuple) and len(address) >= 2 else (address, None)
    where = f"{host}:{port}" if port is not None else f"{host}"
    try:
        ip = ipaddress.ip_address(host.split("%")[0] if isinstance(host, str) else host)
    except ValueError:
        ip = None
    if ip is not None and isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    limit = "this request has opened as many TCP connections as it may (the max_tcp_connections limit)"
    if dev or ip is None:
        return f"connection to {where} refused: {limit}"
    if not ip.is_global:
        return (
            f"connection to {where} refused: taipan serve does not let workers reach loopback, private "
            "or link-local addresses; a [[hyperdrive]] binding's database is allowed (its secret names "
            "it), or set outbound_private_networks = true in the worker's config"
        )
    if port == 25:
        return f"connection to {where} refused: port 25 (SMTP) is blocked, as on Workers"
    return f"connection to {where} refused: {limit}"


def _is_dev() -> bool:
    if environment is None:  # outside a sandbox (unit tests)
        import os

        return os.environ.get(contract.ENV_DEV) == contract.ENV_DEV_ON
    return dict(environment.get_environment()).get(contract.ENV_DEV) == contract.ENV_DEV_ON


def patch_socket(socket_module) -> None:
    """Make a refused `connect` say why."""
    cls = socket_module.socket
    if getattr(cls, "_taipan_patched", False):
        return
    base_connect = cls.connect

    def connect(self, address):
        try:
            return base_connect(self, address)
        except PermissionError as e:
            raise PermissionError(e.errno, refusal(address, _is_dev())) from None

    connect.__doc__ = base_connect.__doc__
    cls.connect = connect
    cls._taipan_patched = True


def ssl_names() -> types.ModuleType:
    """A stand-in `ssl` with the names a library compares against, and
    nothing that could make a TLS connection."""
    module = types.ModuleType("ssl", "No TLS in the Taipan sandbox: " + NO_TLS)

    class SSLError(OSError):
        pass

    class _NoTls:
        def __init__(self, *args, **kwargs):
            raise SSLError(NO_TLS)

    class SSLSocket(_NoTls):
        pass

    class SSLObject(_NoTls):
        pass

    class SSLContext(_NoTls):
        pass

    def create_default_context(*args, **kwargs):
        raise SSLError(NO_TLS)

    for name, value in {
        "SSLError": SSLError,
        "SSLSocket": SSLSocket,
        "SSLObject": SSLObject,
        "SSLContext": SSLContext,
        "create_default_context": create_default_context,
    }.items():
        if isinstance(value, type):
            value.__module__ = "ssl"
        setattr(module, name, value)
    return module


def _has_ssl() -> bool:
    return importlib.util.find_spec("_ssl") is not None


class _SslNamesLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        if "ssl" in sys.modules or _has_ssl():
            self._loader.exec_module(module)
            return
        stand_in = sys.modules["ssl"] = ssl_names()
        try:
            self._loader.exec_module(module)
        finally:
            if sys.modules.get("ssl") is stand_in:
                del sys.modules["ssl"]


class _SslNamesFinder(importlib.abc.MetaPathFinder):
    """Loads the modules in `SSL_NAMES_ONLY` with the stand-in `ssl` in place."""

    def find_spec(self, fullname, path, target=None):
        if fullname not in SSL_NAMES_ONLY:
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _SslNamesFinder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _SslNamesLoader(spec.loader)
                return spec
        return None


def install() -> None:
    import socket

    patch_socket(socket)
    if not any(isinstance(f, _SslNamesFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _SslNamesFinder())


# -- asyncio ---------------------------------------------------------------


def _fileno(fd) -> int:
    return fd if isinstance(fd, int) else fd.fileno()


class SocketLoop:
    """Sockets for the sandbox's event loop (mixed into `loop.Loop`, which
    owns `_ready` and calls `_select_sockets` while it waits)."""

    def _socket_handles(self):
        handles = self.__dict__.get("_socket_waiters")
        if handles is None:
            handles = self.__dict__["_socket_waiters"] = ({}, {})  # fd -> Handle: readers, writers
        return handles

    def add_reader(self, fd, callback, *args):
        self._socket_handles()[0][_fileno(fd)] = asyncio.Handle(callback, args, self, None)

    def remove_reader(self, fd):
        return self._socket_handles()[0].pop(_fileno(fd), None) is not None

    def add_writer(self, fd, callback, *args):
        self._socket_handles()[1][_fileno(fd)] = asyncio.Handle(callback, args, self, None)

    def remove_writer(self, fd):
        return self._socket_handles()[1].pop(_fileno(fd), None) is not None

    def _has_sockets(self) -> bool:
        readers, writers = self._socket_handles()
        return bool(readers or writers)

    def _select_sockets(self, timeout) -> bool:
        """Wait up to `timeout` seconds (None: until one is) for a watched
        socket to be ready; queue its callbacks. Whether one was."""
        readers, writers = self._socket_handles()
        ready_r, ready_w, _ = select.select(list(readers), list(writers), [], timeout)
        for fds, handles in ((ready_r, readers), (ready_w, writers)):
            for fd in fds:
                handle = handles.get(fd)
                if handle is not None and not handle._cancelled:
                    self._ready.append(handle)
        return bool(ready_r or ready_w)

    async def _until(self, fd, writable: bool):
        future = self.create_future()
        add, remove = (self.add_writer, self.remove_writer) if writable else (self.add_reader, self.remove_reader)
        add(fd, lambda: future.done() or future.set_result(None))
        try:
            await future
        finally:
            remove(fd)

    async def sock_recv(self, sock, n):
        while True:
            try:
                return sock.recv(n)
            except (BlockingIOError, InterruptedError):
                await self._until(sock.fileno(), False)

    async def sock_recv_into(self, sock, buf):
        while True:
            try:
                return sock.recv_into(buf)
            except (BlockingIOError, InterruptedError):
                await self._until(sock.fileno(), False)

    async def sock_sendall(self, sock, data):
        view = memoryview(data).cast("B")
        while view:
            try:
                sent = sock.send(view)
            except (BlockingIOError, InterruptedError):
                await self._until(sock.fileno(), True)
                continue
            view = view[sent:]

    async def sock_connect(self, sock, address):
        # The connect blocks the sandbox (as a sync driver's does).
        timeout = sock.gettimeout()
        sock.settimeout(None)
        try:
            sock.connect(address)
        finally:
            sock.settimeout(timeout)

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0, flags=0):
        return _socket_module.getaddrinfo(host, port, family, type, proto, flags)

    async def create_connection(self, protocol_factory, host=None, port=None, *, ssl=None, sock=None, **options):
        if ssl:
            raise OSError(NO_TLS)
        if sock is None:
            local = options.get("local_addr")
            sock = _socket_module.create_connection((host, port), source_address=local)
        sock.setblocking(False)
        protocol = protocol_factory()
        transport = SocketTransport(self, sock, protocol)
        return transport, protocol


class SocketTransport(asyncio.Transport):
    """A connected socket as an asyncio transport (what asyncio's selector
    loop gives `create_connection`), read and written when `select` says so."""

    max_size = 256 * 1024

    def __init__(self, loop, sock, protocol):
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        super().__init__({"socket": sock, "peername": peer, "sockname": sock.getsockname()})
        self._loop, self._sock, self._protocol = loop, sock, protocol
        self._fd = sock.fileno()
        self._buffer = bytearray()
        self._closing = self._eof = self._writing_paused = self._reading_paused = False
        self._high, self._low = 64 * 1024, 16 * 1024
        protocol.connection_made(self)
        loop.add_reader(self._fd, self._read_ready)

    # -- reading

    def _read_ready(self):
        try:
            data = self._sock.recv(self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._force_close(exc)
            return
        if data:
            self._protocol.data_received(data)
            return
        self._loop.remove_reader(self._fd)
        if not self._protocol.eof_received():
            self.close()

    def is_reading(self):
        return not self._reading_paused and not self._closing

    def pause_reading(self):
        if not self._reading_paused:
            self._reading_paused = True
            self._loop.remove_reader(self._fd)

    def resume_reading(self):
        if self._reading_paused and not self._closing:
            self._reading_paused = False
            self._loop.add_reader(self._fd, self._read_ready)

    # -- writing

    def write(self, data):
        if not data or self._closing or self._eof:
            return
        data = bytes(data)
        if not self._buffer:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._force_close(exc)
                return
            data = data[sent:]
            if not data:
                return
            self._loop.add_writer(self._fd, self._write_ready)
        self._buffer.extend(data)
        if not self._writing_paused and len(self._buffer) > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _write_ready(self):
        try:
            sent = self._sock.send(self._buffer)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._force_close(exc)
            return
        del self._buffer[:sent]
        if self._writing_paused and len(self._buffer) <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()
        if self._buffer:
            return
        self._loop.remove_writer(self._fd)
        if self._closing:
            self._connection_lost(None)
        elif self._eof:
            self._sock.shutdown(_socket_module.SHUT_WR)

    def write_eof(self):
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._sock.shutdown(_socket_module.SHUT_WR)

    def can_write_eof(self):
        return True

    def get_write_buffer_size(self):
        return len(self._buffer)

    def get_write_buffer_limits(self):
        return (self._low, self._high)

    def set_write_buffer_limits(self, high=None, low=None):
        self._high = 64 * 1024 if high is None else high
        self._low = self._high // 4 if low is None else low

    # -- closing

    def is_closing(self):
        return self._closing

    def close(self):
        if self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._fd)
        if not self._buffer:
            self._loop.call_soon(self._connection_lost, None)

    def abort(self):
        self._force_close(None)

    def _force_close(self, exc):
        self._buffer.clear()
        self._loop.remove_writer(self._fd)
        if not self._closing:
            self._closing = True
            self._loop.remove_reader(self._fd)
        self._loop.call_soon(self._connection_lost, exc)

    def _connection_lost(self, exc):
        if self._sock is None:
            return
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._sock = None
