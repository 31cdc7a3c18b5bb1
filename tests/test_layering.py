"""The package's imports run one way: read with ``ast`` from the source, no third-party tool.

* no library module imports :mod:`openmm_bg.commands` (only ``cli.py`` and ``commands/`` may);
* no module imports a module of a higher layer (:data:`LAYERS`);
* there are no import cycles between modules.

Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "openmm_bg"

#: lowest first; a module may import from its own layer or the ones below
LAYERS = [
    {"units", "_validation", "topology", "_lazy"},
    {"flows", "energies", "analysis", "reference"},
    {"coordinates", "molecules"},
    {"generator", "simulation"},
    {"training", "sampling", "moves"},
    {"recipes"},
    {"commands", "cli"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The openmm_bg modules that ``path`` imports (a name imported from a package counts as its module if it is one)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("openmm_bg"):
                continue
            submodules = {f"{target}.{alias.name}" for alias in node.names} & modules
            found |= submodules or {target}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("openmm_bg")}
    return {target for target in found if target != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: _imports(path, set(paths)) for name, path in paths.items()}


def _area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_area_has_a_layer(graph):
    areas = {_area(m) for m in graph} - {None, "__init__"}
    assert areas <= set(RANK), f"modules outside every layer: {sorted(areas - set(RANK))}"


def test_library_does_not_import_the_command_line(graph):
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _area(module) not in ("commands", "cli")
        for target in targets
        if _area(target) in ("commands", "cli")
    )
    assert not offenders, "\n".join(offenders)


def test_imports_go_down_the_layers(graph):
    offenders = sorted(
        f"{module} (layer {RANK[_area(module)]}) imports {target} (layer {RANK[_area(target)]})"
        for module, targets in graph.items()
        if _area(module) in RANK
        for target in targets
        if _area(target) in RANK and RANK[_area(target)] > RANK[_area(module)]
    )
    assert not offenders, "\n".join(offenders)


def test_no_import_cycles(graph):
    # Tarjan's strongly connected components; any component of more than one module is a cycle
    index, low, on_stack, stack, cycles = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_a_cycle_and_an_upward_import(tmp_path):
    """The checks above can fail: a made-up package with both faults is caught."""
    global PACKAGE
    fake = tmp_path / "openmm_bg"
    (fake / "flows").mkdir(parents=True)
    (fake / "commands").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "flows" / "__init__.py").write_text("from ..commands import run\n")
    (fake / "commands" / "__init__.py").write_text("from ..flows import layer\n")
    saved, PACKAGE = PACKAGE, fake
    try:
        paths = {_module_name(p): p for p in fake.rglob("*.py")}
        fake_graph = {name: _imports(path, set(paths)) for name, path in paths.items()}
    finally:
        PACKAGE = saved
    with pytest.raises(AssertionError, match="openmm_bg.flows imports openmm_bg.commands"):
        test_library_does_not_import_the_command_line(fake_graph)
    with pytest.raises(AssertionError, match="layer 6"):
        test_imports_go_down_the_layers(fake_graph)
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles(fake_graph)
