"""No threads in the sandbox: work sent to a thread runs in place.

CPython for WASI has no threads, so `anyio.to_thread.run_sync` (what
Starlette's `run_in_threadpool` and FastAPI's sync `def` endpoints and
dependencies use) calls the function directly, blocking the sandbox's event
loop while it runs. A sandbox serves one request at a time, so nothing else
waits on that loop.
"""

from . import patching


async def _run_in_place(func, *args, abandon_on_cancel=False, cancellable=None, limiter=None):
    return func(*args)


def _patch_anyio_to_thread(to_thread) -> None:
    to_thread.run_sync = _run_in_place


PATCHES = {"anyio.to_thread": _patch_anyio_to_thread}


def install() -> None:
    patching.register(PATCHES)
