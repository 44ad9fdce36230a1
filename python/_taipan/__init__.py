"""Taipan's guest runtime: what runs inside a sandbox around the worker's code.

Only `taipan_bootstrap` and the host depend on this package; worker code uses
the public `workers`, `js` and `pyodide` modules.
"""
