"""Finding the worker's handler and calling it for each request."""

import importlib
import inspect
import json
import os
import sys
import traceback
from types import FunctionType
from urllib.parse import parse_qs, urlsplit

from _taipan import contract, loop, webapi
from _taipan.wasi_http import Outparam, send_error, send_response, to_request
from pyodide.ffi import JsObject

from workers import Env, ExecutionContext, Request, Response, ScheduledController, WorkerEntrypoint
from workers import _durable as durable
from workers import _rpc as rpc
from workers._bindings import make_bindings
from workers._context import set_current_ctx, set_current_env
from workers._durable import DurableObjectState
from workers import _websocket as websocket
from workers import _workflows as workflows
from workers._queues import MessageBatch

# Note: the generated `wit_world` package exists only while building, so every
# binding module the SDK uses must be imported at module level (snapshot time).


# Requests from the host into the guest (contract.py): the warm-up of a fresh
# sandbox, cron triggers, calls into Durable Objects (`/<class>/<id>/<op>`)
# and into named entrypoints of service bindings (`/<entrypoint>/<op>`).
SCHEDULED_PREFIX = f"http://{contract.AUTHORITY_SCHEDULED}/"
QUEUE_PREFIX = f"http://{contract.AUTHORITY_QUEUE}/"
WORKFLOW_PREFIX = f"http://{contract.AUTHORITY_WORKFLOW}/"
DURABLE_PREFIX = f"http://{contract.AUTHORITY_DURABLE}/"
SERVICE_PREFIX = f"http://{contract.AUTHORITY_SERVICE}/"
WEBSOCKET_PREFIX = f"http://{contract.AUTHORITY_WEBSOCKET}/"
# Checked first: a request from the network (whose authority the host never
# lets be one of these) skips the prefix checks, and its URL stays unbuilt
# until the worker reads it.
INTERNAL_AUTHORITIES = frozenset(
    (
        contract.AUTHORITY_SCHEDULED,
        contract.AUTHORITY_QUEUE,
        contract.AUTHORITY_WORKFLOW,
        contract.AUTHORITY_DURABLE,
        contract.AUTHORITY_SERVICE,
        contract.AUTHORITY_WEBSOCKET,
    )
)


