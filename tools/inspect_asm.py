"""Does numba's machine code for ssd_np's kernels use AVX-512 / AVX2 vectors and FMA? (any venv with ssd_np's deps)

    python3 tools/inspect_asm.py [--weights FILE.h5] [--dump DIR]

Runs ssd_np's forward pass (`model.tf_outputs` on a 300x300 and a 640x480 image, `model.detection_out`) so that
every numba kernel it uses is compiled for the types it really gets, then reads each kernel's assembly
(`dispatcher.inspect_asm(signature)`, the parallel region's `__gufunc__` body included) and counts instructions:

- packed FMA (`vfmadd/vfmsub/vfnmadd/vfnmsub...ps/pd`) by register width: zmm (AVX-512, 16 floats),
  ymm (AVX2/AVX-512VL, 8 floats), xmm (4 floats); scalar FMA (`...ss/sd`);
- packed float multiplies and adds without FMA (`vmulps`, `vaddps`, ...) by width, and scalar ones (`vmulss`, ...);
- how many instructions name a zmm / ymm register at all;
- spills: in each innermost loop with FMA instructions (the register tiles), the FMAs and the vector loads and
  stores on the stack per iteration (`fma_loops`). Set NUMBA_CPU_NAME / NUMBA_CPU_FEATURES to inspect the code for
  another CPU (`NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES= python3 tools/inspect_asm.py`: AVX2).

Numba does not keep assembly for functions loaded from its cache, so this script compiles every kernel afresh
into a private cache directory (NUMBA_CACHE_DIR is pointed at a temporary directory before numba is imported;
the repository's cache is not touched). Compiling takes a minute or so. Output: a Markdown table on stdout;
`--dump DIR` also writes each kernel's full assembly to DIR.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FMA = re.compile(r"^\s*(vf(?:n)?m(?:add|sub|addsub|subadd)\d{3})(ps|pd|ss|sd)\s+(.*)$")
ARITH = re.compile(r"^\s*(vmul|vadd|vsub|vdiv|vmax|vmin)(ps|pd|ss|sd)\s+(.*)$")
INSTRUCTION = re.compile(r"^\s+[a-z]")


def width(operands: str) -> str:
    for reg in ("zmm", "ymm", "xmm"):
        if f"%{reg}" in operands:
            return reg
    return "mem"


def count(asm: str) -> dict[str, int]:
    """Instruction counts of one kernel's assembly (AT&T syntax, as LLVM prints it)."""
    c = {k: 0 for k in ("fma_zmm", "fma_ymm", "fma_xmm", "fma_scalar", "arith_zmm", "arith_ymm", "arith_xmm",
                        "arith_scalar", "zmm", "ymm", "instructions")}
    for line in asm.splitlines():
        if not INSTRUCTION.match(line) or line.lstrip().startswith("."):
            continue
        c["instructions"] += 1
        c["zmm"] += "%zmm" in line
        c["ymm"] += "%ymm" in line
        for pattern, prefix in ((FMA, "fma"), (ARITH, "arith")):
            m = pattern.match(line)
            if m:
                kind = m.group(2)
                c[f"{prefix}_scalar" if kind in ("ss", "sd") else f"{prefix}_{width(m.group(3))}"] += 1
    return c


def run_forward(weights_path: str | None) -> None:
    """Compile every kernel the forward passes use, for the types they use."""
    import numpy as np

    from ssd_np import model
    from ssd_np.engine import warmup
    from ssd_np.weights.standin import standin_weights
    from ssd_np.weights.hdf5 import load_weights

    # every kernel compiled in this process: numba keeps no assembly of a kernel loaded from its cache, which is
    # where the first run's helper process (engine.warmup) puts half of them
    warmup._start_helper = lambda: None
    layers = model.prepare(load_weights(weights_path)[0] if weights_path else standin_weights(1, "sparse"))
    rng = np.random.default_rng(0)
    for h, w in ((300, 300), (480, 640)):
        model.tf_outputs(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), layers)
    model.detection_out(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8), layers)


def dispatchers():
    """(module.name, dispatcher) for every numba dispatcher defined in an ssd_np module, compiled signatures only."""
    import importlib
    import pkgutil

    from numba.core.dispatcher import Dispatcher

    import ssd_np.engine

    for info in pkgutil.iter_modules(ssd_np.engine.__path__):
        module = importlib.import_module(f"ssd_np.engine.{info.name}")
        for name, obj in sorted(vars(module).items()):
            if isinstance(obj, Dispatcher) and obj.__module__ == module.__name__ and obj.signatures:
                yield f"{info.name}.{name}", obj


