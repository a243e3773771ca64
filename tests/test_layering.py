"""The layers import one way only: qkd <- network <- qfl; no import cycles anywhere in them."""

import ast
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "qkd": ["simpy", "networkx", "torch", "qiskit", "network", "qfl"],
    "network": ["torch", "qfl"],
}


def _loaded_after_import(package: str) -> set[str]:
    code = f"import sys, {package}, pkgutil, importlib\n"
    code += f"for m in pkgutil.walk_packages({package}.__path__, '{package}.'):\n"
    code += "    name = m.name\n"
    code += "    if name == 'qkd.circuits':\n"
    code += "        continue\n"
    code += "    importlib.import_module(name)\n"
    code += "print('\\n'.join(sorted({k.split('.')[0] for k in sys.modules})))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_does_not_import_upper_layers(package: str) -> None:
    loaded = _loaded_after_import(package)
    bad = sorted(set(FORBIDDEN[package]) & loaded)
    assert not bad, f"importing every module of {package} loaded {bad}"


def test_importing_qfl_is_cheap() -> None:
    loaded = _loaded_after_import("qkd")  # sanity: the probe itself works
    assert "qkd" in loaded
    out = subprocess.run(
        [sys.executable, "-c", "import sys, qfl; print('torch' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "False"


LAYERS = ("qkd", "network", "qfl")


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(*package_dirs: Path) -> nx.DiGraph:
    """Import graph of the modules of the given packages and their sub-packages, found
    statically (``ast``): an edge ``a -> b`` where a statement of ``a`` imports ``b``.

    Every import statement counts, wherever it is: inside functions (imports on demand) and
    inside ``if TYPE_CHECKING:`` blocks too, since a module that names another only for its
    types still depends on it (the old hub cycle hid there). ``import a.b.c`` and
    ``from a.b import c`` name ``a.b.c`` if it is a module (else the nearest package above
    it); relative imports (``from . import x``, ``from ..y import z``) are resolved. That
    importing ``a.b.c`` first runs ``a/b/__init__.py`` is not an edge (a package's
    ``__init__`` re-exporting its modules would otherwise be in a cycle with each of them).
    """
    paths: dict[str, Path] = {}
    for package_dir in package_dirs:
        for p in sorted(package_dir.rglob("*.py")):
            paths[_module_name(p, package_dir.parent)] = p

    def known(target: str) -> str | None:
        while target and target not in paths:
            target = target.rpartition(".")[0]
        return target or None

    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for name, path in paths.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from .x import y, from . import x
                    here = name.split(".") if path.stem == "__init__" else name.split(".")[:-1]
                    up = here[: len(here) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                targets = [
                    f"{base}.{a.name}" if f"{base}.{a.name}" in paths else base for a in node.names
                ]
            else:
                continue
            found = {known(t) for t in targets}
            graph.add_edges_from((name, t) for t in found if t is not None and t != name)
    return graph


def _cycles(graph: nx.DiGraph) -> list[str]:
    """Every elementary cycle as ``a -> b -> a``, each starting at its first module by name."""
    out = []
    for c in nx.simple_cycles(graph):
        i = c.index(min(c))
        c = c[i:] + c[:i]
        out.append(" -> ".join([*c, c[0]]))
    return sorted(out)


def test_no_import_cycles_anywhere() -> None:
    """No module of qkd/, network/ or qfl/ (sub-packages included) imports itself through
    others: the modules of the three layers together form a DAG."""
    graph = _import_graph(*(ROOT / layer for layer in LAYERS))
    # sanity: the parser sees nested packages, relative and on-demand imports
    assert graph.number_of_nodes() > 100
    for edge in [
        ("qfl.cosim.run", "qfl.cosim.outputs"),
        ("qfl.scenario", "qfl.scenario.document"),
        ("qfl.cosim.outputs", "qfl.cosim.plots"),  # on demand, inside a method
        ("network", "network.faults"),
        ("qfl.cosim.netbuild", "qkd.params"),
    ]:
        assert graph.has_edge(*edge), edge
    cycles = _cycles(graph)
    assert not cycles, f"{len(cycles)} import cycle(s): " + "; ".join(cycles[:10])


def test_import_graph_sees_type_checking_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\nA = 1\n"
    )
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    (pkg / "sub" / "__init__.py").write_text("from .c import C\n")
    (pkg / "sub" / "c.py").write_text("from ..a import A\nimport pkg.sub.d\nC = A\n")
    (pkg / "sub" / "d.py").write_text("from pkg.sub import c\nimport os.path\n")
    graph = _import_graph(pkg)
    assert set(graph.edges) == {
        ("pkg", "pkg.a"),
        ("pkg.a", "pkg.b"),
        ("pkg.b", "pkg.a"),
        ("pkg.sub", "pkg.sub.c"),
        ("pkg.sub.c", "pkg.a"),
        ("pkg.sub.c", "pkg.sub.d"),
        ("pkg.sub.d", "pkg.sub.c"),
    }
    assert _cycles(graph) == ["pkg.a -> pkg.b -> pkg.a", "pkg.sub.c -> pkg.sub.d -> pkg.sub.c"]


def _imported_modules(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names (anywhere in the file)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


# Inside qfl: the learning side never reaches into the co-simulation or the CLI; the
# algorithms talk to a Transport, the co-simulation drives them.
LOWER_QFL = ("algorithms", "models", "engine", "losses", "data")


@pytest.mark.parametrize("sub", LOWER_QFL)
def test_learning_side_never_imports_cosim_or_commands(sub: str) -> None:
    files = sorted((ROOT / "qfl" / sub).rglob("*.py"))
    assert files
    bad = {
        f"{f.relative_to(ROOT)} imports {m}"
        for f in files
        for m in _imported_modules(f)
        if m.startswith(("qfl.cosim", "qfl.commands", "qfl.cli"))
    }
    assert not bad, sorted(bad)
