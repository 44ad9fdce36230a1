# wasi:cli/command app for checking the taipan_crashtest wheel (see run.py).
# CRASHTEST (environment) names the function to call after answer(); MB is grow()'s size.
import taipan_crashtest as ct
from wit_world import exports
from wit_world.imports import environment


class Run(exports.Run):
    def run(self) -> None:
        env = dict(environment.get_environment())  # os.environ is the pre-init snapshot
        what = env.get("CRASHTEST", "answer")
        print("answer() ->", ct.answer(), flush=True)
        if what == "boom":
            try:
                ct.boom()
            except RuntimeError as e:
                print("boom() raised", repr(e), flush=True)
        elif what == "grow":
            try:
                print("grow() ->", ct.grow(int(env.get("MB", "8"))), flush=True)
            except MemoryError:
                print("grow() raised MemoryError", flush=True)
        elif what != "answer":
            print(f"calling {what}()", flush=True)
            getattr(ct, what)()
        print("returned normally from", what, flush=True)
