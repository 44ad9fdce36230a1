"""FormData, Blob and File: parsing and encoding form bodies (`workers._forms`)."""

import unittest

from tests.support import run
from workers import Blob, File, FormData, Request, Response
from workers import _forms


class FormDataTest(unittest.TestCase):
    def test_repeated_names_and_mapping_access(self):
        form = FormData([("a", "1"), ("b", "2"), ("a", "3")])
        self.assertEqual(form["a"], "1")
        self.assertEqual(form.get_all("a"), ["1", "3"])
        self.assertEqual(form.getAll("missing"), [])
        form.set("a", "x")
        self.assertEqual(form.items(), [("b", "2"), ("a", "x")])
        del form["b"]
        self.assertNotIn("b", form)
        with self.assertRaises(KeyError):
            form["b"]
        form.append("n", 5)
        self.assertEqual(form["n"], "5")

    def test_urlencoded(self):
        form = _forms.parse("application/x-www-form-urlencoded", b"q=a+b&q=%C3%A9&empty=")
        self.assertEqual(form.get_all("q"), ["a b", "é"])
        self.assertEqual(form["empty"], "")

    def test_multipart_round_trip(self):
        form = FormData({"name": "zoë"})
        form.append("file", File([b"\x00\x01", "two"], "a.bin", "application/octet-stream"))
        form.append("blob", Blob(["text"], "text/plain"))
        body, content_type = _forms.encode(form)
        self.assertTrue(content_type.startswith("multipart/form-data; boundary="))
        back = _forms.parse(content_type, body)
        self.assertEqual(back["name"], "zoë")
        self.assertEqual((back["file"].name, back["file"].type, back["file"].size), ("a.bin", "application/octet-stream", 5))
        self.assertEqual(run(back["file"].bytes()), b"\x00\x01two")
        self.assertEqual(back["blob"].name, "blob")
        self.assertEqual(run(back["blob"].text()), "text")

    def test_bodies_and_content_types(self):
        response = Response(FormData({"k": "v"}))
        self.assertTrue(response.headers.get("content-type").startswith("multipart/form-data; boundary="))
        self.assertEqual(run(response.form_data())["k"], "v")
        request = Request("https://x/", method="POST", body=Blob(["{}"], "application/json"))
        self.assertEqual(request.headers.get("content-type"), "application/json")
        self.assertEqual(run(request.json()), {})
        kept = Response(FormData({"k": "v"}), headers={"content-type": "text/plain"})
        self.assertEqual(kept.headers.get("content-type"), "text/plain")

    def test_other_bodies_are_type_errors(self):
        request = Request("https://x/", method="POST", body="{}", headers={"content-type": "application/json"})
        with self.assertRaises(TypeError):
            run(request.form_data())

    def test_blob_slice(self):
        blob = Blob([b"hello"], "Text/Plain")
        self.assertEqual(blob.type, "text/plain")
        self.assertEqual(run(blob.slice(1, 3).bytes()), b"el")
