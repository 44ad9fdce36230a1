"""Queues in the SDK (`workers._queues`): bodies serialized by content type
for the host, a consumer's batch, and which outcome each message gets."""

import datetime
import json
import unittest
from unittest import mock

from pyodide.ffi import JsException
from tests.support import run
from workers import _queues


def batch(*bodies, content_type="json"):
    messages = [
        {"id": f"m{i}", "timestamp": 1_700_000_000_000, "attempts": 1, "contentType": content_type, "body": json.dumps(body)}
        for i, body in enumerate(bodies)
    ]
    return _queues.MessageBatch({"queue": "jobs", "messages": messages})


class Serialize(unittest.TestCase):
    def test_each_content_type(self):
        self.assertEqual(_queues.serialize({"a": [1, "é"]}, None), json.dumps({"a": [1, "é"]}, separators=(",", ":")).encode())
        self.assertEqual(_queues.serialize("hi", "text"), b"hi")
        self.assertEqual(_queues.serialize(b"\x00\x01", "bytes"), b"\x00\x01")
        self.assertEqual(_queues.serialize(None, "json"), b"null")
        self.assertEqual(_queues.serialize([1], "V8"), b"[1]")

    def test_wrong_types_are_type_errors(self):
        with self.assertRaisesRegex(TypeError, 'Content Type "text" requires a value of type string'):
            _queues.serialize(3, "text")
        with self.assertRaisesRegex(TypeError, 'Content Type "bytes"'):
            _queues.serialize("x", "bytes")
        with self.assertRaisesRegex(TypeError, "Unsupported queue message content type: xml"):
            _queues.serialize("x", "xml")

    def test_a_batch_reads_bodies_back(self):
        b = _queues.MessageBatch(
            {
                "queue": "q",
                "messages": [
                    {"id": "1", "timestamp": 1_700_000_000_000, "attempts": 2, "contentType": "json", "body": '{"n": 1}'},
                    {"id": "2", "timestamp": 0, "attempts": 1, "contentType": "bytes", "body": "AAE="},
                    {"id": "3", "timestamp": 0, "attempts": 1, "contentType": "text", "body": "plain"},
                ],
            }
        )
        self.assertEqual([m.body for m in b.messages], [{"n": 1}, b"\x00\x01", "plain"])
        self.assertEqual(b.messages[0].attempts, 2)
        self.assertEqual(b.messages[0].timestamp, datetime.datetime(2023, 11, 14, 22, 13, 20))


class Outcomes(unittest.TestCase):
    def test_a_returned_handler_acks_and_a_raising_one_retries(self):
        self.assertEqual(batch(1, 2).outcomes(failed=False), {"acks": ["m0", "m1"], "retries": []})
        retried = batch(1, 2).outcomes(failed=True)
        self.assertEqual(retried["acks"], [])
        self.assertEqual([r["id"] for r in retried["retries"]], ["m0", "m1"])

    def test_message_calls_win_over_the_batch_and_the_first_call_wins(self):
        b = batch(1, 2, 3)
        b.messages[0].ack()
        b.messages[0].retry(delaySeconds=5)  # ignored: ack came first
        b.messages[1].retry(delay_seconds=7)
        b.retryAll()
        b.ackAll()  # ignored: retryAll came first
        self.assertEqual(
            b.outcomes(failed=False),
            {"acks": ["m0"], "retries": [{"id": "m1", "delaySeconds": 7}, {"id": "m2", "delaySeconds": None}]},
        )

    def test_acked_messages_stay_acked_when_the_handler_raises(self):
        b = batch(1, 2)
        b.messages[1].ack()
        self.assertEqual(b.outcomes(failed=True), {"acks": ["m1"], "retries": [{"id": "m0", "delaySeconds": None}]})

    def test_ack_all_is_a_success_even_if_the_handler_raises_later(self):
        b = batch(1)
        b.ack_all()
        self.assertEqual(b.outcomes(failed=True)["acks"], ["m0"])


class Producer(unittest.TestCase):
    def test_send_and_send_batch_make_one_host_call_each(self):
        calls = []

        async def call(binding, op, args=None, body=None, payload=False):
            calls.append((binding, op, args, body))

        queue = _queues.Queue("JOBS")
        with mock.patch("_taipan.host.call", call):
            run(queue.send({"x": 1}))
            run(queue.send("hi", content_type="text", delay_seconds=3))
            run(queue.sendBatch([{"body": "a", "contentType": "text"}, {"body": [1, 2]}], delaySeconds=2))
        self.assertEqual(calls[0], ("JOBS", "send", {"contentType": "json", "delaySeconds": None}, b'{"x":1}'))
        self.assertEqual(calls[1], ("JOBS", "send", {"contentType": "text", "delaySeconds": 3}, b"hi"))
        self.assertEqual(
            calls[2],
            (
                "JOBS",
                "sendBatch",
                {
                    "messages": [
                        {"contentType": "text", "delaySeconds": None, "size": 1},
                        {"contentType": "json", "delaySeconds": None, "size": 5},
                    ],
                    "delaySeconds": 2,
                },
                b"a[1,2]",
            ),
        )

    def test_bad_arguments_raise_before_any_host_call(self):
        queue = _queues.Queue("JOBS")
        with mock.patch("_taipan.host.call", side_effect=AssertionError("no call")):
            with self.assertRaisesRegex(TypeError, "at least one message"):
                run(queue.sendBatch([]))
            with self.assertRaisesRegex(TypeError, "delaySeconds"):
                run(queue.send("x", delaySeconds=-1))
            with self.assertRaisesRegex(TypeError, "needs a `body`"):
                run(queue.send_batch([{"contentType": "text"}]))


if __name__ == "__main__":
    unittest.main()
