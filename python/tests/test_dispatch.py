"""How the dispatcher calls a worker's handlers (`_taipan.dispatch`)."""

import functools
import inspect
import unittest

from _taipan import dispatch


def _slow_count(func) -> int:
    """The answer `inspect.signature` gives, the reference for the fast path."""
    params = inspect.signature(func).parameters.values()
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 3
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def one(request): ...
def two(request, env): ...
def three(request, env, ctx): ...
async def three_async(request, env, ctx=None): ...
def positional_only(request, /, env): ...
def keyword_only(request, *, env=None, ctx=None): ...
def varargs(request, *rest): ...
def kwargs_only(request, **extra): ...


class Entry:
    def fetch(self, request): ...
    async def fetch_bare(self): ...

    def _tagged(self, tag, request): ...

    fetch_tagged = functools.partialmethod(_tagged, "tag")


def wrapping(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


class CallableObject:
    def __call__(self, request, env): ...


class PositionalCountTest(unittest.TestCase):
    def test_plain_functions_match_inspect(self):
        cases = [one, two, three, three_async, positional_only, keyword_only, varargs, kwargs_only, Entry.fetch, Entry.fetch_bare]
        for func in cases:
            with self.subTest(func=func.__name__):
                self.assertEqual(dispatch._positional_count(func), _slow_count(func))
        self.assertEqual([dispatch._positional_count(f) for f in (one, two, three, varargs, Entry.fetch)], [1, 2, 3, 3, 2])

    def test_other_callables_ask_inspect(self):
        # functools.wraps: the signature is the wrapped function's, not (*args).
        self.assertEqual(dispatch._positional_count(wrapping(two)), 2)
        self.assertEqual(dispatch._positional_count(functools.partial(three, "request")), 2)
        self.assertEqual(dispatch._positional_count(CallableObject()), 2)
        self.assertEqual(dispatch._positional_count(Entry().fetch), 1)
        # A plain function underneath, but inspect knows the bound "tag".
        self.assertEqual(dispatch._positional_count(Entry.fetch_tagged), 2)

        def signed(*args): ...

        signed.__signature__ = inspect.signature(one)
        self.assertEqual(dispatch._positional_count(signed), 1)


if __name__ == "__main__":
    unittest.main()