class Dispatcher:
    """One per sandbox. `fresh` is True in the snapshot, so each sandbox
    restored from it refreshes its per-sandbox state on its first request."""

    def __init__(self, main: str):
        self.main = main
        self.fresh = True
        self.host_env = None  # the host's TAIPAN_* values, read at start-up
        self.dev = False
        self.env = None
        self.call = None
        self.module = None
        # The Durable Objects living in this sandbox, by (class, id).
        self.objects = {}

    def _start_sandbox(self) -> None:
        # componentize-py's runtime has already, on this sandbox's first call:
        # reseeded `random` from the host's entropy (the snapshot carries the
        # build's generator state; examples::concurrent_requests_get_separate_
        # freshly_seeded_sandboxes checks no two sandboxes share a sequence)
        # and copied the host's environment into `os.environ`. Asking the
        # host again cost a fresh sandbox ~30 µs.
        # Kept: a start-up that fails (the main module raises) runs again at
        # the next request, after the values are gone from os.environ.
        if self.host_env is None:
            self.host_env = {key: os.environ[key] for key in (contract.ENV_DEV, contract.ENV_VARS, contract.ENV_BINDINGS) if key in os.environ}
        host_env = self.host_env
        _hide_internal_environment()
        self.dev = host_env.get(contract.ENV_DEV) == contract.ENV_DEV_ON
        env = json.loads(host_env.get(contract.ENV_VARS) or "{}")
        env.update(make_bindings(json.loads(host_env.get(contract.ENV_BINDINGS) or "{}")))
        self.env = Env(env)
        set_current_env(self.env)
        self.module = importlib.import_module(self.main)
        self.call = _resolve_handler(self.module)
        self.fresh = False

    def handle(self, incoming, response_out) -> None:
        out = Outparam(response_out)
        ctx = ExecutionContext()
        set_current_ctx(ctx)
        try:
            self._respond(incoming, out, ctx)
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a 500 and a log line
            self._fail(out, exc)
        # Tasks the handler left ready (an ASGI app's WebSocket task after
        # `accept`) run now, not at the sandbox's next call.
        try:
            loop.drain()
        except BaseException as exc:  # noqa: BLE001
            _log_exception("a task the handler started failed", exc)
        # The response is sent; waitUntil work runs now, and may still read
        # the request, so the request resource is dropped only after it.
        for pending in ctx._take_pending():
            try:
                loop.run(pending)
            except BaseException as exc:  # noqa: BLE001
                _log_exception("ctx.waitUntil task failed", exc)
        webapi.cancel_timers()
        set_current_ctx(None)
        incoming.__exit__(None, None, None)

    def _respond(self, incoming, out: Outparam, ctx: ExecutionContext) -> None:
        if self.fresh:
            self._start_sandbox()
        authority = incoming.authority()
        if authority == contract.AUTHORITY_WARMUP:
            # The host's internal warm-up of a fresh sandbox: start-up is done
            # (above); no worker code runs, and no response is the answer
            # (contract: AUTHORITY_WARMUP).
            return
        request = to_request(incoming, authority)
        if authority in INTERNAL_AUTHORITIES and self._internal(request, ctx, out):
            return
        response = self.call(request, self.env, ctx)
        if inspect.isawaitable(response):
            response = loop.run_fast(response)
        if not isinstance(response, Response):
            raise TypeError(f"the handler returned {type(response).__name__}, expected a Response")
        send_response(response, out, head_only=request.method == "HEAD")

    def _internal(self, request, ctx: ExecutionContext, out: Outparam) -> bool:
        """A call from the host (contract.py); False if the URL is none of them."""
        url = request.url
        if url.startswith(SCHEDULED_PREFIX):
            self._scheduled(request, ctx, out)
        elif url.startswith(QUEUE_PREFIX):
            self._queue(request, ctx, out)
        elif url.startswith(WORKFLOW_PREFIX):
            self._workflow(request, ctx, out)
        elif url.startswith(DURABLE_PREFIX):
            self._durable(request, ctx, out)
        elif url.startswith(SERVICE_PREFIX):
            self._service(request, ctx, out)
        elif url.startswith(WEBSOCKET_PREFIX):
            self._websocket(request, out, None)
        else:
            return False
        return True

    def _scheduled(self, request, ctx: ExecutionContext, out: Outparam) -> None:
        query = parse_qs(urlsplit(request.url).query)
        controller = ScheduledController(
            query.get(contract.SCHEDULED_QUERY_CRON, [""])[0],
            float(query.get(contract.SCHEDULED_QUERY_TIME, ["0"])[0]),
        )
        handler = _resolve_event(self.module, "scheduled")
        if handler is None:
            send_error(out, contract.STATUS_NO_HANDLER, "the worker has no scheduled handler (`on_scheduled` or `Default.scheduled`)\n")
            return
        result = handler(controller, self.env, ctx)
        if inspect.isawaitable(result):
            loop.run_fast(result)
        send_response(Response("ok\n"), out, head_only=False)

    def _queue(self, request, ctx: ExecutionContext, out: Outparam) -> None:
        batch = MessageBatch(json.loads(loop.run_fast(request.text())))
        handler = _resolve_event(self.module, "queue")
        if handler is None:
            send_error(out, contract.STATUS_NO_HANDLER, "the worker has no queue handler (`on_queue` or `Default.queue`)\n")
            return
        error = None
        try:
            result = handler(batch, self.env, ctx)
            if inspect.isawaitable(result):
                loop.run_fast(result)
        except Exception as exc:  # noqa: BLE001 - a failed handler retries its batch, as on Workers
            error = _log_exception(f"queue handler failed for a batch of {len(batch.messages)} from {batch.queue}", exc)
        answer = dict(batch.outcomes(failed=error is not None), error=error)
        send_response(Response(json.dumps(answer), headers={"content-type": "application/json"}), out, head_only=False)

    def _workflow(self, request, ctx: ExecutionContext, out: Outparam) -> None:
        _, class_name, instance_id = urlsplit(request.url).path.split("/", 2)
        body = json.loads(loop.run_fast(request.text()))
        cls = getattr(self.module, class_name, None)
        if not (isinstance(cls, type) and callable(getattr(cls, "run", None))):
            answer = {"status": "errored", "error": {"name": "Error", "message": f"the worker has no workflow class {class_name!r} with a run method"}}
        else:
            try:
                answer = workflows.replay(cls(ctx, self.env), body, loop.run_fast)
            except Exception as exc:  # noqa: BLE001 - an uncaught error ends the instance as errored
                _log_exception(f"workflow {body['workflow']} instance {instance_id} failed", exc)
                answer = {"status": "errored", "error": {"name": type(exc).__name__, "message": str(exc)}}
        send_response(Response(json.dumps(answer), headers={"content-type": "application/json"}), out, head_only=False)

    def _durable(self, request, ctx: ExecutionContext, out: Outparam) -> None:
        _, class_name, object_id, op = urlsplit(request.url).path.split("/", 3)
        durable.set_home(object_id)
        instance = self.objects.get((class_name, object_id))
        if instance is None:
            cls = getattr(self.module, class_name, None)
            if not isinstance(cls, type):
                raise LookupError(
                    f"the worker's main module defines no Durable Object class {class_name!r} "
                    "(the class_name of a durable_objects binding)"
                )
            state = DurableObjectState(class_name, object_id)
            instance = cls(state, self.env)
            if not hasattr(instance, "ctx"):
                instance.ctx, instance.env = state, self.env
            self.objects[(class_name, object_id)] = instance
        state = getattr(instance, "ctx", None)
        if isinstance(state, DurableObjectState):
            state._request_ctx = ctx  # its waitUntil work runs after this call's response
        if op == contract.OP_ALARM:
            self._alarm(instance, request, out)
            return
        if op == contract.OP_WEBSOCKET:
            self._websocket(request, out, instance)
            return
        self._call_in(instance, op, request, out)

    def _websocket(self, request, out: Outparam, instance) -> None:
        """An event of a WebSocket this sandbox (or Durable Object) accepted."""
        event = json.loads(loop.run_fast(request.text()))
        if not websocket.deliver(event, instance, loop.run_fast, _log_exception):
            send_error(out, contract.STATUS_GONE, "this sandbox has no such WebSocket\n")
            return
        send_response(Response(None, status=204), out, head_only=True)

    def _alarm(self, instance, request, out: Outparam) -> None:
        """The host firing the object's alarm; a failure (500) is retried."""
        handler = getattr(instance, "alarm", None)
        if not callable(handler):
            raise LookupError(f"{type(instance).__name__} set an alarm but has no alarm() method")
        retry = int(request.headers.get(contract.HEADER_ALARM_RETRY) or 0)
        info = JsObject({"retryCount": retry, "isRetry": retry > 0})
        result = handler(info) if _positional_count(handler) >= 1 else handler()
        if inspect.isawaitable(result):
            loop.run_fast(result)
        send_response(Response(None, status=204), out, head_only=True)

    def _service(self, request, ctx: ExecutionContext, out: Outparam) -> None:
        _, name, op = urlsplit(request.url).path.split("/", 2)
        cls = getattr(self.module, name, None)
        if not isinstance(cls, type) or name.startswith("_"):
            if op == contract.OP_RPC and name == contract.DEFAULT_ENTRYPOINT:
                error = {"name": "TypeError", "message": "The RPC receiver does not implement the method."}
                send_response(Response.json({"error": error}, status=500), out, head_only=False)
                return
            raise LookupError(
                f"the worker's main module defines no entrypoint class {name!r} "
                "(the entrypoint of a service binding)"
            )
        if issubclass(cls, WorkerEntrypoint):
            instance = cls(ctx, self.env)
        else:
            instance = cls()
            instance.env, instance.ctx = self.env, ctx
        self._call_in(instance, op, request, out)

    def _call_in(self, instance, op: str, request, out: Outparam) -> None:
        """A call from another worker or a stub: `fetch` with the request it
        carries, or an RPC method."""
        if op == contract.OP_FETCH:
            url = request.headers.get(contract.HEADER_URL) or request.url
            headers = [(k, v) for k, v in request.headers if not k.startswith(contract.HEADER_PREFIX)]
            inner = Request(url, method=request.method, headers=headers, body=request._body_source)
            fetch = getattr(instance, "fetch", None)
            if not callable(fetch):
                raise LookupError(f"{type(instance).__name__} has no fetch method")
            response = fetch(inner) if _positional_count(fetch) >= 1 else fetch()
            if inspect.isawaitable(response):
                response = loop.run_fast(response)
            if not isinstance(response, Response):
                raise TypeError(
                    f"{type(instance).__name__}.fetch returned {type(response).__name__}, expected a Response"
                )
            send_response(response, out, head_only=request.method == "HEAD")
            return
        status, body = rpc.answer(instance, loop.run_fast(request.text()), loop.run_fast, _log_exception)
        send_response(Response.json(body, status=status), out, head_only=False)

    def _fail(self, out: Outparam, exc: BaseException) -> None:
        text = _log_exception("Uncaught exception in the handler", exc)
        if out.used:
            return  # the status line is already sent; the log line is all we can do
        try:
            send_error(out, 500, text if self.dev else "Internal Server Error\n")
        except BaseException as e:  # noqa: BLE001
            _log_exception("sending the error response failed", e)


