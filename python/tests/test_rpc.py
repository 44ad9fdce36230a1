"""Values across workers and the callee side of an RPC call (`workers._rpc`)."""

import json
import unittest

from pyodide.ffi import JsArray, JsObject
from workers import _rpc


class ValuesTest(unittest.TestCase):
    def test_values_keep_their_kinds(self):
        value = {
            "js": JsObject({"a": JsArray([1, 2])}),
            "bytes": b"\x00\xff",
            "tuple": (1, "x"),
            "set": {3},
            "nested": {"$bytes": "not really"},
        }
        back = _rpc.decode(_rpc.encode(value))
        self.assertIsInstance(back["js"], JsObject)
        self.assertIsInstance(back["js"].a, JsArray)
        self.assertEqual(back["bytes"], b"\x00\xff")
        self.assertEqual(back["tuple"], [1, "x"])
        self.assertEqual(back["set"], {3})
        self.assertEqual(back["nested"], {"$bytes": "not really"})

    def test_unsupported_values_are_type_errors(self):
        with self.assertRaises(TypeError):
            _rpc.encode(object())
        with self.assertRaises(TypeError):
            _rpc.encode({1: "int key"})


class Receiver:
    def add(self, a, b):
        return a + b

    async def later(self, value):
        return {"got": value}

    def fail(self):
        raise KeyError("nope")

    def _private(self):
        return "hidden"

    def fetch(self, request):
        return "not by RPC"


def _answer(method, *args, **kwargs):
    payload = json.dumps({"method": method, "args": [_rpc.encode(a) for a in args], "kwargs": kwargs})
    logged = []
    status, body = _rpc.answer(Receiver(), payload, _run, lambda what, exc: logged.append(what))
    return status, body, logged


def _run(awaitable):
    try:
        awaitable.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("the coroutine did not finish at once")


class AnswerTest(unittest.TestCase):
    def test_methods_sync_and_async(self):
        self.assertEqual(_answer("add", 2, 3)[:2], (200, {"value": 5}))
        status, body, _ = _answer("later", b"\x01")
        self.assertEqual(status, 200)
        self.assertEqual(_rpc.decode(body["value"]), {"got": b"\x01"})

    def test_exceptions_travel_by_name(self):
        status, body, logged = _answer("fail")
        self.assertEqual(status, 500)
        self.assertEqual(body["error"], {"name": "KeyError", "message": "'nope'"})
        self.assertEqual(logged, ["Receiver.fail raised"])

    def test_private_handlers_and_missing_are_refused(self):
        for name in ("_private", "fetch", "missing"):
            status, body, _ = _answer(name)
            self.assertEqual(status, 500, name)
            self.assertIn("does not implement the method", body["error"]["message"])
