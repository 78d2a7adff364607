"""The import graph of ``preflight/``: no cycle between modules, no upward import.

The graph is read from the source (``ast``), nothing is imported. A node is a module
(``preflight/decide/rule.py`` is ``preflight.decide.rule``; a package is its ``__init__``). An
edge is every ``import preflight...`` / ``from preflight... import`` / relative import anywhere in
the module: at module level, inside functions (a deferred import only hides a cycle from the
interpreter, the two modules still depend on each other) and under ``if TYPE_CHECKING:`` (a type
is part of a module's interface). ``from a.b import c`` is an edge to ``a.b.c`` when that is a
module, else to ``a.b``; the implicit import of parent packages is not an edge. Registries that
name a plug-in module as a string (``"preflight.models.timm_adapter:..."``) are not edges: that
indirection is their point.

Upward: ``preflight/`` is the core; ``pipeline/``, ``assets/`` and ``resources/`` build on it.
Any import of them from ``preflight/`` fails, and so does any string in ``preflight/`` that
names one of their modules (``importlib.import_module("pipeline.demo")``, a dispatch table).

The graph has no cycle and nothing in ``preflight/`` points upward (issue #18 removed the last
ones), so both allow-lists below are empty: a new edge that closes a cycle fails, and so does a new
upward import or string. Should debt ever have to be accepted, it is allow-listed there edge by
edge (the graph minus those edges must still be acyclic), never module by module.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPWARD = ("pipeline", "assets", "resources")
UPWARD_STRING = re.compile(rf"^(?:{'|'.join(UPWARD)})(?:\.[A-Za-z_]\w*)+(?::\w+)?$")

#: Known cycles, each broken here at one edge: none (the ones issue #18 found are fixed).
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()

#: Known upward references: none (the ``preflight`` console script is ``pipeline.cli``, above the
#: core, which composes the core's sub-commands with the pipeline's).
ALLOWED_UPWARD: set[tuple[str, str]] = set()


def _modules(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted((root / "preflight").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _imported_names(module: str, is_pkg: bool, tree: ast.AST) -> list[tuple[str, str]]:
    """Every import in ``tree`` as ``(name, fallback)``: the dotted name imported (relative
    imports resolved; ``from X import n`` gives ``X.n``) and ``X`` for when ``X.n`` is no module."""
    package = module if is_pkg else module.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(a.name, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names += [(f"{source}.{a.name}", source) for a in node.names]
    return names


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """(module -> preflight modules it imports, {(module, upward name)})."""
    modules = _modules(root)

    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    upward: set[tuple[str, str]] = set()
    for module, (path, is_pkg) in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        deps = set()
        for name, fallback in _imported_names(module, is_pkg, tree):
            top = fallback.split(".")[0]
            if top == "preflight":
                deps.add(name if name in modules else owner(fallback))
            elif top in UPWARD:
                upward.add((module, fallback))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and UPWARD_STRING.match(node.value)):
                upward.add((module, node.value.split(":")[0]))
        edges[module] = deps - {module, None}
    return edges, upward


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as ``[a, b, ..., a]``, or None when it is acyclic."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_preflight_modules():
    edges, _ = import_graph()
    pruned = {m: {d for d in deps if (m, d) not in ALLOWED_CYCLE_EDGES}
              for m, deps in edges.items()}
    cycle = find_cycle(pruned)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_allow_list_names_only_edges_that_exist():
    """A fixed cycle leaves a stale entry: remove it so it cannot hide a new one."""
    edges, upward = import_graph()
    stale = {(a, b) for a, b in ALLOWED_CYCLE_EDGES if b not in edges.get(a, ())}
    assert not stale, f"allow-listed edges no longer imported: {sorted(stale)}"
    assert not ALLOWED_UPWARD - upward, f"stale upward entries: {sorted(ALLOWED_UPWARD - upward)}"


def test_preflight_never_imports_pipeline_assets_or_resources():
    _, upward = import_graph()
    new = upward - ALLOWED_UPWARD
    assert not new, f"upward imports from preflight/: {sorted(new)}"


def test_the_checker_sees_cycles_function_level_imports_and_upward_strings(tmp_path):
    pkg = tmp_path / "preflight"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from preflight.sub.b import f\n")
    (pkg / "sub" / "b.py").write_text(
        "import importlib\n\ndef f():\n    from . import a\n"
        "    return importlib.import_module('pipeline.demo')\n")
    (pkg / "c.py").write_text("from preflight.sub import a\nimport assets.x\n")
    edges, upward = import_graph(tmp_path)
    assert edges["preflight.sub.a"] == {"preflight.sub.b"}
    assert edges["preflight.sub.b"] == {"preflight.sub.a"}  # relative, inside a function
    assert edges["preflight.c"] == {"preflight.sub.a"}
    assert find_cycle(edges) == ["preflight.sub.a", "preflight.sub.b", "preflight.sub.a"]
    assert upward == {("preflight.sub.b", "pipeline.demo"), ("preflight.c", "assets.x")}


def test_reading_a_sample_does_not_depend_on_the_generator():
    """``preflight.data`` (a user's sample) never imports ``preflight.synth`` (the demo's world):
    the generator builds on the readers' contracts, not the other way round."""
    edges, _ = import_graph()
    into_generator = sorted((m, d) for m, deps in edges.items() for d in deps
                            if m.startswith("preflight.data") and d.startswith("preflight.synth"))
    assert not into_generator, f"preflight.data imports the generator: {into_generator}"
