"""WebSocketPair, accept/send/close and event delivery, with the host's
calls recorded instead of made."""

import unittest

from workers import _websocket
from workers import WebSocketPair, WebSocketRequestResponsePair

from tests.support import run


class FakeHost:
    def __init__(self):
        self.calls = []
        self.sockets = 0
        self.closed = []

    def __call__(self, op, **args):
        self.calls.append((op, args))
        if op == "accept":
            self.sockets += 1
            return {"id": f"s{self.sockets}"}
        if op == "send":
            return {"closed": list(self.closed)}
        if op == "list":
            return [{"id": "h1", "tags": ["red"], "attachment": '{"name": "ann"}'}]
        return None


class WebSocketTest(unittest.TestCase):
    def setUp(self):
        self.host = FakeHost()
        self._real = _websocket._call
        _websocket._call = self.host
        _websocket._live.clear()
        _websocket._hibernatable.clear()

    def tearDown(self):
        _websocket._call = self._real

    def test_a_pair_unpacks_both_ways_and_only_the_server_end_accepts(self):
        pair = WebSocketPair.new()
        client, server = pair.object_values()
        self.assertIs(pair[0], client)
        self.assertEqual(len(list(WebSocketPair())), 2)
        with self.assertRaises(TypeError):
            client.accept()
        self.assertIsNone(client._socket_id())
        server.accept()
        self.assertEqual(client._socket_id(), "s1")
        self.assertEqual(self.host.calls[0], ("accept", {"hibernate": False, "tags": []}))
        with self.assertRaises(TypeError):
            server.accept()

    def test_sends_are_text_or_binary_frames_and_close_ends_sending(self):
        _client, server = WebSocketPair()
        server.accept()
        server.send("hi")
        server.send(b"\x00\x01")
        server.close(4000, "done")
        frames = [args["frames"][0] for op, args in self.host.calls if op == "send"]
        self.assertEqual(frames[0], {"id": "s1", "text": "hi"})
        self.assertEqual(frames[1], {"id": "s1", "binary": "AAE="})
        self.assertEqual(frames[2], {"id": "s1", "close": [4000, "done"]})
        with self.assertRaises(Exception):
            server.send("late")
        other = WebSocketPair()[1]
        other.accept()
        with self.assertRaises(TypeError):
            other.send(3)

    def test_events_run_listeners_in_order_sync_and_async(self):
        _client, server = WebSocketPair()
        server.accept()
        seen = []

        def on_text(event):
            seen.append(("sync", event.data))

        async def on_async(event):
            seen.append(("async", event.data))

        server.addEventListener("message", on_text)
        server.add_event_listener("message", on_async)
        server.addEventListener("close", lambda e: seen.append(("close", e.code, e.reason, e.wasClean)))
        self.assertTrue(_websocket.deliver({"id": "s1", "event": "message", "text": "a"}, None, run))
        self.assertTrue(_websocket.deliver({"id": "s1", "event": "message", "binary": "AAE="}, None, run))
        self.assertTrue(_websocket.deliver({"id": "s1", "event": "close", "code": 1000, "reason": "bye", "wasClean": True}, None, run))
        self.assertEqual(seen[0], ("sync", "a"))
        self.assertEqual(seen[1], ("async", "a"))
        self.assertEqual(bytes(seen[2][1]), b"\x00\x01")
        self.assertEqual(seen[4], ("close", 1000, "bye", True))
        self.assertEqual(server.readyState, server.CLOSED)
        self.assertFalse(_websocket.deliver({"id": "s1", "event": "message", "text": "gone"}, None, run))

    def test_hibernatable_sockets_reach_the_objects_handlers_with_their_attachment(self):
        calls = []

        class Room:
            async def webSocketMessage(self, ws, message):
                calls.append(("message", ws.deserializeAttachment(), message))
                ws.send(f"echo {message}")

            def webSocketClose(self, ws, code, reason, clean):
                calls.append(("close", code, reason, clean))

        room = Room()
        event = {"id": "h9", "event": "message", "text": "hey", "tags": ["red"], "attachment": {"name": "ann"}}
        self.assertTrue(_websocket.deliver(event, room, run))
        self.assertEqual(calls[0], ("message", {"name": "ann"}, "hey"))
        self.assertEqual(self.host.calls[-1], ("send", {"frames": [{"id": "h9", "text": "echo hey"}]}))
        # A socket that was accepted with listeners in a sandbox that is gone
        # is not taken for a hibernatable one.
        self.assertFalse(_websocket.deliver({"id": "x1", "event": "message", "text": "?", "hibernatable": False}, room, run))
        _websocket.deliver({"id": "h9", "event": "close", "code": 1001, "reason": "", "wasClean": True}, room, run)
        self.assertEqual(calls[1], ("close", 1001, "", True))

    def test_what_handlers_send_goes_in_one_call_and_a_failing_listener_loses_nothing(self):
        _client, server = WebSocketPair()
        server.accept()
        reported = []

        def first(event):
            server.send("ack")
            server.send("ack2")
            raise ValueError("boom")

        seen = []
        server.addEventListener("message", first)
        server.addEventListener("message", lambda e: seen.append(e.data))
        self.host.calls.clear()
        self.assertTrue(_websocket.deliver({"id": "s1", "event": "message", "text": "m"}, None, run, lambda what, exc: reported.append((what, str(exc)))))
        self.assertEqual(seen, ["m"], "the next listener still ran")
        self.assertEqual(reported, [("a WebSocket message listener failed", "boom")])
        self.assertEqual(self.host.calls, [("send", {"frames": [{"id": "s1", "text": "ack"}, {"id": "s1", "text": "ack2"}]})])
        # Outside an event, each send is its own call.
        server.send("now")
        self.assertEqual(self.host.calls[-1], ("send", {"frames": [{"id": "s1", "text": "now"}]}))
        with self.assertRaises(Exception):
            server.close(1005)

    def test_object_state_lists_tags_attachments_and_auto_responses(self):
        from workers._durable import DurableObjectState

        state = DurableObjectState("Room", "0" * 64)
        _client, server = WebSocketPair()
        state.acceptWebSocket(server, ["red"])
        self.assertEqual(self.host.calls[0], ("accept", {"hibernate": True, "tags": ["red"]}))
        self.assertEqual(state.getTags(server), ["red"])
        server.serializeAttachment({"n": 1})
        self.assertEqual(self.host.calls[-1], ("attach", {"id": "s1", "attachment": {"n": 1}}))
        listed = state.getWebSockets("red")
        self.assertEqual(self.host.calls[-1], ("list", {"tag": "red"}))
        self.assertEqual(listed[0].deserializeAttachment(), {"name": "ann"})
        state.setWebSocketAutoResponse(WebSocketRequestResponsePair.new("ping", "pong"))
        self.assertEqual(self.host.calls[-1], ("auto", {"request": "ping", "response": "pong"}))


if __name__ == "__main__":
    unittest.main()
