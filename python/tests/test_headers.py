import unittest

from workers import Headers


class HeadersTest(unittest.TestCase):
    def test_case_insensitive_get_and_contains(self):
        h = Headers({"Content-Type": "text/html", "X-A": "1"})
        self.assertEqual(h.get("content-type"), "text/html")
        self.assertEqual(h["CONTENT-TYPE"], "text/html")
        self.assertIn("x-a", h)
        self.assertIsNone(h.get("missing"))
        with self.assertRaises(KeyError):
            h["missing"]

    def test_repeated_values_keep_order(self):
        h = Headers([("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X", "y")])
        self.assertEqual(h.get_all("set-cookie"), ["a=1", "b=2"])
        self.assertEqual(h.get("set-cookie"), "a=1, b=2")
        self.assertEqual(list(h), [("set-cookie", "a=1"), ("set-cookie", "b=2"), ("x", "y")])
        self.assertEqual(h.keys(), ["set-cookie", "x"])

    def test_set_replaces_and_delete_removes(self):
        h = Headers([("a", "1"), ("a", "2")])
        h.set("A", "3")
        self.assertEqual(h.get_all("a"), ["3"])
        h.delete("a")
        self.assertFalse(h.has("a"))

    def test_rejects_bad_names_and_values(self):
        with self.assertRaises(ValueError):
            Headers({"bad name": "x"})
        with self.assertRaises(ValueError):
            Headers({"x": "line\r\nbreak"})
        with self.assertRaises(TypeError):
            Headers(42)

    def test_accepts_to_js_objects(self):
        from pyodide.ffi import to_js

        h = Headers(to_js({"X-From": "js"}))
        self.assertEqual(h.get("x-from"), "js")
