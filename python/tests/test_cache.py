"""The Cache API in the SDK (`workers._cache`): what each method sends the
host, what it makes of the answer, and what it refuses before any call."""

import json
import unittest
from unittest import mock

from _taipan import contract
from tests.support import run
from tests.test_host import Chunks
from workers import Request, Response, _cache


class Host:
    """Stands in for `host.call`: records each call (with its payload read
    whole) and answers from `replies[op]` (a payload reply as wire bytes)."""

    def __init__(self, **replies):
        self.replies = replies
        self.calls = []

    async def call(self, binding, op, args=None, body=None, payload=False):
        if body is not None and not isinstance(body, bytes):
            body = b"".join(body)
        self.calls.append((binding, op, args, body))
        reply = self.replies[op]
        if not payload:
            return reply
        reader = Chunks([reply])
        return json.loads(reader.read_line()), reader

    def patch(self):
        return mock.patch("_taipan.host.call", self.call)


def hit(status=200, headers=(), body=b""):
    meta = {"status": status, "headers": [list(h) for h in headers]}
    return json.dumps(meta).encode() + b"\n" + body


class Exports(unittest.TestCase):
    def test_caches_is_a_js_global_and_in_workers(self):
        import workers
        from js import caches

        self.assertIs(caches, workers.caches)
        self.assertIsInstance(caches.default, workers.Cache)
        self.assertIs(caches.default, caches.default)

    def test_open_names_a_separate_cache(self):
        host = Host(match=b"null\n")
        named = run(_cache.caches.open("custom:cache"))
        with host.patch():
            run(named.match("https://a.test/"))
            run(_cache.caches.default.match("https://a.test/"))
        self.assertEqual([c[2]["cache"] for c in host.calls], ["custom:cache", None])
        with self.assertRaisesRegex(TypeError, "Cache name is too long."):
            run(_cache.caches.open("n" * 1024))
        with self.assertRaises(TypeError):
            run(_cache.caches.open(3))


class Match(unittest.TestCase):
    def test_a_hit_is_a_response_streaming_the_stored_body(self):
        host = Host(match=hit(200, [("content-type", "text/plain"), ("cf-cache-status", "HIT")], b"line 1\nline 2"))
        request = Request("https://a.test/page?q=1", headers={"Accept-Language": "fr"})
        with host.patch():
            response = run(_cache.caches.default.match(request))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get("cf-cache-status"), "HIT")
        self.assertEqual(run(response.text()), "line 1\nline 2")
        binding, op, args, _ = host.calls[0]
        self.assertEqual((binding, op), (contract.CACHE_BINDING, "match"))
        self.assertEqual(args, {"cache": None, "url": "https://a.test/page?q=1", "headers": [["accept-language", "fr"]]})

    def test_a_miss_is_none_and_a_304_has_no_body(self):
        with Host(match=b"null\n").patch():
            self.assertIsNone(run(_cache.caches.default.match("https://a.test/")))
        with Host(match=hit(304, [("etag", '"1"')])).patch():
            response = run(_cache.caches.default.match(Request("https://a.test/", headers={"if-none-match": '"1"'})))
        self.assertEqual((response.status, response.body), (304, None))

    def test_a_non_get_request_finds_nothing_unless_ignore_method(self):
        host = Host(match=hit(200, [], b"x"))
        post = Request("https://a.test/", method="POST")
        with host.patch():
            self.assertIsNone(run(_cache.caches.default.match(post)))
            self.assertEqual(host.calls, [])
            for options in ({"ignoreMethod": True}, {"ignore_method": True}):
                self.assertIsNotNone(run(_cache.caches.default.match(post, options)))
            self.assertIsNotNone(run(_cache.caches.default.match(post, ignore_method=True)))
            self.assertIsNotNone(run(_cache.caches.default.match(post, ignoreMethod=True)))
        self.assertEqual(len(host.calls), 4)

    def test_options_workers_does_not_implement_are_refused(self):
        with Host(match=b"null\n").patch():
            for name in ("ignoreSearch", "ignore_vary"):
                with self.assertRaisesRegex(TypeError, "not supported"):
                    run(_cache.caches.default.match("https://a.test/", **{name: True}))
        with self.assertRaises(TypeError):
            run(_cache.caches.default.match(42))


