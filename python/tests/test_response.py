import unittest

from tests.support import run
from workers import Request, Response


class ResponseTest(unittest.TestCase):
    def test_text_body_sets_text_plain(self):
        r = Response("hi")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers.get("content-type"), "text/plain;charset=UTF-8")
        self.assertEqual(run(r.text()), "hi")

    def test_bytes_body_sets_no_content_type(self):
        r = Response(b"\x00\x01", status=201)
        self.assertIsNone(r.headers.get("content-type"))
        self.assertEqual(run(r.bytes()), b"\x00\x01")

    def test_explicit_content_type_wins(self):
        r = Response("<p>", headers={"Content-Type": "text/html"})
        self.assertEqual(r.headers.get_all("content-type"), ["text/html"])

    def test_json(self):
        r = Response.json({"a": [1, 2]}, status=202, headers={"x": "y"})
        self.assertEqual(r.status, 202)
        self.assertEqual(r.headers.get("content-type"), "application/json")
        self.assertEqual(r.headers.get("x"), "y")
        self.assertEqual(run(r.json()), {"a": [1, 2]})

    def test_redirect(self):
        r = Response.redirect("https://example.com/", 301)
        self.assertEqual((r.status, r.headers.get("location")), (301, "https://example.com/"))
        with self.assertRaises(ValueError):
            Response.redirect("/x", 200)

    def test_body_reads_once(self):
        r = Response("x")
        run(r.text())
        self.assertTrue(r.bodyUsed)
        with self.assertRaises(TypeError):
            run(r.text())

    def test_invalid_status(self):
        with self.assertRaises(ValueError):
            Response("x", status=99)

    def test_json_of_javascript_values(self):
        # A D1 row is a JsObject: Response.json(row) as Cloudflare's D1 example does.
        from pyodide.ffi import JsObject, to_js

        row = JsObject({"quote": "q", "meta": JsObject({"n": 1}), "tags": to_js(["a"])})
        self.assertEqual(run(Response.json(row).json()), {"quote": "q", "meta": {"n": 1}, "tags": ["a"]})
        with self.assertRaises(TypeError):
            Response.json({"x": object()})

    def test_null_body_statuses_take_an_empty_body_but_not_content(self):
        for status in (204, 205, 304):
            for empty in (None, "", b""):
                r = Response(empty, status=status)
                self.assertIsNone(r.body, (status, empty))
                self.assertEqual(run(r.bytes()), b"")
            with self.assertRaises(TypeError):
                Response("x", status=status)

    def test_a_101_needs_a_websocket_and_a_websocket_needs_101(self):
        from workers import WebSocketPair

        client, _server = WebSocketPair()
        self.assertIs(Response(None, status=101, web_socket=client).webSocket, client)
        self.assertIs(Response(None, status=101, webSocket=client).web_socket, client)
        with self.assertRaises(Exception):
            Response(None, status=101)
        with self.assertRaises(Exception):
            Response(None, status=200, web_socket=client)
        with self.assertRaises(TypeError):
            Response("x", status=101, web_socket=client)

    def test_js_style_new_with_dict_and_to_js(self):
        from js import Response as JsResponse
        from pyodide.ffi import to_js

        r = JsResponse.new("hi", {"status": 404, "headers": {"X-A": "1"}})
        self.assertEqual((r.status, r.headers.get("x-a")), (404, "1"))
        r = JsResponse.new("hi", to_js({"status": 418, "headers": [["X-B", "2"]]}))
        self.assertEqual((r.status, r.headers.get("x-b")), (418, "2"))


class RequestTest(unittest.TestCase):
    def test_fields_and_body(self):
        req = Request("https://a.test/p?q=1", method="post", headers={"X-A": "1"}, body='{"k": 2}')
        self.assertEqual(req.method, "POST")
        self.assertEqual(req.url, "https://a.test/p?q=1")
        self.assertEqual(req.headers.get("x-a"), "1")
        self.assertIs(req.js_object, req)
        self.assertEqual(run(req.json()), {"k": 2})

    def test_pyodide_style_binary_bodies(self):
        # As django-cf reads a body: request._js_request.arrayBuffer().to_bytes()
        req = Request("https://a.test/", method="POST", body=b"\x00raw")
        buffer = run(req._js_request.arrayBuffer())
        self.assertEqual(buffer.to_bytes(), b"\x00raw")
        self.assertEqual(bytes(buffer.to_py()), b"\x00raw")
        self.assertEqual(buffer.byteLength, 4)
        from pyodide.ffi import to_js

        # to_js(bytes).buffer as a Response body (Cloudflare's image example).
        self.assertEqual(run(Response(to_js(b"png").buffer).bytes()), b"png")

    def test_body_from_a_reader(self):
        class Reader:
            def read_all(self):
                return b"streamed"

        req = Request("http://x/")
        req._body_source = Reader()
        self.assertEqual(run(req.bytes()), b"streamed")
