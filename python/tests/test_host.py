"""A payload reply as the SDK reads it (`_taipan.host`): its first line is
JSON about the payload (`null` for a miss), the rest the payload, read as it
arrives; and the KV and R2 adapters on top of that."""

import json
import unittest
from unittest import mock

from _taipan import host
from pyodide.ffi import JsException
from tests.support import run
from workers import _bindings


class _Response:
    released = False

    def __exit__(self, *exc):
        self.released = True


class Chunks(host.BodyReader):
    """A BodyReader over `chunks` in place of a host response's body."""

    def __init__(self, chunks):
        super().__init__(_Response())
        self.source = list(chunks)
        self.pulled = 0

    def _open(self):
        try:
            for chunk in self.source:
                self.pulled += 1
                yield chunk
        finally:
            self._response.released = True

    @property
    def released(self):
        return self._response.released


class ReadLineTest(unittest.TestCase):
    def test_the_line_ends_inside_a_chunk(self):
        reader = Chunks([b'{"a"', b': "\xc3\xa9\\n"}\nline 1\n', b"line 2\n"])
        self.assertEqual(json.loads(reader.read_line()), {"a": "é\n"})
        self.assertEqual(reader.pulled, 2, "reads no further than the chunk with the newline")
        self.assertFalse(reader.released)
        self.assertEqual(list(reader), [b"line 1\n", b"line 2\n"])
        self.assertTrue(reader.released)

    def test_the_line_ends_a_chunk(self):
        reader = Chunks([b"null\n", b"payload"])
        self.assertEqual(reader.read_line(), b"null")
        self.assertEqual(reader.read_all(), b"payload")

    def test_a_miss_has_no_payload(self):
        reader = Chunks([b"null\n"])
        self.assertEqual(reader.read_line(), b"null")
        self.assertEqual(reader.read_all(), b"")
        self.assertEqual(list(reader), [], "a body is read once")

    def test_close_after_the_line_releases_the_response(self):
        reader = Chunks([b"{}\nab", b"cd"])
        reader.read_line()
        reader.close()
        self.assertTrue(reader.released)
        self.assertEqual(reader.pulled, 1)

    def test_leaving_the_payload_early_releases_the_response(self):
        reader = Chunks([b"{}\nab", b"cd", b"ef"])
        reader.read_line()
        for _ in reader:
            break
        self.assertTrue(reader.released)

    def test_no_line_is_an_error(self):
        with self.assertRaises(JsException):
            Chunks([b"no newline"]).read_line()


def _replies(replies):
    """A stand-in for `host.call` answering `replies[op]` (a payload reply
    as its wire bytes, for `payload=True`)."""
    calls = []

    async def call(binding, op, args=None, body=None, payload=False):
        calls.append((binding, op, args, payload))
        reply = replies[op]
        if not payload:
            return reply
        reader = Chunks([reply])
        return json.loads(reader.read_line()), reader

    return call, calls


class AdaptersTest(unittest.TestCase):
    def test_kv_get(self):
        call, calls = _replies({"get": b'{"metadata": {"v": 1}}\nann'})
        kv = _bindings.KVNamespace("KV")
        with mock.patch.object(host, "call", call):
            self.assertEqual(run(kv.get("user:1")), "ann")
            found = run(kv.getWithMetadata("user:1"))
        self.assertEqual(found.value, "ann")
        self.assertEqual(found.metadata.to_py(), {"v": 1})
        self.assertEqual(calls[0], ("KV", "get", {"key": "user:1"}, True))

    def test_kv_get_stream_yields_the_payload(self):
        call, _ = _replies({"get": b'{"metadata": null}\nline 1\nline 2'})
        with mock.patch.object(host, "call", call):
            stream = run(_bindings.KVNamespace("KV").get("k", "stream"))
        self.assertEqual(b"".join(stream), b"line 1\nline 2")

    def test_kv_miss(self):
        call, _ = _replies({"get": b"null\n"})
        kv = _bindings.KVNamespace("KV")
        with mock.patch.object(host, "call", call):
            self.assertIsNone(run(kv.get("nope")))
            missing = run(kv.getWithMetadata("nope"))
        self.assertIsNone(missing.value)
        self.assertIsNone(missing.metadata)

    def test_r2_get_and_miss(self):
        meta = {
            "key": "a", "size": 4, "etag": "e", "uploaded": 0, "httpMetadata": {},
            "customMetadata": {}, "version": "v", "range": {"offset": 1, "length": 3},
        }
        call, calls = _replies({"get": json.dumps(meta).encode() + b"\nbcd"})
        r2 = _bindings.R2Bucket("B")
        with mock.patch.object(host, "call", call):
            got = run(r2.get("a", range={"offset": 1, "length": 3}))
        self.assertEqual(run(got.text()), "bcd")
        self.assertEqual(calls[0][2], {"key": "a", "range": {"offset": 1, "length": 3}})
        call, _ = _replies({"get": b"null\n"})
        with mock.patch.object(host, "call", call):
            self.assertIsNone(run(r2.get("nope")))


if __name__ == "__main__":
    unittest.main()
