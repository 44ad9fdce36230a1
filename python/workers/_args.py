"""Arguments as Workers code passes them: a JS-style options object (a dict
or `JsObject`) and/or keyword arguments, in camelCase or snake_case."""

from pyodide.ffi import JsProxy


def plain(value):
    """A `JsProxy` as plain Python; anything else as it is."""
    return value.to_py() if isinstance(value, JsProxy) else value


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def options(options, kwargs: dict) -> dict:
    """Merge a JS-style options object with keyword arguments (None values
    left out), keys in camelCase."""
    merged = {}
    if options is not None:
        options = plain(options)
        if not isinstance(options, dict):
            raise TypeError(f"options must be a dict, got {type(options).__name__}")
        merged.update(options)
    merged.update({k: v for k, v in kwargs.items() if v is not None})
    return {camel(k): v for k, v in merged.items()}
