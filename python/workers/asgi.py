"""`workers.asgi`: the same as the top-level `asgi` module."""

from asgi import fetch

__all__ = ["fetch"]
