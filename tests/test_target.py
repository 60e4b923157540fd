"""The machine the kernels are compiled for (engine.simd.TARGET), the register tile sized from it, and
`ssd-np warmup` / the first-run notice (engine.warmup)."""
import json
import os
import subprocess
import sys

import numba
import pytest
from llvmlite import binding as llvm

from ssd_np.cli.main import main
from ssd_np.engine import conv, simd, warmup
from conftest import ROOT

X86 = llvm.get_process_triple().startswith("x86_64")


@pytest.mark.skipif(not X86, reason="x86-64 CPU names")
@pytest.mark.parametrize("cpu, features, expected", [
    ("haswell", "", ("avx2", 256, 16, True)),
    ("skylake-avx512", "", ("avx512", 512, 32, True)),
    ("znver3", "", ("avx2", 256, 16, True)),
    ("generic", "", ("128-bit vectors, no FMA", 128, 16, False)),
    ("haswell", "+avx512f", ("avx512", 512, 32, True)),  # NUMBA_CPU_NAME alone keeps the host's features
])
def test_compile_target_follows_numba_cpu(monkeypatch, cpu, features, expected):
    monkeypatch.setattr(numba.config, "CPU_NAME", cpu)
    monkeypatch.setattr(numba.config, "CPU_FEATURES", features)
    target = simd.compile_target()
    assert (target.isa, target.vector_bits, target.registers, target.fma) == expected
    assert target.cpu == cpu


def test_register_tile_fits_the_register_file():
    # AVX-512: 6 x 32 = 12 zmm accumulators + 2 + 1; AVX2: 6 x 16 = 12 ymm + 2 + 1; a 6 x 32 tile would need 29 ymm
    assert conv.NR in (simd.LANES, 2 * simd.LANES)
    assert conv.tile_registers(conv.NR) <= simd.TARGET.registers or conv.NR == simd.LANES
    if simd.TARGET.isa == "avx512":
        assert (conv.NR, conv.tile_registers(conv.NR)) == (32, 15)
    if simd.TARGET.isa == "avx2":
        assert (conv.NR, conv.tile_registers(conv.NR), conv.tile_registers(32)) == (16, 15, 29)


def test_warmup_compiles_then_everything_is_cached(capsys):
    assert main(["warmup"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith(f"ssd-np: the kernels for {simd.TARGET.cpu} ({simd.TARGET.isa}) ")
    assert warmup.cached()
    capsys.readouterr()
    warmup.announce()  # cached: no notice
    assert capsys.readouterr().err == ""


def test_first_run_notice_on_a_terminal_only(monkeypatch, capsys):
    monkeypatch.setattr(warmup, "cached", lambda: False)
    monkeypatch.setattr(warmup, "_announced", False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    warmup.announce()  # a log or a pipe: nothing
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(warmup, "_announced", False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    warmup.announce()
    warmup.announce()  # once per process
    err = capsys.readouterr().err
    assert err == f"ssd-np: compiling the numba kernels once (about {warmup.COMPILE_SECONDS} s; cached for later runs)\n"


FIRST_RUN = r"""
import json, numpy as np
from ssd_np import model
from ssd_np.engine import warmup
from ssd_np.images import load_rgb
from ssd_np.weights.hdf5 import MANIFEST
with warmup.compile_times() as during:
    layers = model.prepare({name: np.zeros(shape, np.float32) for name, shape in MANIFEST.shapes.items()})
with warmup.compile_times() as after:
    model.tf_outputs(load_rgb("tests/data/images/000000037777.jpg"), layers)  # PIL's read-only array
    model.tf_outputs(np.zeros((480, 640, 3), np.uint8), layers)  # a writable one
print(json.dumps({"during": sorted(during), "helper": sorted(warmup.HELPER_SECONDS), "after": sorted(after)}))
"""


def test_first_run_compiles_on_two_cores_then_nothing(tmp_path):
    # An empty numba cache: `network.prepare` compiles the kernels TF's format needs, half of them in a helper
    # process (loaded from the cache here), and a detection afterwards compiles nothing more.
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", FIRST_RUN], env=env, capture_output=True, text=True, timeout=600,
                          cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["after"] == []
    assert "ssd_np.engine.conv._conv_gemm" in result["during"]
    if len(os.sched_getaffinity(0)) >= 2:
        assert "ssd_np.engine.inverted_residual._inverted_residual" in result["helper"]
        assert "ssd_np.engine.inverted_residual._inverted_residual" not in result["during"]
