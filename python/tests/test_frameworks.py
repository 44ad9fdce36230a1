import unittest

import asgi
from tests.support import run, run_loop
from workers import Request
from workers.wsgi import fetch as wsgi_fetch


class WsgiTest(unittest.TestCase):
    def test_environ_and_response(self):
        seen = {}

        def app(environ, start_response):
            seen.update(environ)
            start_response("201 Created", [("X-App", "wsgi")])
            return [b"a", environ["wsgi.input"].read()]

        request = Request(
            "https://example.com/caf%C3%A9?x=1", method="POST", headers={"X-One": "1", "Content-Type": "text/plain"}, body="body"
        )
        response = run(wsgi_fetch(app, request, {"E": 1}))
        self.assertEqual(response.status, 201)
        self.assertEqual(response.headers.get("x-app"), "wsgi")
        self.assertEqual(run(response.text()), "abody")
        self.assertEqual(seen["PATH_INFO"], "/caf\xc3\xa9")
        self.assertEqual(seen["QUERY_STRING"], "x=1")
        self.assertEqual(seen["HTTP_X_ONE"], "1")
        self.assertEqual(seen["CONTENT_TYPE"], "text/plain")
        self.assertEqual(seen["CONTENT_LENGTH"], "4")
        self.assertEqual(seen["wsgi.url_scheme"], "https")
        self.assertEqual(seen["workers.env"], {"E": 1})


    def test_no_content_with_an_empty_body(self):
        # Django's HttpResponse(status=204) yields b"" (django-cf's delete views).
        def app(environ, start_response):
            start_response("204 No Content", [("Content-Type", "text/html; charset=utf-8")])
            return [b""]

        response = run(wsgi_fetch(app, Request("http://h/items/1", method="DELETE"), {}))
        self.assertEqual(response.status, 204)
        self.assertEqual(run(response.bytes()), b"")


class AsgiTest(unittest.TestCase):
    def test_scope_body_and_streamed_response(self):
        seen = {}

        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                raise RuntimeError("no lifespan here")  # as apps without lifespan support do
            seen.update(scope)
            message = await receive()
            await send({"type": "http.response.start", "status": 202, "headers": [(b"x-a", b"1")]})
            await send({"type": "http.response.body", "body": message["body"][:2], "more_body": True})
            await send({"type": "http.response.body", "body": b"!"})

        request = Request("http://h:8080/p%20q?z=2", method="PUT", body=b"hello")
        response = run_loop(asgi.fetch(app, request, "ENV"))
        self.assertEqual(response.status, 202)
        self.assertEqual(run(response.bytes()), b"he!")
        self.assertEqual(seen["path"], "/p q")
        self.assertEqual(seen["raw_path"], b"/p%20q")
        self.assertEqual(seen["query_string"], b"z=2")
        self.assertEqual(seen["server"], ("h", 8080))
        self.assertEqual(seen["env"], "ENV")

    def test_not_modified_with_an_empty_body(self):
        async def app(scope, receive, send):
            if scope["type"] == "lifespan":
                raise RuntimeError("no lifespan here")
            await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", b'"v1"')]})
            await send({"type": "http.response.body", "body": b""})

        response = run_loop(asgi.fetch(app, Request("http://h/"), None))
        self.assertEqual((response.status, response.headers.get("etag")), (304, '"v1"'))
        self.assertEqual(run(response.bytes()), b"")
