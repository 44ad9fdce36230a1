"""Workflows in the guest: `env.WORKFLOW` (create and manage instances) and
one replay of an instance's `run(event, step)`.

A replay runs `run` from the top. `step.do` steps already completed return
their stored result without running; a step that completes is stored at
once (a host call), so a crash or restart never runs it twice. A sleep, a
retry delay or a wait for an event not yet due suspends the replay
(`Suspend`, which `except Exception` does not catch): the host runs the
instance again when it is due. Step keys are the step's name and its count
among same-named steps in this run, as on Workers, so a name may repeat in
a loop; names must not depend on time or randomness.
"""

import asyncio
import datetime
import inspect
import json
import re
import time

from _taipan import contract, host
from pyodide.ffi import JsObject

from ._args import options as _options
from ._args import plain as _plain

from .workflows import NonRetryableError

DEFAULT_RETRIES = {"limit": 5, "delay": 10_000, "backoff": "exponential"}
DEFAULT_EVENT_TIMEOUT = "24 hours"
_UNITS = {"second": 1_000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000, "week": 604_800_000, "month": 2_592_000_000, "year": 31_536_000_000}


class Suspend(BaseException):
    """Ends a replay until `until` (ms since the epoch; None: until an event)."""

    def __init__(self, until):
        super().__init__(until)
        self.until = until


def duration_ms(value) -> int:
    """A duration: a number of milliseconds, or "<n> second(s)|minute(s)|…"."""
    if isinstance(value, bool):
        raise TypeError("a duration is a number of milliseconds or a string like '10 seconds'")
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+?)s?\s*", value.lower())
        if match and match.group(2) in _UNITS:
            return int(float(match.group(1)) * _UNITS[match.group(2)])
    raise TypeError(f"{value!r} is not a duration: use milliseconds or a string like '10 seconds'")


def _now_ms() -> int:
    return int(time.time() * 1000)


def _error_of(record: dict) -> Exception:
    """The exception a stored step failure raises in a later replay: its
    type kept for TypeError, ValueError and NonRetryableError."""
    kinds = {"TypeError": TypeError, "ValueError": ValueError, "NonRetryableError": NonRetryableError}
    return kinds.get(record.get("name"), Exception)(record.get("message", ""))


