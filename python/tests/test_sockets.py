"""Sockets in the sandbox (`_taipan.sockets`): a refused connection says why,
the `ssl` names scramp imports, and the hyperdrive binding on `env`."""

import socket
import sys
import types
import unittest
from unittest import mock

from _taipan import sockets
from pyodide.ffi import JsException
from workers import _bindings


class RefusalTest(unittest.TestCase):
    def test_messages_name_the_rule(self):
        serve = sockets.refusal(("127.0.0.1", 5432), dev=False)
        self.assertIn("127.0.0.1:5432 refused", serve)
        self.assertIn("loopback", serve)
        self.assertIn("hyperdrive", serve)
        self.assertIn("loopback", sockets.refusal(("::ffff:10.0.0.1", 1), dev=False))
        self.assertIn("loopback", sockets.refusal(("fe80::1%eth0", 1), dev=False))
        # In dev every address is allowed: only the limit refuses.
        self.assertIn("max_tcp_connections", sockets.refusal(("127.0.0.1", 5432), dev=True))
        self.assertIn("max_tcp_connections", sockets.refusal(("1.1.1.1", 443), dev=False))
        self.assertIn("port 25", sockets.refusal(("1.1.1.1", 25), dev=False))
        self.assertIn("max_tcp_connections", sockets.refusal(("db.example.com", 5432), dev=False))

    def test_connect_raises_the_reason(self):
        class Base:
            def connect(self, address):
                raise PermissionError(2, "Permission denied")

        class Sock(Base):
            pass

        module = types.SimpleNamespace(socket=Sock)
        sockets.patch_socket(module)
        sockets.patch_socket(module)  # once only
        with mock.patch.object(sockets, "_is_dev", return_value=False):
            with self.assertRaises(PermissionError) as caught:
                Sock().connect(("10.1.2.3", 5432))
        self.assertEqual(caught.exception.errno, 2)
        self.assertIn("10.1.2.3:5432 refused", str(caught.exception))
        self.assertIn("private", str(caught.exception))

    def test_other_errors_pass_through(self):
        class Sock(socket.socket):
            pass

        sockets.patch_socket(types.SimpleNamespace(socket=Sock))
        # Nothing listens on port 1 (in a sandbox of `taipan dev`, loopback is allowed).
        with Sock() as sock, self.assertRaises(ConnectionRefusedError):
            sock.connect(("127.0.0.1", 1))


class SslNamesTest(unittest.TestCase):
    def test_names_exist_and_nothing_is_made(self):
        ssl = sockets.ssl_names()
        self.assertFalse(isinstance(object(), (ssl.SSLSocket, ssl.SSLObject)))
        with self.assertRaises(ssl.SSLError) as caught:
            ssl.create_default_context()
        self.assertIn("ssl_context=False", str(caught.exception))
        with self.assertRaises(OSError):
            ssl.SSLContext()

    def test_only_listed_modules_see_the_stand_in(self):
        import importlib.abc
        import importlib.util

        seen = {}

        class Source(importlib.abc.MetaPathFinder, importlib.abc.Loader):
            def find_spec(self, fullname, path, target=None):
                if fullname in ("taipan_test_names", "taipan_test_other"):
                    return importlib.util.spec_from_loader(fullname, self)
                return None

            def create_module(self, spec):
                return None

            def exec_module(self, module):
                try:
                    import ssl

                    seen[module.__name__] = ssl
                except ImportError:
                    seen[module.__name__] = None

        finder, source = sockets._SslNamesFinder(), Source()
        saved_ssl = sys.modules.pop("ssl", None)
        sys.meta_path[:0] = [finder, source]
        try:
            with (
                mock.patch.object(sockets, "SSL_NAMES_ONLY", frozenset({"taipan_test_names"})),
                mock.patch.object(sockets, "_has_ssl", return_value=False),
                mock.patch.dict(sys.modules, {"_ssl": None}),
            ):
                import taipan_test_names  # noqa: F401
                import taipan_test_other  # noqa: F401
        finally:
            sys.meta_path.remove(finder)
            sys.meta_path.remove(source)
            sys.modules.pop("taipan_test_names", None)
            sys.modules.pop("taipan_test_other", None)
            if saved_ssl is not None:
                sys.modules["ssl"] = saved_ssl
        self.assertTrue(hasattr(seen["taipan_test_names"], "SSLSocket"))
        self.assertIsNone(seen["taipan_test_other"])
        self.assertIsNot(sys.modules.get("ssl"), seen["taipan_test_names"])


class StreamsTest(unittest.TestCase):
    """asyncio streams over the sandbox's loop (`SocketLoop`); on the host
    these run against a thread echoing lines (a sandbox cannot listen: the
    e2e tests cover it there)."""

    def setUp(self):
        try:
            import threading

            self.server = socket.create_server(("127.0.0.1", 0))
        except (ImportError, OSError):
            self.skipTest("no listening socket here (inside a sandbox)")
        self.addCleanup(self.server.close)

        def echo():
            while True:
                try:
                    conn, _ = self.server.accept()
                except OSError:
                    return
                with conn:
                    while data := conn.recv(65536):
                        if data == b"quiet\n":
                            continue
                        conn.sendall(data)

        threading.Thread(target=echo, daemon=True).start()
        self.port = self.server.getsockname()[1]

    def test_open_connection_reads_writes_and_times_out(self):
        import asyncio

        from tests.support import run_loop

        async def talk():
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            writer.write(b"hello\n")
            await writer.drain()
            line = await reader.readline()
            big = bytes(range(256)) * 8192  # 2 MiB: the transport buffers and pauses
            writer.write(big)
            await writer.drain()
            echoed = await reader.readexactly(len(big))
            writer.write(b"quiet\n")
            try:
                await asyncio.wait_for(reader.read(10), 0.05)
                timed_out = False
            except TimeoutError:
                timed_out = True
            peer = writer.get_extra_info("peername")
            writer.close()
            await writer.wait_closed()
            return line, echoed == big, timed_out, peer[1]

        self.assertEqual(run_loop(talk()), (b"hello\n", True, True, self.port))

    def test_tls_is_refused_with_the_reason(self):
        import asyncio

        from _taipan import loop as sandbox_loop

        async def tls():
            await sandbox_loop._sandbox_loop().create_connection(asyncio.Protocol, "127.0.0.1", self.port, ssl=True)

        with self.assertRaises(OSError) as caught:
            sandbox_loop.run(tls())
        self.assertIn("TLS", str(caught.exception))


class HyperdriveBindingTest(unittest.TestCase):
    def test_fields_and_a_missing_database(self):
        env = _bindings.make_bindings(
            {
                "DB": {
                    "kind": "hyperdrive",
                    "connectionString": "postgres://app:pw@db:5432/shop",
                    "host": "db",
                    "port": 5432,
                    "user": "app",
                    "password": "pw",
                    "database": "shop",
                },
                "OTHER": {"kind": "hyperdrive", "error": "set the secret HYPERDRIVE_OTHER"},
            }
        )
        db = env["DB"]
        self.assertEqual(db.connectionString, "postgres://app:pw@db:5432/shop")
        self.assertEqual((db.host, db.port, db.user, db.database), ("db", 5432, "app", "shop"))
        self.assertEqual(db["password"], "pw")
        self.assertNotIn("pw", repr(db))
        with self.assertRaises(JsException) as caught:
            env["OTHER"].connectionString
        self.assertIn("HYPERDRIVE_OTHER", str(caught.exception))
        with self.assertRaises(JsException):
            env["OTHER"]["host"]
        self.assertIn("no database", repr(env["OTHER"]))


if __name__ == "__main__":
    unittest.main()
