"""Patches applied to third-party modules right after they are imported.

A sandbox lacks what some libraries assume (`ssl`, threads, direct HTTP); the
modules that adapt them (`clients`, `threads`) register a function per
module name here, and it runs on the module once its code has executed, so
the worker imports and uses the library unchanged.
"""

import importlib.abc
import sys

_patches = {}  # module name -> function(module)


def register(patches: dict) -> None:
    """Patch each named module when it is imported (install the hook once)."""
    _patches.update(patches)
    if not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())


class _Loader(importlib.abc.Loader):
    def __init__(self, loader, patch):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        patch = _patches.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader, patch)
                return spec
        return None
