"""The worker's own modules: compiled once at build time, imported from memory.

At build time every `.py` file under the worker's source folder is compiled.
The code objects live in the snapshot, so a sandbox imports worker modules
without touching the filesystem or the parser, whether at first request or
lazily in a handler. Filenames in tracebacks are the project-relative paths
the user knows.

What the worker uses is found from its main module, by following its import
statements through the worker's own modules: a syntax error in any module
the main module can reach fails the build with file:line, and the packages
those modules import at module level must import. The packages the other
modules import (Django's settings and views, loaded by name) are imported
too, as Cloudflare does, but their failures are ignored: a vendored package's
pytest plugin may import what is not installed.
"""

import ast
import importlib
import importlib.abc
import importlib.util
import linecache
import os
import sys


class WorkerBuildError(Exception):
    """A problem in the worker's code found at build time; the message is user-facing."""


class WorkerModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, root: str, display_prefix: str):
        self.root = root
        self.display_prefix = display_prefix
        self.modules: dict[str, tuple] = {}  # name -> (code, is_package, display filename, tree)
        self.errors: dict[str, str] = {}  # name -> its syntax error, formatted

    # -- build time -------------------------------------------------------

    def compile_tree(self) -> None:
        """Compile every module of the tree; syntax errors are kept for `check`."""
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
            for filename in sorted(filenames):
                if not filename.endswith(".py"):
                    continue
                path = os.path.join(dirpath, filename)
                relative = os.path.relpath(path, self.root)
                display = os.path.join(self.display_prefix, relative) if self.display_prefix else relative
                parts = relative[: -len(".py")].split(os.sep)
                is_package = parts[-1] == "__init__"
                if is_package:
                    parts = parts[:-1]
                if not parts or not all(p.isidentifier() for p in parts):
                    continue
                with open(path, "rb") as f:
                    source = f.read()
                name = ".".join(parts)
                try:
                    tree = ast.parse(source, display)
                    code = compile(tree, display, "exec", dont_inherit=True)
                except SyntaxError as e:
                    self.errors[name] = _format_syntax_error(e)
                    continue
                text = source.decode("utf-8", errors="replace")
                linecache.cache[display] = (len(text), None, text.splitlines(True), display)
                self.modules[name] = (code, is_package, display, tree)

    def check(self, main: str) -> None:
        """Fail on syntax errors in the modules `main` can import (any import
        statement, lazy ones in functions included). A module nothing reaches
        keeps its error to itself: it is not served from memory, so importing
        it raises its SyntaxError then, as plain Python would."""
        if main not in self.modules and main not in self.errors:
            raise WorkerBuildError(f"the main module {main!r} was not found in {self.display_prefix or '.'}")
        reached = self._reach(main, module_level_only=False)
        errors = [self.errors[name] for name in sorted(reached) if name in self.errors]
        if errors:
            raise WorkerBuildError("\n".join(errors))

    def install(self) -> None:
        sys.meta_path.insert(0, self)

    def scan_imports(self, main: str):
        """Yield `(module, names, required, display, lineno)` for every
        module-level import of a package (not a worker module) by the
        worker's modules: those `main` imports at module level first.

        Imports directly at module level of `main` and the modules it imports
        are required: if one fails, so will the worker. Imports nested in
        `try`/`if` blocks are optional (fallbacks), and so is every import of
        a module `main` does not import at module level: one loaded by name
        (Django's settings and views) should be in the snapshot too, but a
        vendored package's test helpers may import what is not installed.
        """
        reached = self._reach(main, module_level_only=True)
        others = sorted(set(self.modules) - reached)
        for name in sorted(reached) + others:
            display = self.modules[name][2]
            for target, names, required, lineno in self._imports(name, module_level_only=True):
                if not self.is_worker_module(target):
                    yield target, names, required and name in reached, display, lineno

    def _reach(self, main: str, module_level_only: bool) -> set:
        """The worker modules `main` imports, directly or through each other
        (importing `a.b` runs package `a` first)."""
        reached, queue = set(), [main]
        while queue:
            name = queue.pop()
            if name in reached or (name not in self.modules and name not in self.errors):
                continue
            reached.add(name)
            parent = name.rpartition(".")[0]
            if parent:
                queue.append(parent)
            if name not in self.modules:
                continue  # a syntax error: nothing more to follow
            for target, names, _, _ in self._imports(name, module_level_only):
                queue.append(target)
                queue.extend(f"{target}.{attr}" for attr in names if attr != "*")
        return reached

    def _imports(self, name: str, module_level_only: bool):
        """`(target, names, required, lineno)` for the import statements of
        worker module `name`, relative imports made absolute."""
        _, is_package, _, tree = self.modules[name]
        package = name if is_package else name.rpartition(".")[0]
        if module_level_only:
            nodes = _module_level_imports(tree.body, True)
        else:
            nodes = ((n, False) for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))
        for node, required in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, (), required, node.lineno
            else:
                target = node.module or ""
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    target = f"{base}.{target}".strip(".") if base else target
                if target:
                    yield target, tuple(a.name for a in node.names), required, node.lineno

    def is_worker_module(self, name: str) -> bool:
        return name.partition(".")[0] in {n.partition(".")[0] for n in self.modules}

    # -- import protocol --------------------------------------------------

    def find_spec(self, fullname, path=None, target=None):
        entry = self.modules.get(fullname)
        if entry is None:
            return None
        spec = importlib.util.spec_from_loader(fullname, self, origin=entry[2], is_package=entry[1])
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code, is_package, display, _ = self.modules[module.__name__]
        module.__file__ = display
        if is_package:
            module.__path__ = []
        exec(code, module.__dict__)


def execute_imports(worker: WorkerModules, main: str) -> None:
    """Import what the worker imports (but not the worker itself): the snapshot's content."""
    for module, names, required, display, lineno in worker.scan_imports(main):
        try:
            imported = importlib.import_module(module)
            for attr in names:
                if attr != "*" and not hasattr(imported, attr):
                    try:
                        importlib.import_module(f"{module}.{attr}")
                    except ImportError:
                        pass  # a missing name fails when the worker runs, with its own traceback
        except Exception as e:
            if required:
                raise WorkerBuildError(f"{display}:{lineno}: importing {module!r} failed: {type(e).__name__}: {e}") from e


def _module_level_imports(body, required):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, required
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _module_level_imports(block, False)
        elif isinstance(node, ast.If):
            yield from _module_level_imports(node.body, False)
            yield from _module_level_imports(node.orelse, False)


def _format_syntax_error(e: SyntaxError) -> str:
    where = f"{e.filename}:{e.lineno}" + (f":{e.offset}" if e.offset else "")
    text = (e.text or "").rstrip("\n")
    lines = [f"{where}: {type(e).__name__}: {e.msg}"]
    if text:
        lines.append(f"    {text}")
        if e.offset:
            lines.append("    " + " " * (e.offset - 1) + "^")
    return "\n".join(lines)
