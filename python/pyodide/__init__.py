"""A Pyodide-compatible surface: the parts of `pyodide` that Workers code uses."""
