"""The module componentize-py pre-initializes: what runs at build time, and the
`wasi:http` export that runs for every request.

At build time (before the snapshot) this compiles the worker's source tree,
runs the worker's main module (snapshot "full", the default), refusing
randomness in its top-level code (`_taipan.entropy`), and executes the
imports of the worker's modules. Everything imported here is in the memory
snapshot every sandbox starts from.
"""

import sys
import traceback

import _taipan_build as build
import js  # noqa: F401 - part of the snapshot
import pyodide.ffi  # noqa: F401 - part of the snapshot
import workers  # noqa: F401 - part of the snapshot
from _taipan import clients, contract, httpclient, loop, sockets, threads  # noqa: F401 - part of the snapshot
from _taipan.dispatch import Dispatcher
from _taipan.entropy import TopLevelEntropy
from _taipan.loader import WorkerBuildError, WorkerModules, execute_imports
from wit_world import exports

ERROR_START = contract.BUILD_ERROR_START
ERROR_END = contract.BUILD_ERROR_END


def _prepare() -> WorkerModules:
    httpclient.install()  # before the worker (or urllib.request) is imported
    clients.install()  # patches httpx and urllib3 as they are imported
    threads.install()  # anyio.to_thread runs functions in place
    sockets.install()  # refused connections say why; `ssl` names for scramp
    worker = WorkerModules(build.SOURCE_ROOT, build.DISPLAY_PREFIX)
    try:
        worker.compile_tree()
        worker.check(build.MAIN)
        worker.install()
        if build.SNAPSHOT == "full":
            try:
                with TopLevelEntropy(worker.is_worker_module):
                    __import__(build.MAIN)
            except Exception:
                raise WorkerBuildError("running the worker's main module failed:\n" + traceback.format_exc()) from None
        # After the main module (which may configure what packages read as
        # they are imported, e.g. os.environ): what the worker's other
        # modules import (Django's views, loaded by name) joins the snapshot.
        execute_imports(worker, build.MAIN)
    except WorkerBuildError as e:
        cause = e.__cause__
        detail = "".join(traceback.format_exception(cause)) if cause is not None else ""
        sys.stderr.write(f"{ERROR_START}{e}\n{detail}{ERROR_END}\n")
        sys.stderr.flush()
        raise
    return worker


_worker = _prepare()
_dispatcher = Dispatcher(build.MAIN)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request, response_out) -> None:
        _dispatcher.handle(request, response_out)
