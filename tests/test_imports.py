"""The package's layers import one way only: SDK -> client -> wire; api -> core -> store and
backends; the runtime speaks only the wire; nothing imports the CLI; no cycles; and no import is
hidden inside a function unless it is listed below with its reason."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "firebox"

# What each layer may not import (module-level imports; `if TYPE_CHECKING:` imports are types only).
FORBIDDEN = {
    "firebox.wire": ["firebox.sdk", "firebox.client", "firebox.call_channel", "firebox.server",
                     "firebox.store", "firebox.backends", "firebox.images", "firebox.runtime",
                     "firebox.cli", "firebox.local", "firebox.config", "firebox._sync"],
    "firebox.client": ["firebox.sdk", "firebox.server", "firebox.store", "firebox.backends",
                       "firebox.images", "firebox.runtime", "firebox.cli", "firebox.local"],
    "firebox.call_channel": ["firebox.sdk", "firebox.server", "firebox.store", "firebox.backends",
                             "firebox.images", "firebox.runtime", "firebox.cli", "firebox.local"],
    "firebox.sdk": ["firebox.server", "firebox.store", "firebox.backends", "firebox.images",
                    "firebox.runtime", "firebox.cli", "firebox.local"],
    "firebox.runtime": ["firebox.sdk", "firebox.client", "firebox.call_channel", "firebox.server",
                        "firebox.store", "firebox.backends", "firebox.images", "firebox.cli",
                        "firebox.local"],
    "firebox.server.core": ["firebox.server.api", "firebox.server.main", "firebox.sdk",
                            "firebox.client", "firebox.call_channel", "firebox.cli",
                            "firebox.local", "firebox.runtime"],
    # Routes parse a request, call core and pack its answer: the store and the backends are core's.
    "firebox.server.api": ["firebox.server.main", "firebox.store", "firebox.backends",
                           "firebox.images", "firebox.sdk", "firebox.client",
                           "firebox.call_channel", "firebox.cli", "firebox.local",
                           "firebox.runtime"],
    # Foreign HTTP shapes onto core, as the routes are (they use the routes' request helpers).
    "firebox.server.gateways": ["firebox.server.main", "firebox.store", "firebox.backends",
                                "firebox.images", "firebox.sdk", "firebox.client",
                                "firebox.call_channel", "firebox.cli", "firebox.local",
                                "firebox.runtime", "firebox.formats"],
    # A foreign package becomes an App through the SDK alone.
    "firebox.formats": ["firebox.server", "firebox.store", "firebox.backends", "firebox.images",
                        "firebox.runtime", "firebox.cli", "firebox.local", "firebox.client"],
    "firebox.store": ["firebox.server", "firebox.sdk", "firebox.client", "firebox.backends",
                      "firebox.images", "firebox.runtime", "firebox.cli", "firebox.local"],
    # images/layers.py is the layers' format on disk, which backends read to make a container's
    # view; the builder, which writes them, uses the backends' walls.
    "firebox.backends": ["firebox.server", "firebox.sdk", "firebox.client",
                         "firebox.images.builder", "firebox.images.build_container", "firebox.cli",
                         "firebox.local"],
    "firebox.images": ["firebox.server", "firebox.sdk", "firebox.client", "firebox.cli",
                       "firebox.local"],
    "firebox.local": ["firebox.sdk", "firebox.cli"],
    "firebox": ["firebox.cli", "firebox.server", "firebox.local"],  # the package's __init__
}

# Imports inside a function, each with why it is there and not at the top of its module.
LAZY = {
    # The embedded server brings uvicorn, FastAPI and SQLAlchemy, which a client of a lasting
    # server (and every container) would otherwise load for nothing.
    ("firebox.sdk.runner", "firebox.local"),
    # The same for the CLI: only the commands that are a server (`firebox server`, `firebox token
    # create`) load it: 0.5 s more for every other command otherwise (74 ms -> 561 ms).
    ("firebox.cli.main", "firebox.server.main"),
    ("firebox.cli.main", "firebox.server.core.plane"),
    ("firebox.cli.main", "firebox.server.core.workspaces"),
    # rich's progress bars take 80 ms to import; only enable_output() needs them.
    ("firebox.output", "firebox.sdk.live"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> tuple[set[str], set[str]]:
    """(module-level imports, imports inside functions) of firebox modules by one module."""
    tree = ast.parse(path.read_text())
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    in_function: set[int] = set()
    types_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function |= {id(n) for n in ast.walk(node)}
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            types_only |= {id(n) for n in ast.walk(node)}
    top: set[str] = set()
    lazy: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in types_only:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # `from pkg import submodule` depends on the submodule, not on pkg's __init__.
            subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in MODULES]
            targets = subs if len(subs) == len(node.names) else [module, *subs]
        for target in targets:
            if target in MODULES and target != name:
                (lazy if id(node) in in_function else top).add(target)
    return top, lazy


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(module: str, layer: str) -> bool:
    return module == layer or module.startswith(layer + ".")


def _layer(module: str) -> str | None:
    if module == "firebox":
        return "firebox"
    layers = [layer for layer in FORBIDDEN if layer != "firebox" and _within(module, layer)]
    return max(layers, key=len) if layers else None


def test_each_layer_imports_only_what_lies_below_it():
    wrong = []
    for name, (top, _) in GRAPH.items():
        layer = _layer(name)
        if layer is None:
            continue
        for target in sorted(top):
            if any(_within(target, bad) for bad in FORBIDDEN[layer]):
                wrong.append(f"{name} imports {target}")
    assert wrong == []


def test_nothing_outside_the_cli_imports_it():
    wrong = [f"{name} imports {target}" for name, (top, lazy) in GRAPH.items()
             if not _within(name, "firebox.cli")
             for target in sorted(top | lazy) if _within(target, "firebox.cli")]
    assert wrong == []


def test_no_import_is_hidden_in_a_function_without_a_reason():
    hidden = [f"{name} imports {target} inside a function"
              for name, (_, lazy) in GRAPH.items() for target in sorted(lazy)
              if (name, target) not in LAZY]
    assert hidden == []


def test_the_modules_import_each_other_without_cycles():
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in GRAPH[node][0]:
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for name in GRAPH:
        if name not in order:
            visit(name)
    assert cycles == []


def test_no_module_is_much_over_five_hundred_lines():
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > 520}
    assert long == {}