LABEL = re.compile(r"^(\.?L\w+|\w+):")
JUMP = re.compile(r"^\s+j\w+\s+(\.?L\w+)\s*$")
STACK = re.compile(r"\((%rsp|%rbp)\)")
VECTOR = re.compile(r"%[xyz]mm")


def fma_loops(asm: str) -> list[tuple[int, int]]:
    """(FMAs, vector loads/stores on the stack) of each innermost loop that contains FMA instructions.

    A loop: a label and a later jump back to it; innermost: no other loop inside it. A vector register moved to
    or from the stack inside such a loop (`vmovups %ymm3, 96(%rsp)`, `vfmadd231ps 64(%rsp), ...`) is a spill:
    the register tile does not fit the register file."""
    lines = asm.splitlines()
    labels: dict[str, int] = {}
    loops = []
    for i, line in enumerate(lines):
        label, jump = LABEL.match(line), JUMP.match(line)
        if label:
            labels[label.group(1)] = i
        elif jump and jump.group(1) in labels:
            loops.append((labels[jump.group(1)], i))
    found = []
    for a, b in loops:
        if any(a <= c and d <= b and (c, d) != (a, b) for c, d in loops):
            continue
        body = lines[a:b + 1]
        fmas = sum(1 for line in body if FMA.match(line))
        if fmas:
            found.append((fmas, sum(1 for line in body if STACK.search(line) and VECTOR.search(line))))
    return found


def short(sig) -> str:
    text = ", ".join(str(t) for t in sig)
    return re.sub(r"array\((\w+), (\d)d, (\w)\)", r"\1[\2d,\3]", text.replace("Array", "array"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="ssd_np HDF5 weights (default: stand-in weights, seed 1)")
    parser.add_argument("--dump", type=Path, help="write each kernel's assembly into this directory")
    args = parser.parse_args(argv)

    cache = tempfile.mkdtemp(prefix="ssd_np_asm_cache_")
    os.environ["NUMBA_CACHE_DIR"] = cache
    sys.path.insert(0, str(ROOT))
    try:
        report(args)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return 0


def report(args: argparse.Namespace) -> None:
    """Compile, then print the Markdown table (NUMBA_CACHE_DIR already points at a private directory)."""
    import llvmlite.binding as llvm
    import numba

    run_forward(args.weights)
    features = llvm.get_host_cpu_features()
    host = numba.config.CPU_NAME or llvm.get_host_cpu_name()
    flags = [f for f in ("avx2", "fma", "avx512f", "avx512vl", "avx512bw", "avx512dq") if features.get(f)]
    from ssd_np.engine.conv import MR, NR
    from ssd_np.engine.simd import TARGET

    print(f"numba {numba.__version__}, llvmlite {llvm.llvm_version_info}, target CPU `{host}` "
          f"(host features: {', '.join(flags)}; NUMBA_CPU_FEATURES {numba.config.CPU_FEATURES!r}): kernels for "
          f"**{TARGET.isa}** ({TARGET.vector_bits}-bit vectors, {TARGET.registers} registers), register tile "
          f"{MR} x {NR}; every kernel compiled afresh into a private cache directory. FMA loops: the innermost loops "
          f"with FMA instructions, `FMAs/stack accesses` per iteration (a vector register moved to or from the "
          f"stack there is a spill).")
    print()
    print("| kernel | signature | packed FMA zmm / ymm / xmm | scalar FMA | packed mul/add/sub/div/min/max "
          "zmm / ymm / xmm | scalar mul/add/... | instr. naming zmm / ymm | instructions | FMA loops |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, disp in dispatchers():
        for sig in disp.signatures:
            asm = disp.inspect_asm(sig)
            if args.dump:
                args.dump.mkdir(parents=True, exist_ok=True)
                (args.dump / f"{name}.{disp.signatures.index(sig)}.s").write_text(asm)
            c = count(asm)
            print(f"| `{name}` | `{short(sig)}` | {c['fma_zmm']} / {c['fma_ymm']} / {c['fma_xmm']} | "
                  f"{c['fma_scalar']} | {c['arith_zmm']} / {c['arith_ymm']} / {c['arith_xmm']} | "
                  f"{c['arith_scalar']} | {c['zmm']} / {c['ymm']} | {c['instructions']} | "
                  f"{', '.join(f'{f}/{st}' for f, st in fma_loops(asm)) or '—'} |")


if __name__ == "__main__":
    sys.exit(main())
