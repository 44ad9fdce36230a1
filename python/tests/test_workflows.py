"""Workflow replays in the SDK (`workers._workflows`): completed steps come
from their records, sleeps and retry delays suspend, events are consumed
once; the host's step store is a dict here."""

import unittest
from unittest import mock

from tests.support import run, run_loop
from workers import WorkflowEntrypoint, _workflows
from workers.workflows import NonRetryableError


class Host:
    """Stands in for the host's step store (`host.call(WORKFLOW_BINDING, ...)`)."""

    def __init__(self):
        self.records = {}
        self.consumed = []
        self.stopped = False

    async def call(self, binding, op, args=None, body=None, payload=False):
        assert op == "step"
        if self.stopped:
            return {"stop": True}
        self.records[args["name"]] = args["record"]
        if args["event"] is not None:
            self.consumed.append(args["event"])
        return {"stop": False}


def replay(workflow, host, events=(), params=None, runner=run):
    body = {
        "workflow": "wf",
        "event": {"payload": params or {}, "timestamp": 0, "instanceId": "i1"},
        "steps": dict(host.records),
        "events": list(events),
    }
    with mock.patch("_taipan.host.call", host.call):
        return _workflows.replay(workflow(None, None), body, runner)


class Counting(WorkflowEntrypoint):
    calls = []

    async def run(self, event, step):
        @step.do("first")
        async def first():
            Counting.calls.append("first")
            return event["payload"]["n"] * 2

        doubled = await first()
        await step.sleep("nap", "1 hour")

        @step.do()
        def second(first, ctx):
            Counting.calls.append("second")
            return {"total": first + 1, "attempt": ctx["attempt"]}

        return await second()


class Replays(unittest.TestCase):
    def test_a_sleep_suspends_and_the_replay_skips_completed_steps(self):
        Counting.calls = []
        host = Host()
        answer = replay(Counting, host, params={"n": 5})
        self.assertEqual(answer["status"], "waiting")
        self.assertEqual(Counting.calls, ["first"])
        self.assertEqual(host.records["do:first#1"], {"value": 10, "attempts": 1})
        # The hour passes.
        host.records["sleep:nap#1"]["until"] = 0
        answer = replay(Counting, host, params={"n": 5})
        self.assertEqual(answer, {"status": "complete", "output": {"total": 11, "attempt": 1}})
        self.assertEqual(Counting.calls, ["first", "second"], "first ran once")

    def test_retries_without_delay_run_now_and_with_delay_suspend(self):
        tries = []

        class Flaky(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("flaky", config={"retries": {"limit": 3, "delay": event["payload"]["delay"], "backoff": "constant"}})
                def flaky():
                    tries.append(1)
                    if len(tries) < 3:
                        raise ValueError("not yet")
                    return "ok"

                return await flaky()

        self.assertEqual(replay(Flaky, Host(), params={"delay": 0}), {"status": "complete", "output": "ok"})
        tries.clear()
        host = Host()
        answer = replay(Flaky, host, params={"delay": "5 seconds"})
        self.assertEqual(answer["status"], "waiting")
        self.assertEqual(host.records["do:flaky#1"]["attempts"], 1)

    def test_a_step_out_of_retries_raises_into_run_and_can_be_caught(self):
        class Failing(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("bad", config={"retries": {"limit": 1, "delay": 0}})
                def bad():
                    raise TypeError("broken")

                @step.do("final")
                def final():
                    raise NonRetryableError("give up")

                try:
                    await bad()
                except TypeError as exc:
                    caught = str(exc)
                try:
                    await final()
                except NonRetryableError:
                    pass
                return caught

        host = Host()
        self.assertEqual(replay(Failing, host), {"status": "complete", "output": "broken"})
        self.assertEqual(host.records["do:bad#1"]["attempts"], 2)
        self.assertEqual(host.records["do:final#1"]["attempts"], 1, "no retry after NonRetryableError")
        # A later replay raises the stored error with its type.
        self.assertEqual(replay(Failing, host), {"status": "complete", "output": "broken"})

    def test_an_uncaught_step_error_escapes_the_replay(self):
        class Uncaught(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("bad", config={"retries": {"limit": 0, "delay": 0}})
                def bad():
                    raise RuntimeError("boom")

                await bad()

        with self.assertRaisesRegex(RuntimeError, "boom"):
            replay(Uncaught, Host())

    def test_events_are_awaited_then_consumed_once(self):
        class Approval(WorkflowEntrypoint):
            async def run(self, event, step):
                decision = await step.wait_for_event("approval", "approved", timeout="1 day")
                return decision["payload"]

        host = Host()
        self.assertEqual(replay(Approval, host)["status"], "waiting")
        answer = replay(Approval, host, events=[{"seq": 7, "type": "other", "payload": 1}, {"seq": 8, "type": "approved", "payload": {"by": "ana"}}])
        self.assertEqual(answer, {"status": "complete", "output": {"by": "ana"}})
        self.assertEqual(host.consumed, [8])

    def test_same_named_steps_in_a_loop_are_kept_apart(self):
        class Loop(WorkflowEntrypoint):
            async def run(self, event, step):
                total = 0
                for i in range(3):
                    @step.do("add")
                    def add():
                        return i

                    total += await add()
                return total

        host = Host()
        self.assertEqual(replay(Loop, host), {"status": "complete", "output": 3})
        self.assertEqual(sorted(host.records), ["do:add#1", "do:add#2", "do:add#3"])

    def test_an_async_step_past_its_timeout_fails_its_attempt(self):
        import asyncio

        class Slow(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("slow", config={"timeout": 50, "retries": {"limit": 0, "delay": 0}})
                async def slow():
                    await asyncio.sleep(5)

                try:
                    await slow()
                except TimeoutError:
                    return "timed out"

        host = Host()
        self.assertEqual(replay(Slow, host, runner=run_loop), {"status": "complete", "output": "timed out"})
        self.assertEqual(host.records["do:slow#1"]["error"]["name"], "TimeoutError")

    def test_a_run_told_to_stop_ends_without_running_further_steps(self):
        ran = []

        class Two(WorkflowEntrypoint):
            async def run(self, event, step):
                @step.do("one")
                def one():
                    ran.append("one")

                @step.do("two")
                def two():
                    ran.append("two")

                await one()
                await two()

        host = Host()
        host.stopped = True  # e.g. terminated while the run went on
        self.assertEqual(replay(Two, host), {"status": "waiting", "until": None})
        self.assertEqual(ran, ["one"])
        self.assertEqual(host.records, {})

    def test_durations(self):
        self.assertEqual(_workflows.duration_ms(250), 250)
        self.assertEqual(_workflows.duration_ms("10 seconds"), 10_000)
        self.assertEqual(_workflows.duration_ms("1 minute"), 60_000)
        with self.assertRaises(TypeError):
            _workflows.duration_ms("soon")


if __name__ == "__main__":
    unittest.main()
