"""Architecture checks: each layer imports only lower layers, packages and modules form no cycles.

Layers (see docs/architecture.md): 0 ``_errors``/``_internal``/``_version``,
1 ``model``, 2 ``query``, 3 ``store`` (and ``services``), 4 ``definition``,
5 ``analysis``, 6 ``execution``, 7 ``cli``.  ``metalab/__init__.py`` (the lazy public API) and ``metalab.testing``
may import anything; nothing in the library may import ``metalab.testing``.
Imports inside functions count everywhere.  Imports under ``if TYPE_CHECKING:``
are ignored by the layer and package checks, and count for module cycles (a
type-only import is still a dependency of the reader of the code).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "metalab"

LAYERS: dict[str, int] = {
    "_errors": 0,
    "_internal": 0,
    "_version": 0,
    "model": 1,
    "query": 2,  # run documents, the filter language, liveness; never imports store
    "services": 3,  # local service helpers (PostgreSQL server); imports layer 0 only
    "store": 3,
    "definition": 4,
    "analysis": 5,
    "execution": 6,
    "cli": 7,
    "ui": 7,  # the web UI (interfaces, beside cli; cli imports it lazily, never the reverse)
}
TESTING_LAYER = 99  # importing metalab.testing from the library is never allowed
EXEMPT = {"metalab", "metalab.testing"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def top_package(module: str) -> str | None:
    """``metalab.store._file`` -> ``store``; ``metalab`` -> ``None``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "metalab" else None


def is_exempt(module: str) -> bool:
    return module in EXEMPT or module.startswith("metalab.testing.")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _root_lazy_table() -> dict[str, str]:
    import metalab

    return dict(metalab._LAZY)


def imported_modules(
    source: str, module: str, is_package: bool, type_only: bool = False
) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every metalab import; TYPE_CHECKING blocks only if ``type_only``.

    ``from pkg import name`` gives ``pkg``, and with ``type_only`` also
    ``pkg.name`` (which :func:`module_graph` keeps when it is a module).
    """
    tree = ast.parse(source)
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test) and not type_only:
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            for alias in node.names:
                found.append((node.lineno, alias.name))

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "metalab":
                # `from metalab import X`: X is a sub-package or a lazily exported name
                lazy = _root_lazy_table()
                for alias in node.names:
                    if alias.name in lazy:
                        found.append((node.lineno, lazy[alias.name].partition(":")[0]))
                    elif alias.name == "__version__":
                        found.append((node.lineno, "metalab._version"))
                    else:
                        found.append((node.lineno, f"metalab.{alias.name}"))
            else:
                found.append((node.lineno, target))
                if type_only:
                    found.extend((node.lineno, f"{target}.{alias.name}") for alias in node.names)

    Visitor().visit(tree)
    for line, name in found:
        if name == "metalab" or name.startswith("metalab."):
            yield line, name


def layer_of(module: str) -> int | None:
    top = top_package(module)
    if top is None:
        return 0  # bare `import metalab` only loads metalab._version eagerly
    if top == "testing":
        return TESTING_LAYER
    return LAYERS.get(top)


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """Layer violations of one module's source (empty list if it is clean)."""
    if is_exempt(module):
        return []
    own = layer_of(module)
    if own is None:
        return [f"{module}: package {top_package(module)!r} has no layer; add it to LAYERS"]
    out = []
    for line, target in imported_modules(source, module, is_package):
        theirs = layer_of(target)
        if theirs is None:
            out.append(f"{module}:{line} imports {target}, which has no layer")
        elif theirs > own:
            out.append(f"{module}:{line} (layer {own}) imports {target} (layer {theirs})")
    return out


def library_modules() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    modules = [module_name(p) for p in library_modules()]
    assert "metalab._errors" in modules and "metalab.model" in modules
    unknown = sorted(
        m for m in modules if not is_exempt(m) and layer_of(m) in (None, TESTING_LAYER)
    )
    assert unknown == [], f"modules outside every layer: {unknown}"


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: module_name(p))
def test_module_imports_only_lower_layers(path: Path) -> None:
    problems = violations(
        path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
    )
    assert problems == [], "\n".join(problems)


def test_no_import_cycles_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for path in library_modules():
        module = module_name(path)
        src_top = top_package(module)
        if src_top is None:
            continue
        for _, target in imported_modules(
            path.read_text(encoding="utf-8"), module, path.name == "__init__.py"
        ):
            dst_top = top_package(target)
            if dst_top is not None and dst_top != src_top:
                graph.setdefault(src_top, set()).add(dst_top)
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle or [])