def _hide_internal_environment() -> None:
    """The host hands vars and bindings over in `TAIPAN_*` environment
    values; the worker's `os.environ` must not show that protocol."""
    for key in [k for k in os.environ if k.startswith(contract.ENV_PREFIX)]:
        del os.environ[key]


def _resolve_handler(module):
    """Return `call(request, env, ctx)` for the handler style the module uses."""
    default = getattr(module, "Default", None)
    if isinstance(default, type) and (issubclass(default, WorkerEntrypoint) or hasattr(default, "fetch")):
        takes_request = _positional_count(default.fetch) >= 2

        def call_entrypoint(request, env, ctx):
            instance = default(ctx, env) if issubclass(default, WorkerEntrypoint) else default()
            if not issubclass(default, WorkerEntrypoint):
                instance.env, instance.ctx = env, ctx
            return instance.fetch(request) if takes_request else instance.fetch()

        return call_entrypoint
    on_fetch = getattr(module, "on_fetch", None)
    if callable(on_fetch):
        count = _positional_count(on_fetch)
        if count >= 3:
            return lambda request, env, ctx: on_fetch(request, env, ctx)
        if count == 2:
            return lambda request, env, ctx: on_fetch(request, env)
        return lambda request, env, ctx: on_fetch(request)
    message = (
        f"{getattr(module, '__file__', module.__name__)} defines neither `on_fetch` nor a "
        "`Default(WorkerEntrypoint)` class with a `fetch` method"
    )

    def no_fetch_handler(request, env, ctx):
        raise LookupError(message)  # a cron-only worker still runs its scheduled handler

    return no_fetch_handler


