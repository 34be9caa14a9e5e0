"""The package layout: imports run one way, down the declared layers.

Every module under overlayctl/ is parsed with `ast` (nothing is imported), and
every import in it is read: module level, inside functions, relative, and
`from overlayctl import x`. Each module belongs to the layer of its package
(LAYERS below, the table of docs/architecture.md). The test fails on

- an import of a module in a higher layer (a lower number) than the importer's,
- any cycle between modules, found as strongly connected components,
- a module at the top of the package other than TOP_LEVEL, and
- an import in cli/ of anything but ALLOWED_FROM_CLI: the front end reaches
  the rest of the package only through engine/.

Imports under `if TYPE_CHECKING:` never run, so they cannot take part in an
import cycle; they are left out of the cycle search but still held to the
layer order (a type from a higher layer is still a dependency on it).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "overlayctl"

# Layer of each package, top (1) to bottom. A module may import its own layer
# or any layer below (a larger number), never one above.
LAYERS: dict[str, int] = {
    "overlayctl.__main__": 0,
    "overlayctl.cli": 1,
    # The second front end: the Engine API service, beside the CLI.
    "overlayctl.api": 1,
    "overlayctl.engine": 2,
    "overlayctl.supervise": 3,
    "overlayctl.builder": 3,
    "overlayctl.systemd": 3,
    "overlayctl.container": 4,
    # Pure data (Docker's Config and HostConfig), below everything that takes it.
    "overlayctl.container.model": 9,
    "overlayctl.oci": 5,
    "overlayctl.volumes": 5,
    "overlayctl.network": 5,
    "overlayctl.measure": 5,
    "overlayctl.store": 6,
    "overlayctl.layer": 7,
    "overlayctl.runtime": 8,
    "overlayctl.util": 9,
    "overlayctl.errors": 10,
    "overlayctl.paths": 10,
    # The package itself holds only __version__.
    "overlayctl": 10,
}

TOP_LEVEL = {"__init__.py", "__main__.py", "errors.py", "paths.py"}

# What cli/ may import: it parses, calls the engine and prints, so that a
# second front end (the Engine API) finds every verb in engine/ and
# re-implements nothing. A package name covers its modules. The store
# package itself (not its modules) is there for the Store type alone: the
# engine hands out the store (engine.open_store). The top package holds only
# __version__.
ALLOWED_FROM_CLI = {
    "overlayctl",
    "overlayctl.cli",
    "overlayctl.api",
    "overlayctl.engine",
    "overlayctl.util",
    "overlayctl.errors",
    "overlayctl.paths",
    "overlayctl.store",
}
# Entries of ALLOWED_FROM_CLI that cover the module alone, not its submodules,
# and those cli/ may import for the type checker alone (under TYPE_CHECKING).
EXACT_FROM_CLI = {"overlayctl", "overlayctl.store"}
TYPE_ONLY_FROM_CLI = {"overlayctl.store"}


@dataclass(frozen=True)
class Edge:
    """One import statement: who imports what, where, and whether it only
    runs for the type checker."""

    importer: str
    imported: str
    line: int
    type_only: bool


def module_name(path: Path) -> str:
    """The dotted module name of a file under PACKAGE."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """Every Python module of the package, by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of the longest LAYERS entry that contains module."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    raise AssertionError(f"{module} is in no declared layer: add its package to LAYERS")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a `from X import ...` names, relative or not."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, source: str, is_package: bool, known: set[str]) -> list[Edge]:
    """Every overlayctl module that module (its source text) imports, at any
    depth of its code."""
    tree = ast.parse(source, module)
    edges: list[Edge] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, True)
            for child in node.orelse:
                visit(child, type_only)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "overlayctl":
                    edges.append(Edge(module, alias.name, node.lineno, type_only))
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, is_package, node)
            if source.split(".")[0] == "overlayctl":
                for alias in node.names:
                    # `from pkg import mod` imports the module; `from mod import name` the module itself.
                    target = f"{source}.{alias.name}"
                    edges.append(Edge(module, target if target in known else source, node.lineno, type_only))
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(tree, False)
    return [e for e in edges if e.imported != module]


def import_graph() -> list[Edge]:
    """Every import edge between the package's modules."""
    modules = all_modules()
    known = set(modules)
    edges = []
    for name, path in modules.items():
        for edge in imports_of(name, path.read_text(), path.name == "__init__.py", known):
            assert edge.imported in known, f"{name}:{edge.line} imports {edge.imported}, which does not exist"
            edges.append(edge)
    return edges


