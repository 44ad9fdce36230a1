"""`env` and `ctx`: what a handler receives besides the request."""


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
