"""`env` and `ctx`: what a handler receives besides the request."""

from contextlib import contextmanager


class Env:
    """The bindings of a worker, reached as attributes: `env.MY_VAR`.

    Missing names raise AttributeError (as `env.MISSING` is `undefined` in JS,
    code that probes uses `getattr(env, "NAME", None)`).
    """

    def __init__(self, bindings: dict):
        self.__dict__.update(bindings)

    def __getitem__(self, name):
        try:
            return self.__dict__[name]
        except KeyError:
            raise KeyError(name) from None

    def __contains__(self, name) -> bool:
        return name in self.__dict__

    def to_py(self) -> dict:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        return f"Env({sorted(self.__dict__)})"


class ExecutionContext:
    """`ctx`: `waitUntil(awaitable)` work runs after the response is sent."""

    def __init__(self):
        self._wait_until = []

    def waitUntil(self, awaitable) -> None:
        if not hasattr(awaitable, "__await__"):
            raise TypeError(f"waitUntil expects an awaitable, got {type(awaitable).__name__}")
        self._wait_until.append(awaitable)

    wait_until = waitUntil

    def passThroughOnException(self) -> None:
        """Accepted for compatibility: there is no origin to pass through to."""

    pass_through_on_exception = passThroughOnException

    def _take_pending(self) -> list:
        pending, self._wait_until = self._wait_until, []
        return pending


class ScheduledController:
    """What a cron trigger's `scheduled` handler receives."""

    type = "scheduled"

    def __init__(self, cron: str, scheduled_time: float):
        self.cron = cron
        self.scheduledTime = scheduled_time
        self.scheduled_time = scheduled_time

    def noRetry(self) -> None:
        """Accepted: Taipan does not retry failed scheduled events."""

    no_retry = noRetry

    def __repr__(self) -> str:
        return f"ScheduledController(cron={self.cron!r}, scheduledTime={self.scheduledTime})"


# The sandbox's env, set when the sandbox starts (before any handler runs).
_current_env = None


def set_current_env(env: "Env") -> None:
    global _current_env
    _current_env = env


def current_env() -> "Env":
    if _current_env is None:
        raise RuntimeError(
            "cloudflare:workers env is not available while the snapshot is taken; "
            "read it inside a function that runs at request time"
        )
    return _current_env


class _LiveEnv:
    """`from workers import env`: importable at module level (while the
    snapshot is taken, when no bindings exist yet); each use reads the
    sandbox's env of the moment."""

    def __getattr__(self, name):
        return getattr(current_env(), name)

    def __getitem__(self, name):
        return current_env()[name]

    def __contains__(self, name) -> bool:
        return name in current_env()

    def to_py(self) -> dict:
        return current_env().to_py()

    def __repr__(self) -> str:
        return repr(_current_env) if _current_env is not None else "Env(<not started>)"


live_env = _LiveEnv()


# The ExecutionContext of the request this sandbox is handling (one at a time).
_current_ctx = None


def set_current_ctx(ctx) -> None:
    global _current_ctx
    _current_ctx = ctx


@contextmanager
def patch_env(d=None, **values):
    """Within the block, `from workers import env` (and `cloudflare:workers`
    env) also has `values` (for tests): `with patch_env(FLAG="1"): ...`."""
    global _current_env
    saved = _current_env
    merged = dict(saved.to_py()) if saved is not None else {}
    merged.update(dict(d or {}), **values)
    _current_env = Env(merged)
    try:
        yield
    finally:
        _current_env = saved


class _CloudflareWorkers:
    """`import_from_javascript("cloudflare:workers")`: `.env` is the worker's
    bindings, usable outside a handler (e.g. by a library's module-level code
    that runs lazily)."""

    @property
    def env(self) -> "Env":
        return current_env()

    @staticmethod
    def waitUntil(awaitable) -> None:
        if _current_ctx is None:
            raise RuntimeError("waitUntil() is only available while a request is handled")
        _current_ctx.waitUntil(awaitable)


_MODULES = {"cloudflare:workers": _CloudflareWorkers()}


def import_from_javascript(name: str):
    """The JavaScript modules Python Workers can import: `cloudflare:workers`."""
    try:
        return _MODULES[name]
    except KeyError:
        raise ImportError(f"no JavaScript module named {name!r} in Taipan; available: {sorted(_MODULES)}") from None
