import json
import unittest

from pyodide.ffi import JsProxy, create_proxy, to_js


class FfiTest(unittest.TestCase):
    def test_to_js_dict_is_an_object(self):
        obj = to_js({"a": 1, "nested": {"b": [1, 2]}})
        self.assertIsInstance(obj, JsProxy)
        self.assertEqual(obj.a, 1)
        self.assertEqual(obj["nested"].b, [1, 2])
        self.assertEqual(obj.to_py(), {"a": 1, "nested": {"b": [1, 2]}})

    def test_to_js_with_dict_converter(self):
        from js import Object

        obj = to_js({"a": 1}, dict_converter=Object.fromEntries)
        self.assertEqual(obj.a, 1)

    def test_scalars_pass_through(self):
        for value in (1, 1.5, "s", None, True, b"x"):
            self.assertEqual(to_js(value), value)

    def test_create_proxy(self):
        proxy = create_proxy(lambda x: x * 2)
        self.assertEqual(proxy(21), 42)
        proxy.destroy()
        with self.assertRaises(Exception):
            proxy(1)


class JsTest(unittest.TestCase):
    def test_json_roundtrip(self):
        from js import JSON

        text = JSON.stringify(to_js({"a": [1, "x"]}))
        self.assertEqual(json.loads(text), {"a": [1, "x"]})
        self.assertEqual(JSON.parse('{"k": {"v": 3}}').k.v, 3)

    def test_url(self):
        from js import URL

        url = URL.new("https://user@example.com:8443/a/b?x=1&y=2#frag")
        self.assertEqual(url.hostname, "example.com")
        self.assertEqual(url.port, "8443")
        self.assertEqual(url.pathname, "/a/b")
        self.assertEqual(url.search, "?x=1&y=2")
        self.assertEqual(url.searchParams.get("y"), "2")
        self.assertEqual(url.hash, "#frag")

    def test_object_from_entries(self):
        from js import Object

        self.assertEqual(Object.fromEntries([("a", 1)]).a, 1)

    def test_date_now_is_ms_since_the_epoch(self):
        import time

        from js import Date

        now = Date.now()
        self.assertIsInstance(now, int)
        self.assertLess(abs(now - time.time() * 1000), 5000)

    def test_headers_new(self):
        from js import Headers

        self.assertEqual(Headers.new({"A": "1"}).get("a"), "1")


class JsObjectPropertiesTest(unittest.TestCase):
    def test_a_property_wins_over_mapping_methods(self):
        # A KV list result has a `keys` property, as in JavaScript.
        result = to_js({"keys": [{"name": "a"}], "list_complete": True})
        self.assertEqual([k.name for k in result.keys], ["a"])
        self.assertTrue(result.list_complete)
        plain = to_js({"a": 1})
        self.assertEqual(list(plain.keys()), ["a"])

    def test_run_sync_returns_a_coroutines_value(self):
        from pyodide.ffi import run_sync

        async def answer():
            return 42

        self.assertEqual(run_sync(answer()), 42)
