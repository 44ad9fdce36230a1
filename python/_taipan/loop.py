"""A small asyncio event loop for one request at a time, over `wasi:io/poll`.

A sandbox serves one request at a time, so the loop only needs ready
callbacks, timers (`asyncio.sleep`) and host calls in flight (bindings,
fetch: `wait_pollable`); body I/O blocks in the host instead of suspending
the coroutine. And TCP sockets (`_taipan.sockets.SocketLoop`: asyncio
streams), watched through wasi-libc's `select`.
"""

import asyncio
import heapq
import itertools
import types

from wit_world.imports import monotonic_clock, poll

from .sockets import SocketLoop

# With sockets and host calls both awaited, `select` and `poll` take turns this long.
SOCKET_SLICE = 0.001


class Loop(SocketLoop, asyncio.AbstractEventLoop):
    def __init__(self):
        self._ready = []
        self._timers = []  # heap of (when, seq, TimerHandle)
        self._polls = []  # (pollable, future): host calls in flight
        self._seq = itertools.count()
        self._running = False
        self._exception = None

    # -- running ---------------------------------------------------------

    def run_until_complete(self, awaitable):
        future = asyncio.ensure_future(awaitable, loop=self)
        self._running = True
        asyncio.events._set_running_loop(self)
        try:
            while not future.done():
                self._run_once()
                if self._exception is not None:
                    exc, self._exception = self._exception, None
                    raise exc
            return future.result()
        finally:
            self._running = False
            asyncio.events._set_running_loop(None)

    def wait_pollable(self, pollable) -> asyncio.Future:
        """A future that completes when `pollable` is ready (the caller owns it)."""
        future = self.create_future()
        self._polls.append((pollable, future))
        return future

    def _run_once(self):
        if not self._ready:
            self._wait_for_io()
        elif self._has_sockets():
            self._select_sockets(0)
        now = self.time()
        while self._timers and self._timers[0][0] <= now:
            _, _, handle = heapq.heappop(self._timers)
            if not handle._cancelled:
                self._ready.append(handle)
        ready, self._ready = self._ready, []
        for handle in ready:
            if not handle._cancelled:
                handle._run()

    def _wait_for_io(self):
        """Block until a host call, a watched socket or the next timer is ready."""
        self._polls = [(p, f) for p, f in self._polls if not f.done()]
        sockets = self._has_sockets()
        if not self._timers and not self._polls and not sockets:
            raise RuntimeError("the handler is awaiting something that can never complete")
        delay = None
        if self._timers:
            delay = self._timers[0][0] - self.time()
            if delay <= 0:
                return
        if sockets:
            # wasi-libc's `select` cannot wait on the host calls' pollables
            # too: with both pending, they take turns.
            if self._select_sockets(0 if self._polls else delay) or not self._polls:
                return
            delay = SOCKET_SLICE if delay is None else min(delay, SOCKET_SLICE)
        pollables = [p for p, _ in self._polls]
        timer = None
        if delay is not None:
            timer = monotonic_clock.subscribe_duration(int(delay * 1e9))
            pollables.append(timer)
        ready = poll.poll(pollables)
        if timer is not None:
            timer.__exit__(None, None, None)
        done = {i for i in ready if i < len(self._polls)}
        for i in done:
            future = self._polls[i][1]
            if not future.done():
                future.set_result(None)
        self._polls = [entry for i, entry in enumerate(self._polls) if i not in done]

    def time(self):
        return monotonic_clock.now() / 1e9

    def call_soon(self, callback, *args, context=None):
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    call_soon_threadsafe = call_soon

    def call_later(self, delay, callback, *args, context=None):
        return self.call_at(self.time() + max(delay, 0), callback, *args, context=context)

    def call_at(self, when, callback, *args, context=None):
        handle = asyncio.TimerHandle(when, callback, args, self, context)
        heapq.heappush(self._timers, (when, next(self._seq), handle))
        return handle

    def _timer_handle_cancelled(self, handle):
        pass

    def create_future(self):
        return asyncio.Future(loop=self)

    def create_task(self, coro, *, name=None, context=None, **kwargs):
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def call_exception_handler(self, context):
        exc = context.get("exception")
        if exc is not None and self._exception is None:
            self._exception = exc

    def default_exception_handler(self, context):
        self.call_exception_handler(context)

    def get_debug(self):
        return False

    def is_running(self):
        return self._running

    def is_closed(self):
        return False

    def close(self):
        pass

    def stop(self):
        pass

    async def shutdown_asyncgens(self):
        pass

    async def shutdown_default_executor(self, timeout=None):
        pass

    def run_in_executor(self, executor, func, *args):
        # No threads in a sandbox: run the function now and hand back its result.
        future = self.create_future()
        try:
            future.set_result(func(*args))
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting code
            future.set_exception(exc)
        return future


_loop = None


def _sandbox_loop() -> Loop:
    """This sandbox's loop (made once, kept in the snapshot)."""
    global _loop
    if _loop is None:
        _loop = Loop()
    return _loop


def run(awaitable):
    """Run `awaitable` to completion on this sandbox's loop."""
    return _sandbox_loop().run_until_complete(awaitable)


def drain() -> None:
    """Run what is ready now (tasks an event woke, the host calls they
    started) until nothing is; timers wait for a later call. A WebSocket's
    ASGI app lives across calls this way: its task waits for the next
    message between them."""
    loop = _sandbox_loop()
    if not loop._ready and not loop._polls:
        return
    asyncio.events._set_running_loop(loop)
    try:
        while loop._ready or any(not f.done() for _, f in loop._polls):
            loop._run_once()
            if loop._exception is not None:
                exc, loop._exception = loop._exception, None
                raise exc
    finally:
        asyncio.events._set_running_loop(None)


def run_fast(awaitable):
    """Like `run`, but a coroutine that finishes without suspending (most
    handlers) never touches the event loop: no Task, no scheduling."""
    coro = awaitable.__await__() if not hasattr(awaitable, "send") else awaitable
    # Code in the first step may create tasks or ask for the running loop.
    asyncio.events._set_running_loop(_sandbox_loop())
    try:
        first = coro.send(None)
    except StopIteration as done:
        return done.value
    finally:
        asyncio.events._set_running_loop(None)
    return run(_resumed(coro, first))


@types.coroutine
def _resumed(coro, first):
    """Hand a coroutine that has already yielded `first` over to the loop:
    re-yield what it yielded, then relay every send and throw."""
    to_send, to_throw = None, None
    try:
        to_send = yield first
    except BaseException as exc:  # noqa: BLE001 - relayed into the coroutine
        to_throw = exc
    while True:
        try:
            yielded = coro.throw(to_throw) if to_throw is not None else coro.send(to_send)
        except StopIteration as done:
            return done.value
        to_send, to_throw = None, None
        try:
            to_send = yield yielded
        except BaseException as exc:  # noqa: BLE001
            to_throw = exc