class WorkflowStep:
    """The `step` of one replay."""

    def __init__(self, workflow: str, instance_id: str, records: dict, events: list, generation: int = 0):
        self._workflow = workflow
        self._id = instance_id
        self._generation = generation
        self._records = records
        self._events = events
        self._counts = {}
        # Step name → its latest result in this replay (what a later step's
        # parameter of that name receives).
        self._memo = {}
        # Step name → its latest decorated function (a dependency not yet run).
        self._closures = {}

    def _key(self, kind: str, name: str) -> str:
        count = self._counts.get((kind, name), 0) + 1
        self._counts[(kind, name)] = count
        return f"{kind}:{name}#{count}"

    async def _store(self, key: str, record: dict, event=None) -> None:
        args = {"workflow": self._workflow, "id": self._id, "generation": self._generation, "name": key, "record": record, "event": event}
        answer = await host.call(contract.WORKFLOW_BINDING, "step", args)
        if answer and answer.get("stop"):
            # Paused, terminated or restarted while this run went on: it ends
            # here, storing nothing more.
            raise Suspend(None)
        self._records[key] = record

    def do(self, name=None, *, concurrent=False, config=None, depends=None):
        """`@step.do("name", config={...})` over a function (sync or async):
        awaiting the returned function runs the step once, retried by
        `config["retries"]`; its parameters name earlier steps (or `ctx`),
        or come from `depends=[...]`."""
        if callable(name):
            raise TypeError("use @step.do() or @step.do('name') over the step's function")

        def decorate(func):
            step_name = name or func.__name__
            params = [p for p in inspect.signature(func).parameters if p != "ctx"]
            wants_ctx = "ctx" in inspect.signature(func).parameters
            if depends is not None and len(depends) != len(params):
                raise TypeError(f"step {step_name!r} takes {len(params)} results but depends names {len(depends)} steps")

            done = []

            async def wrapper():
                # Awaiting the same step twice runs it once; a step of the
                # same name made again (a loop) is a step of its own.
                if done:
                    return done[0]
                if depends is not None:
                    args = [await dep() for dep in depends]
                else:
                    args = []
                    for param in params:
                        if param not in self._memo and param in self._closures:
                            await self._closures[param]()
                        if param not in self._memo:
                            raise TypeError(f"Received unexpected parameter {param} (no step of that name)")
                        args.append(self._memo[param])
                result = await self._run_step(step_name, func, args, wants_ctx, config)
                done.append(result)
                self._memo[step_name] = result
                return result

            wrapper.__name__ = step_name
            self._closures[step_name] = wrapper
            return wrapper

        return decorate

    async def _run_step(self, name, func, args, wants_ctx, config):
        key = self._key("do", name)
        record = self._records.get(key) or {}
        if "value" in record:
            return record["value"]
        if "error" in record:
            raise _error_of(record["error"])
        retries = dict(DEFAULT_RETRIES, **(_plain((config or {}).get("retries")) or {}))
        attempts = record.get("attempts", 0)
        if record.get("retryAt", 0) > _now_ms():
            raise Suspend(record["retryAt"])
        while True:
            attempts += 1
            kwargs = {}
            if wants_ctx:
                kwargs["ctx"] = JsObject({"step": {"name": name, "count": int(key.rsplit("#", 1)[1])}, "attempt": attempts, "config": {"retries": retries}})
            try:
                result = func(*args, **kwargs)
                if inspect.isawaitable(result):
                    # `timeout` bounds each attempt of an async step (a sync
                    # one is bounded only by the worker's cpu_time).
                    timeout = (config or {}).get("timeout")
                    if timeout is None:
                        result = await result
                    else:
                        result = await asyncio.wait_for(result, duration_ms(timeout) / 1000)
                result = _plain(result)
                try:
                    json.dumps(result)
                except (TypeError, ValueError) as exc:
                    raise NonRetryableError(f"Value returned from step {name!r} is not serialisable: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - a failing step is retried or recorded
                final = isinstance(exc, NonRetryableError) or attempts > int(retries["limit"])
                if final:
                    await self._store(key, {"error": {"name": type(exc).__name__, "message": str(exc)}, "attempts": attempts})
                    raise
                delay = duration_ms(retries["delay"])
                backoff = retries.get("backoff", "exponential")
                wait = delay * (2 ** (attempts - 1) if backoff == "exponential" else attempts if backoff == "linear" else 1)
                if wait <= 0:
                    continue
                retry_at = _now_ms() + wait
                await self._store(key, {"attempts": attempts, "retryAt": retry_at})
                raise Suspend(retry_at) from None
            await self._store(key, {"value": result, "attempts": attempts})
            return result

    async def sleep(self, name, duration) -> None:
        await self._sleep(name, lambda: _now_ms() + duration_ms(duration))

    async def sleep_until(self, name, timestamp) -> None:
        def until():
            if isinstance(timestamp, datetime.datetime):
                return int(timestamp.timestamp() * 1000)
            if isinstance(timestamp, str):
                return int(datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000)
            return int(timestamp)

        await self._sleep(name, until)

    async def _sleep(self, name, until) -> None:
        key = self._key("sleep", name)
        record = self._records.get(key)
        if record is None:
            record = {"until": until()}
            await self._store(key, record)
        if record["until"] > _now_ms():
            raise Suspend(record["until"])

    async def wait_for_event(self, name, event_type, timeout=DEFAULT_EVENT_TIMEOUT):
        """The next event of `event_type` sent to this instance: `{"payload",
        "timestamp", "type"}`; raises once `timeout` passes without one."""
        key = self._key("event", name)
        record = self._records.get(key) or {}
        if "value" in record:
            return JsObject(record["value"])
        if "error" in record:
            raise _error_of(record["error"])
        for event in self._events:
            if event["type"] == event_type:
                self._events.remove(event)
                value = {"payload": event["payload"], "timestamp": _now_ms(), "type": event_type}
                await self._store(key, {"value": value}, event=event["seq"])
                return JsObject(value)
        deadline = record.get("deadline")
        if deadline is None:
            deadline = _now_ms() + duration_ms(timeout)
            await self._store(key, {"deadline": deadline})
        if deadline <= _now_ms():
            error = {"name": "Error", "message": f"waiting for event {event_type!r} timed out"}
            await self._store(key, {"error": error})
            raise _error_of(error)
        raise Suspend(deadline)

    waitForEvent = wait_for_event
    sleepUntil = sleep_until


def replay(instance, body: dict, run_fast) -> dict:
    """One replay of `instance.run`: the answer for the host."""
    event = body["event"]
    created = datetime.datetime.fromtimestamp(event["timestamp"] / 1000, datetime.UTC)
    event = JsObject({"payload": event["payload"], "timestamp": created, "instanceId": event["instanceId"], "workflowName": body["workflow"]})
    step = WorkflowStep(
        body["workflow"], body["event"]["instanceId"], dict(body.get("steps") or {}), list(body.get("events") or []), body.get("generation", 0)
    )
    try:
        output = run_fast(instance.run(event, step))
    except Suspend as suspend:
        return {"status": "waiting", "until": suspend.until}
    output = _plain(output)
    try:
        json.dumps(output)
    except (TypeError, ValueError):
        return {"status": "errored", "error": {"name": "TypeError", "message": "the workflow's return value is not serialisable"}}
    return {"status": "complete", "output": output}


# -- the binding ----------------------------------------------------------------


class Workflow:
    """`env.WORKFLOW`: a `[[workflows]]` binding."""

    def __init__(self, binding: str):
        self._binding = binding

    async def create(self, options=None, **kwargs):
        options = _options(options, kwargs)
        args = {"id": options.get("id"), "params": _plain(options.get("params", {}))}
        result = await host.call(self._binding, "create", args)
        return WorkflowInstance(self._binding, result["id"])

    async def create_batch(self, batch):
        return [await self.create(options) for options in (_plain(batch) or [])]

    async def get(self, id):
        await host.call(self._binding, "get", {"id": id})
        return WorkflowInstance(self._binding, id)

    createBatch = create_batch

    def __repr__(self) -> str:
        return f"<Workflow {self._binding}>"


class WorkflowInstance:
    def __init__(self, binding: str, id: str):
        self._binding = binding
        self.id = id

    async def status(self):
        result = await host.call(self._binding, "status", {"id": self.id})
        return JsObject({k: v for k, v in result.items() if v is not None or k == "output"})

    async def pause(self) -> None:
        await host.call(self._binding, "pause", {"id": self.id})

    async def resume(self) -> None:
        await host.call(self._binding, "resume", {"id": self.id})

    async def terminate(self) -> None:
        await host.call(self._binding, "terminate", {"id": self.id})

    async def restart(self) -> None:
        await host.call(self._binding, "restart", {"id": self.id})

    async def send_event(self, options=None, **kwargs) -> None:
        options = _options(options, kwargs)
        if not isinstance(options.get("type"), str):
            raise TypeError("send_event needs a `type` (a string)")
        await host.call(self._binding, "sendEvent", {"id": self.id, "type": options["type"], "payload": _plain(options.get("payload"))})

    sendEvent = send_event

    def __repr__(self) -> str:
        return f"<WorkflowInstance {self.id}>"
