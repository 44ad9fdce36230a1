"""Helpers for the SDK tests, which run inside a Taipan sandbox (and on any CPython)."""


def run(awaitable):
    """Drive a coroutine that completes without waiting on I/O."""
    coro = awaitable.__await__()
    try:
        while True:
            coro.send(None)
    except StopIteration as done:
        return done.value