def private_store_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of a private module of ``metalab.store`` (``metalab.store._x...``) by a
    module outside ``metalab.store`` (type-only imports included)."""
    if module == "metalab.store" or module.startswith("metalab.store."):
        return []
    found = {
        line: target
        for line, target in imported_modules(source, module, is_package, type_only=True)
        if target.startswith("metalab.store._")
    }
    return [
        f"{module}:{line} imports {target}; import it from metalab.store (or metalab.query)"
        for line, target in sorted(found.items())
    ]


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: module_name(p))
def test_nothing_outside_store_imports_a_private_store_module(path: Path) -> None:
    problems = private_store_imports(
        path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
    )
    assert problems == [], "\n".join(problems)


#: module cycles accepted for now (none: keep it that way).  A new cycle fails the
#: test; so does an entry here that is no longer a cycle (remove it).
KNOWN_MODULE_CYCLES: list[frozenset[str]] = [
]


def module_graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports (TYPE_CHECKING and function-level imports included)."""
    paths = {module_name(p): p for p in library_modules()}
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        if is_exempt(module):
            continue
        for _, target in imported_modules(
            path.read_text(encoding="utf-8"), module, path.name == "__init__.py", type_only=True
        ):
            if target in paths and target != module and not is_exempt(target):
                graph.setdefault(module, set()).add(target)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The cycles of ``graph``: its strongly connected components of two or more nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(node: str) -> None:
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
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycles_between_modules() -> None:
    cycles = strongly_connected(module_graph())
    new = [sorted(c) for c in cycles if not any(c <= known for known in KNOWN_MODULE_CYCLES)]
    assert new == [], f"import cycles between modules: {new}"
    gone = [sorted(k) for k in KNOWN_MODULE_CYCLES if not any(c <= k for c in cycles)]
    assert gone == [], f"no longer cycles, remove them from KNOWN_MODULE_CYCLES: {gone}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None``."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


# ---- the checker itself must catch what it claims to catch ----------------------------


def test_checker_flags_upward_imports_at_any_depth() -> None:
    src = (
        "from metalab.model import RunRecord\n"
        "def f():\n"
        "    from metalab.execution import run\n"
        "    import metalab.analysis._results\n"
    )
    problems = violations(src, "metalab.store._file")
    assert len(problems) == 2
    assert "metalab.execution" in problems[0] and "metalab.analysis._results" in problems[1]


def test_checker_ignores_type_checking_but_not_its_else_branch() -> None:
    src = (
        "from typing import TYPE_CHECKING\n"
        "import typing\n"
        "if TYPE_CHECKING:\n"
        "    from metalab.analysis import Results\n"
        "else:\n"
        "    from metalab.cli import main\n"
        "if typing.TYPE_CHECKING:\n"
        "    from metalab.execution import run\n"
    )
    problems = violations(src, "metalab.model._x")
    assert len(problems) == 1 and "metalab.cli" in problems[0]


def test_checker_resolves_relative_and_root_imports() -> None:
    assert violations("from ..execution import run\n", "metalab.store._file")
    assert violations("from .. import execution\n", "metalab.store", is_package=True)
    assert violations("from metalab import Results\n", "metalab.definition._exp")
    assert violations("from metalab.testing import x\n", "metalab.execution._run")
    assert not violations("from . import _base\nfrom .._errors import StoreError\n",
                          "metalab.store._file")
    assert not violations("from metalab import StoreError\n", "metalab.model._record")
    assert not violations("from metalab.execution import run\n", "metalab.testing._suite")


def test_checker_flags_private_store_imports_outside_store() -> None:
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from metalab.store._base import Store\n"
        "def f():\n"
        "    from metalab.store._index import _catalog\n"
        "from metalab.store import make_store\n"
    )
    assert len(private_store_imports(src, "metalab.analysis._x")) == 2
    assert private_store_imports(src, "metalab.store._file") == []
    assert private_store_imports("from . import _base\n", "metalab.store", is_package=True) == []


def test_find_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_strongly_connected_finds_every_cycle_and_only_cycles() -> None:
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(map(sorted, strongly_connected(graph))) == [["a", "b"], ["c", "d", "e"]]
    assert strongly_connected({"a": {"b"}, "b": {"c"}}) == []


def test_module_graph_sees_type_only_and_function_level_imports() -> None:
    src = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from metalab.analysis._results import Results\n"
        "def f():\n"
        "    from metalab.store import _base\n"
    )
    found = {t for _, t in imported_modules(src, "metalab.analysis._x", False, type_only=True)}
    assert {"metalab.analysis._results", "metalab.store._base"} <= found
    plain = {t for _, t in imported_modules(src, "metalab.analysis._x", False)}
    assert "metalab.analysis._results" not in plain and "metalab.store" in plain


#: the size limits of the house (issue "One rule, one place"): a module a reader can hold
#: in mind, a function that fits on a screen or two
MAX_MODULE_LINES = 1000
MAX_FUNCTION_LINES = 80


def oversized(source: str, name: str) -> list[str]:
    """What of ``source`` breaks the size limits, as readable lines."""
    out = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        out.append(f"{name}: {lines} lines (limit {MAX_MODULE_LINES}); split it along a seam")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out.append(f"{name}:{node.lineno} {node.name}() is {length} lines "
                           f"(limit {MAX_FUNCTION_LINES})")
    return out


def test_no_module_or_function_over_the_size_limits() -> None:
    problems = [
        problem
        for path in library_modules()
        for problem in oversized(path.read_text(encoding="utf-8"), module_name(path))
    ]
    assert problems == [], "\n".join(problems)


def test_size_check_counts_nested_functions_and_module_lines() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    src = f"def outer():\n    def inner():\n{body.replace('    ', '        ')}    return 1\n"
    found = oversized(src, "m")
    assert [p.split(" ")[1] for p in found] == ["outer()", "inner()"]
    assert oversized("x = 1\n" * (MAX_MODULE_LINES + 1), "m") == [
        f"m: {MAX_MODULE_LINES + 1} lines (limit {MAX_MODULE_LINES}); split it along a seam"
    ]
    assert oversized("def f():\n    return 1\n", "m") == []
