"""Check the project's structure from the source (AST only; nothing is imported or run).

``python scripts/check_structure.py [--root DIR] [--allow FILE]`` prints one line per violation and
exits 1 if any is not allowed (0 otherwise). Rules:

- ``file-length``: a package file over MAX_FILE_LINES lines;
- ``function-length``: a function or method over MAX_FUNCTION_LINES lines (decorators excluded);
- ``file-cycle``: files of the project that import each other, directly or round a circle;
- ``package-cycle``: top-level packages that import each other;
- ``layer``: ``edge`` importing ``export``, ``training``, ``recipes`` or ``benchmarks``; ``training``
  importing ``export``/``recipes``; ``export`` importing ``recipes``;
- ``private-import``: ``from project.module import _name`` across modules;
- ``string-import``: a project module loaded by a string (``importlib.import_module``, ``__import__``,
  ``require("edge.x", ...)``), invisible to tools. Optional third-party packages may still be
  loaded through ``require``.

Imports inside functions count like any other: they are dependencies all the same.
"""

import argparse
import ast
import os
import sys

PACKAGES = ("edge", "export", "training", "recipes", "benchmarks")
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 80
# package -> packages it must never import (the layers: edge at the bottom, recipes on top).
FORBIDDEN = {
    "edge": ("export", "training", "recipes", "benchmarks"),
    "training": ("export", "recipes"),
    "export": ("recipes",),
}
STRING_LOADERS = ("import_module", "__import__", "require")


class Violation(object):
    def __init__(self, rule, where, detail):
        self.rule, self.where, self.detail = rule, where, detail

    @property
    def key(self):
        return "{} {}".format(self.rule, self.where)

    def __str__(self):
        return "{}: {}: {}".format(self.rule, self.where, self.detail)


def project_files(root):
    """Relative paths of every .py file of the project's packages, sorted."""
    found = []
    for package in PACKAGES:
        for folder, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
            found += [os.path.relpath(os.path.join(folder, f), root) for f in files if f.endswith(".py")]
    return sorted(found)


def module_name(path):
    parts = path[:-3].split(os.sep)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node, current, is_package):
    """The absolute module name of an ImportFrom (relative imports resolved against ``current``)."""
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(tree, current, modules, is_package=False):
    """[(imported project module, line, names)] of a parsed file; names are the ``from`` names."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, current, is_package)
            for alias in node.names:
                child = "{}.{}".format(base, alias.name)
                target = child if child in modules else base
                found.append((target, node.lineno, (alias.name,) if target == base else ()))
    return [(name, line, names) for name, line, names in found if name.split(".")[0] in PACKAGES]


def _owner(name, modules):
    """The project module a dotted import name lands in (the longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _length_violations(path, tree, lines):
    found = []
    if len(lines) > MAX_FILE_LINES:
        found.append(Violation("file-length", path, "{} lines > {}".format(len(lines), MAX_FILE_LINES)))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(Violation("function-length", "{}:{}".format(path, node.name),
                                       "{} lines > {}".format(length, MAX_FUNCTION_LINES)))
    return found


def _string_imports(path, tree):
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        target = node.args[0].value
        if name in STRING_LOADERS and isinstance(target, str) and target.split(".")[0] in PACKAGES:
            found.append(Violation("string-import", "{}:{}".format(path, target),
                                   "line {}: {}({!r}); use a plain import".format(node.lineno, name, target)))
    return found


def _import_violations(path, current, imports, modules):
    found = []
    package = current.split(".")[0]
    for name, line, names in imports:
        target = name.split(".")[0]
        if target in FORBIDDEN.get(package, ()):
            found.append(Violation("layer", "{}->{}".format(path, name),
                                   "line {}: {} must not import {}".format(line, package, target)))
        owner = _owner(name, modules)
        for imported in names:
            # ``_`` alone is gettext's translate function (edge.i18n), public by convention.
            private = imported.startswith("_") and imported != "_" and not imported.startswith("__")
            if private and owner != current:
                found.append(Violation("private-import", "{}:{}.{}".format(path, name, imported),
                                       "line {}: private name used across modules".format(line)))
    return found


def _cycles(graph):
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(result)


def check(root):
    """Every violation under ``root``, as Violation objects."""
    files = project_files(root)
    modules = {module_name(path): path for path in files}
    found, file_graph, package_graph = [], {}, {}
    for path in files:
        with open(os.path.join(root, path), encoding="utf-8") as handle:
            text = handle.read()
        tree = ast.parse(text, filename=path)
        current = module_name(path)
        found += _length_violations(path, tree, text.splitlines())
        found += _string_imports(path, tree)
        imports = imports_of(tree, current, modules, path.endswith("__init__.py"))
        found += _import_violations(path, current, imports, modules)
        for name, _line, _names in imports:
            owner = _owner(name, modules)
            if owner and owner != current:
                file_graph.setdefault(current, set()).add(owner)
                if owner.split(".")[0] != current.split(".")[0]:
                    package_graph.setdefault(current.split(".")[0], set()).add(owner.split(".")[0])
    # A package's __init__ imported by a submodule is not a circle of files worth reporting.
    file_graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in file_graph.items()}
    for cycle in _cycles(file_graph):
        found.append(Violation("file-cycle", " <-> ".join(cycle), "these files import each other"))
    for cycle in _cycles(package_graph):
        found.append(Violation("package-cycle", " <-> ".join(cycle), "these packages import each other"))
    return found


def read_allowed(path):
    """Allowed violation keys (``rule where``), one a line; ``#`` starts a comment."""
    if not path:
        return set()
    with open(path, encoding="utf-8") as handle:
        return {line.split("#", 1)[0].strip() for line in handle if line.split("#", 1)[0].strip()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python scripts/check_structure.py",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    parser.add_argument("--allow", help="file of allowed violation keys ('rule where'), one a line")
    args = parser.parse_args(argv)
    allowed = read_allowed(args.allow)
    violations = check(args.root)
    bad = [v for v in violations if v.key not in allowed]
    for violation in violations:
        print(("allowed " if violation.key in allowed else "") + str(violation))
    print("{} violation(s), {} allowed".format(len(violations), len(violations) - len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
