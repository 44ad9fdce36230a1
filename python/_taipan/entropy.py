"""Refuse randomness in the worker's own top-level code while the snapshot is taken.

With `snapshot = "full"` (the default) the worker's main module runs at build
time and every sandbox starts from the memory it leaves. A random value it
makes there (a token, a UUID, a shuffled list) would be the same in every
sandbox of the deploy, so, as Cloudflare does, asking for one raises instead,
with a hint. Packages may still seed themselves while they are imported
(`random`, numpy): every sandbox reseeds `random` before its first request.

Not caught: a `random.Random()` created at the top level without a seed seeds
itself in C; it is the same in every sandbox. (numpy's `default_rng()` asks
`secrets`, so it is caught.) Vendored packages under the worker's source
folder count as the worker's own code.
"""

import os
import random
import sys

# The module-level functions of `random` that draw from its shared generator.
_DRAWS = (
    "betavariate", "binomialvariate", "choice", "choices", "expovariate", "gammavariate",
    "gauss", "getrandbits", "lognormvariate", "normalvariate", "paretovariate",
    "randbytes", "randint", "random", "randrange", "sample", "shuffle", "triangular",
    "uniform", "vonmisesvariate", "weibullvariate",
)  # fmt: skip

HINT = (
    "hint: the worker's top level runs once, at build time, and every sandbox starts from "
    "the memory it leaves, so this value would be the same in every sandbox. Make it inside "
    "a handler, seed a generator yourself (`random.Random(seed)`), or set "
    '`snapshot = "imports"` in the worker\'s config to run the top level in each sandbox.'
)


class TopLevelEntropy:
    """While active, randomness asked for by the worker's own module-level code raises."""

    def __init__(self, is_worker_module):
        self.is_worker_module = is_worker_module
        self.seeded = False  # the worker seeded `random` itself: its draws are its choice
        self.saved = []
        # Cleared on exit: a module that copied a wrapper while the guard was
        # on (`from os import urandom`) keeps working afterwards.
        self.active = False

    def __enter__(self):
        self.active = True
        self._patch(os, "urandom", self._refusing("os.urandom()", os.urandom))
        if hasattr(os, "getrandom"):
            self._patch(os, "getrandom", self._refusing("os.getrandom()", os.getrandom))
        # `secrets` and `random.SystemRandom` read this name (`uuid.uuid4`
        # reads `os.urandom`).
        self._patch(random, "_urandom", self._refusing("a system random source (secrets, SystemRandom)", random._urandom))
        for name in _DRAWS:
            if hasattr(random, name):
                self._patch(random, name, self._refusing(f"random.{name}()", getattr(random, name), seedable=True))
        self._patch(random, "seed", self._seed(random.seed))
        return self

    def __exit__(self, *exc):
        self.active = False
        for module, name, original in reversed(self.saved):
            setattr(module, name, original)
        self.saved.clear()
        return False

    def _patch(self, module, name, value):
        self.saved.append((module, name, getattr(module, name)))
        setattr(module, name, value)

    def _seed(self, original):
        def seed(*args, **kwargs):
            value = args[0] if args else kwargs.get("a")
            if self.active and value is not None and self._from_worker_top_level():
                self.seeded = True
            return original(*args, **kwargs)

        return seed

    def _refusing(self, what, original, seedable=False):
        def refusing(*args, **kwargs):
            if self.active and not (seedable and self.seeded) and self._from_worker_top_level():
                raise RuntimeError(f"{what} was called by the worker's top-level code while the snapshot was taken.\n{HINT}")
            return original(*args, **kwargs)

        refusing.__wrapped__ = original
        return refusing

    def _from_worker_top_level(self) -> bool:
        # The innermost module body on the stack says who is running: a
        # package being imported (allowed: it may seed itself) or one of the
        # worker's own modules (refused).
        frame = sys._getframe(2)
        while frame is not None:
            if frame.f_code.co_name == "<module>":
                return self.is_worker_module(frame.f_globals.get("__name__", ""))
            frame = frame.f_back
        return False