def _resolve_event(module, event: str):
    """Return `call(argument, env, ctx)` for the worker's handler of `event`
    (`scheduled`, `queue`): `Default.<event>` (a `WorkerEntrypoint` method,
    called with `(argument)` or `(argument, env, ctx)` as it takes them), or
    a module-level `on_<event>`; None if there is neither."""
    default = getattr(module, "Default", None)
    if isinstance(default, type) and hasattr(default, event):
        count = _positional_count(getattr(default, event))

        def call_entrypoint(argument, env, ctx):
            instance = default(ctx, env) if issubclass(default, WorkerEntrypoint) else default()
            if not issubclass(default, WorkerEntrypoint):
                instance.env, instance.ctx = env, ctx
            method = getattr(instance, event)
            if count >= 4:
                return method(argument, env, ctx)
            return method(argument)

        return call_entrypoint
    function = getattr(module, f"on_{event}", None)
    if callable(function):
        count = _positional_count(function)
        return lambda argument, env, ctx: function(*(argument, env, ctx)[: max(1, min(count, 3))])
    return None


# A plain function carrying one of these has a signature other than its
# code's (functools.wraps, a __signature__, functools.partialmethod; the
# last is named `_partialmethod` before Python 3.13).
_INSPECT_ATTRS = ("__wrapped__", "__signature__", "__partialmethod__", "_partialmethod")


def _positional_count(func) -> int:
    """How many positional arguments `func` takes (3 for `*args`).

    Runs at a fresh sandbox's first request, so a plain function is read
    from its code object: `inspect.signature` costs ~100 µs there. Anything
    else (a decorated function with `__wrapped__` or `__signature__`, a
    partial or partialmethod, a callable object) asks `inspect`."""
    if type(func) is FunctionType and not any(hasattr(func, a) for a in _INSPECT_ATTRS):
        code = func.__code__
        return 3 if code.co_flags & inspect.CO_VARARGS else code.co_argcount
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 3
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _log_exception(what: str, exc: BaseException) -> str:
    text = "".join(_user_traceback(exc))
    sys.stderr.write(f"{what}:\n{text}")
    sys.stderr.flush()
    return text


# Frames from the SDK ("/0/...") and asyncio's machinery are noise in a
# worker's traceback: drop them, keep the worker's own frames.
_HIDDEN_PREFIXES = ("/0/", "/python/asyncio/")


def _user_traceback(exc: BaseException) -> list:
    tb = traceback.TracebackException.from_exception(exc)
    for te in _chain(tb):
        kept = [f for f in te.stack if not f.filename.startswith(_HIDDEN_PREFIXES)]
        te.stack = traceback.StackSummary.from_list(kept)
    return list(tb.format())


def _chain(te):
    seen = set()
    while te is not None and id(te) not in seen:
        seen.add(id(te))
        yield te
        te = te.__cause__ or te.__context__