def upward_imports(edges: list[Edge]) -> list[str]:
    """Each import of a higher layer, as 'importer:line (layer) -> imported (layer)'."""
    return [
        f"{e.importer}:{e.line} (layer {layer_of(e.importer)}) imports {e.imported} (layer {layer_of(e.imported)})"
        for e in edges
        if layer_of(e.imported) < layer_of(e.importer)
    ]


def cycles(edges: list[Edge]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's
    algorithm, iterative so deep chains do not hit the recursion limit)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if not e.type_only:
            graph.setdefault(e.importer, set()).add(e.imported)
            graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_top_level_holds_only_the_allowed_modules() -> None:
    extra = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in TOP_LEVEL)
    assert not extra, f"modules at the top of overlayctl/ belong in a package: {extra}"


def test_every_package_has_a_layer_and_a_docstring() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        name = module_name(init)
        layer_of(name)
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} needs a docstring saying what {name} is for"


def test_no_import_goes_up_a_layer() -> None:
    upward = upward_imports(import_graph())
    assert not upward, "imports against the layer order:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def allowed_from_cli(edge: Edge) -> bool:
    """Whether cli/ may make this import (ALLOWED_FROM_CLI)."""
    if edge.imported in ALLOWED_FROM_CLI:
        return edge.type_only or edge.imported not in TYPE_ONLY_FROM_CLI
    return any(edge.imported.startswith(f"{allowed}.") for allowed in ALLOWED_FROM_CLI - EXACT_FROM_CLI)


def cli_reaching_past_the_engine(edges: list[Edge]) -> list[str]:
    """Each import in cli/ (any depth, type-only ones too) of a module
    outside ALLOWED_FROM_CLI, as 'importer:line imports imported'."""
    return [
        f"{e.importer}:{e.line} imports {e.imported}"
        for e in edges
        if layer_of(e.importer) == LAYERS["overlayctl.cli"] and not allowed_from_cli(e)
    ]


def test_cli_imports_only_the_engine_and_what_lies_under_every_layer() -> None:
    found = cli_reaching_past_the_engine(import_graph())
    assert not found, (
        "cli/ parses, calls engine/ and prints; move this work into an engine module:\n" + "\n".join(found)
    )


def test_the_checks_see_what_they_must() -> None:
    """The reader and the searches catch a function-level, a relative, a
    package-form and a type-only import, and a cycle, on hand-made input."""
    source = (
        "from overlayctl import errors\n"
        "def f():\n"
        "    from overlayctl.engine import control\n"
        "    from ..cli import app\n"
        "TYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n"
        "    from overlayctl.oci import archive\n"
    )
    known = {"overlayctl.errors", "overlayctl.engine.control", "overlayctl.cli.app", "overlayctl.oci.archive"}
    edges = imports_of("overlayctl.store.probe", source, False, known)
    assert [(e.imported, e.type_only) for e in edges] == [
        ("overlayctl.errors", False),
        ("overlayctl.engine.control", False),
        ("overlayctl.cli.app", False),
        ("overlayctl.oci.archive", True),
    ]
    up = upward_imports(edges)
    assert [line.split(" imports ")[1].split()[0] for line in up] == [
        "overlayctl.engine.control",
        "overlayctl.cli.app",
        "overlayctl.oci.archive",
    ]
    loop = [
        Edge("overlayctl.util.a", "overlayctl.util.b", 1, False),
        Edge("overlayctl.util.b", "overlayctl.util.c", 1, False),
        Edge("overlayctl.util.c", "overlayctl.util.a", 1, False),
        Edge("overlayctl.util.c", "overlayctl.errors", 1, False),
        Edge("overlayctl.util.a", "overlayctl.util.d", 1, True),
        Edge("overlayctl.util.d", "overlayctl.util.a", 1, False),
    ]
    assert cycles(loop) == [["overlayctl.util.a", "overlayctl.util.b", "overlayctl.util.c"]]
    cli_source = (
        "from overlayctl.store import Store\n"
        "from overlayctl.engine import images\n"
        "def f():\n"
        "    from overlayctl.oci import pull\n"
        "TYPE_CHECKING = False\n"
        "if TYPE_CHECKING:\n"
        "    from overlayctl.store.containers import Container\n"
        "    from overlayctl.store import Store\n"
    )
    known = {"overlayctl.store", "overlayctl.engine.images", "overlayctl.oci.pull", "overlayctl.store.containers"}
    reaching = cli_reaching_past_the_engine(imports_of("overlayctl.cli.probe", cli_source, False, known))
    assert reaching == [
        "overlayctl.cli.probe:1 imports overlayctl.store",
        "overlayctl.cli.probe:4 imports overlayctl.oci.pull",
        "overlayctl.cli.probe:7 imports overlayctl.store.containers",
    ]
