"""Helpers for the SDK tests, which run inside a Taipan sandbox (and on any CPython)."""


def run(awaitable):
    """Drive a coroutine that completes without waiting on I/O."""
    coro = awaitable.__await__()
    try:
        while True:
            coro.send(None)
    except StopIteration as done:
        return done.value


def run_loop(awaitable):
    """Run a coroutine that needs an event loop (tasks, futures): the
    sandbox's own loop inside Taipan, asyncio's elsewhere. Call it with no
    loop running."""
    try:
        from _taipan import loop
    except ImportError:
        import asyncio

        return asyncio.run(awaitable)
    return loop.run(awaitable)
