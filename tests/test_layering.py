"""The layers import one way only: qkd <- network <- qfl."""

import subprocess
import sys

import pytest

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
