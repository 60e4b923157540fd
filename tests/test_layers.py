"""The package's architecture holds: each layer imports only the layers below it, and the reference is plain NumPy.

Layers, bottom up (ssd_np/__init__.py): the leaf modules (`images`, `coco_labels`, `atomic`, `draw`), `reference`,
`weights`, `engine`, the API (`model`, `detector`), `verify`, `report`, `cli`. Read from the source (imports
anywhere in a module, also inside functions), so a lazy import cannot hide an upward dependency.
"""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ssd_np"
LAYERS = {  # part of the package -> its rank; a module may import only parts of lower or equal rank
    "images": 0, "coco_labels": 0, "atomic": 0, "draw": 0, "jit": 0,
    "reference": 1, "weights": 1,
    "engine": 2,
    "model": 3, "detector": 3,
    "verify": 4, "report": 4,
    "cli": 5,
}


def part(module: str) -> str:
    """`ssd_np.engine.conv` -> `engine`; `ssd_np.detector` -> `detector`."""
    return module.split(".")[1]


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("ssd_np.")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ssd_np"):
            # `from ssd_np.engine import conv` imports the module ssd_np.engine.conv (and the package)
            found |= {node.module} - {"ssd_np"} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def modules() -> list[tuple[str, Path]]:
    """(dotted name, path) of every module below the top package (a subpackage by its own name)."""
    found = []
    for p in sorted(PACKAGE.rglob("*.py")):
        parts = p.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            found.append((".".join(("ssd_np", *parts)), p))
    return found


def test_every_part_has_a_layer():
    parts = {part(name) for name, _ in modules()}
    assert parts <= set(LAYERS), f"parts without a layer: {parts - set(LAYERS)}"


@pytest.mark.parametrize("name, path", modules(), ids=[n for n, _ in modules()])
def test_imports_go_down(name, path):
    upward = [m for m in imports(path) if m.count(".") and LAYERS[part(m)] > LAYERS[part(name)]]
    assert not upward, f"{name} imports the upper layer(s) {upward}"


def test_no_import_cycles_between_modules():
    known = dict(modules())
    graph = {name: {m for m in imports(path) if m in known and m != name} for name, path in known.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(stack + [node, nxt])}"
            if nxt not in state:
                visit(nxt, stack + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_reference_needs_no_numba():
    code = ("import sys, ssd_np.reference.model, ssd_np.reference.tf_math; "
            "sys.exit('numba' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0, "importing ssd_np.reference imports numba"


def test_trace_runs_without_the_jit(tmp_path, standin_h5):
    """`ssd-np trace` is the reference's job: with numba's compiler switched off it still runs (in seconds: the
    weights' CRC32C falls back to NumPy) and writes every tensor, without importing the engine."""
    out = tmp_path / "trace.npz"
    code = ("import sys; from ssd_np.cli.main import main; status = main(sys.argv[1:]); "
            "sys.exit(status or any(m.startswith('ssd_np.engine') for m in sys.modules))")
    image = Path(__file__).parent / "data" / "images" / "000000037777.jpg"
    result = subprocess.run([sys.executable, "-c", code, "trace", str(image), "--weights", str(standin_h5), "--out",
                             str(out)], env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out}: 432 tensors")