class Put(unittest.TestCase):
    def test_sends_the_key_request_headers_and_the_response(self):
        host = Host(put={"stored": True})
        response = Response("body", headers={"Cache-Control": "max-age=60", "Vary": "Accept"})
        request = Request("https://a.test/x", headers={"accept": "text/html"})
        with host.patch():
            self.assertIsNone(run(_cache.caches.default.put(request, response)))
        _, op, args, body = host.calls[0]
        self.assertEqual(op, "put")
        self.assertEqual(body, b"body")
        self.assertEqual(
            args,
            {
                "cache": None,
                "url": "https://a.test/x",
                "requestHeaders": [["accept", "text/html"]],
                "status": 200,
                "headers": [["cache-control", "max-age=60"], ["vary", "Accept"], ["content-type", "text/plain;charset=UTF-8"]],
            },
        )
        # The response's body is used, as on Workers.
        self.assertTrue(response.bodyUsed)
        with self.assertRaisesRegex(TypeError, "already been used"), host.patch():
            run(_cache.caches.default.put("https://a.test/x", response))

    def test_a_streamed_body_goes_chunk_by_chunk(self):
        host = Host(put={"stored": True})
        response = Response(iter([b"a", b"b"]), headers={"cache-control": "max-age=5"})
        with host.patch():
            run(_cache.caches.default.put("https://a.test/s", response))
        self.assertEqual(host.calls[0][3], b"ab")

    def test_a_response_not_stored_still_resolves(self):
        with Host(put={"stored": False, "reason": "Cache-Control: no-store"}).patch():
            self.assertIsNone(run(_cache.caches.default.put("https://a.test/", Response("x"))))

    def test_what_workers_refuses_raises_before_any_call(self):
        host = Host()
        cases = [
            (Request("https://a.test/", method="POST"), Response("x"), "non-GET"),
            ("https://a.test/", Response("x", status=206), "206"),
            ("https://a.test/", Response("x", headers={"vary": "Accept, *"}), "Vary: \\*"),
            ("https://a.test/", "not a response", "takes a Response"),
        ]
        with host.patch():
            for request, response, message in cases:
                with self.assertRaisesRegex(TypeError, message):
                    run(_cache.caches.default.put(request, response))
            # A 304 is dropped silently.
            self.assertIsNone(run(_cache.caches.default.put("https://a.test/", Response(None, status=304))))
        self.assertEqual(host.calls, [])


class Delete(unittest.TestCase):
    def test_answers_whether_something_was_deleted(self):
        host = Host(delete={"deleted": True})
        with host.patch():
            self.assertIs(run(_cache.caches.default.delete("https://a.test/")), True)
        self.assertEqual(host.calls[0][1:3], ("delete", {"cache": None, "url": "https://a.test/"}))
        with Host(delete={"deleted": False}).patch():
            self.assertIs(run(_cache.caches.default.delete("https://a.test/")), False)

    def test_a_non_get_request_deletes_nothing_unless_ignore_method(self):
        host = Host(delete={"deleted": True})
        head = Request("https://a.test/", method="HEAD")
        with host.patch():
            self.assertIs(run(_cache.caches.default.delete(head)), False)
            self.assertIs(run(_cache.caches.default.delete(head, {"ignoreMethod": True})), True)
        self.assertEqual(len(host.calls), 1)


class Unimplemented(unittest.TestCase):
    def test_what_workers_does_not_implement_raises(self):
        for call in (
            lambda: _cache.caches.default.add("https://a.test/"),
            lambda: _cache.caches.default.keys(),
            lambda: _cache.caches.has("x"),
        ):
            with self.assertRaisesRegex(Exception, "not implemented"):
                run(call())


if __name__ == "__main__":
    unittest.main()
