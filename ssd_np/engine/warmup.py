"""Compiling the engine's kernels once: the notice before a first run, and `ssd-np warmup` (ahead of time).

numba compiles each kernel the first time it is called, for the CPU it runs on (`simd.TARGET`), and keeps the
machine code in its on-disk cache (`__pycache__` beside the sources, or `NUMBA_CACHE_DIR`), keyed by the
kernel's source, argument types, CPU name and CPU features. Later processes load it in well under a second.

- `cached()`: whether the cache holds the main kernels for this CPU: it reads numba's small index file of each
  kernel (`<module>.<kernel>-<line>.pyXY.nbi`; numba returns an empty index when the source changed) and looks
  for an entry made for this CPU name and features. No compilation, a few milliseconds.
- `announce()`: one line on stderr (a terminal), once per process, when they are not cached.
- `compile_network()`: what `network.prepare` calls first (`start_compiling()`: its helper process, started early by
  `Detector.load`). With an empty cache and two or more cores, it compiles on two cores at once (numba compiles one
  function at a time per process): a helper process (`python -m ssd_np.engine.warmup`) compiles the fused inverted
  residual block, the depthwise convolution and preprocessing (`_compile_helper_group`) into the on-disk cache,
  while this process loads the weights and compiles the dense and Winograd convolutions and TF's post-processing
  (`_compile_own_group`); then it waits for the helper, whose kernels later load from the cache. Each group calls
  the kernels' own entry points on small inputs, which gives the signatures a real image gets (tests/test_target.py:
  a detection afterwards compiles nothing). Without a helper (one core, or it failed) the rest compiles here on
  first use, as numba always does.
- `compile_times()`: the CPU seconds spent compiling each kernel in a block of code (`ssd-np warmup` compiles
  everything a detection needs ahead of time, e.g. in a Docker build step, and prints them; `HELPER_SECONDS`:
  the helper's).

COMPILE_SECONDS is about what a first run took on the 2-core machines of the README's speed tables (empty cache,
load + one image); one core, or a slower or busy machine, takes longer.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import contextmanager

import numba
import numpy as np
from numba.core import event

from ssd_np.engine import conv, depthwise, inverted_residual, postprocess, preprocess, threads, winograd
from ssd_np.reference import anchors
from ssd_np.reference import postprocess as reference_postprocess

COMPILE_SECONDS = 20
KERNELS = (conv._conv_gemm, depthwise._depthwise3x3, inverted_residual._inverted_residual,
           winograd._input_transform, winograd._batched_gemm, winograd._output_transform,
           preprocess._resize_bilinear_tf, postprocess._multiclass_nms)
_announced = False


def _cached(dispatcher) -> bool:
    """Whether numba's index for this kernel lists an overload compiled for the current CPU name and features."""
    magic = dispatcher.targetctx.codegen().magic_tuple()
    index = dispatcher._cache._cache_file._load_index()  # numba's own reader: {} if missing or stale
    return any(key[1] == magic for key in index)


def cached() -> bool:
    """Whether numba's on-disk cache holds the engine's main kernels for this CPU (see the module docstring)."""
    try:
        return all(_cached(kernel) for kernel in KERNELS)
    except (AttributeError, OSError, EOFError, ValueError):  # another numba version's layout: say nothing
        return True


def must_compile() -> bool:
    """Whether a run compiles the kernels before its first result: the JIT is on and the cache lacks them."""
    return not numba.config.DISABLE_JIT and not cached()


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def _compile_helper_group() -> None:
    """The fused block, the depthwise convolution and preprocessing: the helper process's part, about half of the
    compile time (this process also loads the weights meanwhile)."""
    preprocess.preprocess(np.zeros((6, 6, 3), np.uint8))
    x = _zeros(6, 6, 16)
    expand, project = conv.prepare_conv(_zeros(1, 1, 16, 32)), conv.prepare_conv(_zeros(1, 1, 32, 16))
    inverted_residual.inverted_residual(x, expand, depthwise.prepare_depthwise(_zeros(3, 3, 32, 1)), project, 1,
                                        True)
    depthwise.depthwise3x3_bn_act(x, depthwise.prepare_depthwise(_zeros(3, 3, 16, 1)), 2)


def _compile_own_group() -> None:
    """The dense and Winograd convolutions, TF's post-processing, the thread pinning (this process's part)."""
    if threads.CAN_PIN:
        threads._thread_ids(np.zeros(1, np.int32))
    x = _zeros(6, 6, 16)
    conv.conv_bn_act(x, conv.prepare_conv(_zeros(3, 3, 16, 16)), 2, relu6=True)
    winograd.conv3x3_bias(x, winograd.prepare(_zeros(3, 3, 16, 16), _zeros(16)))
    num_anchors = len(anchors.ssd_anchors())
    reference_postprocess.tf_outputs(_zeros(num_anchors, 4), _zeros(num_anchors, 91), anchors.ssd_anchors(), {},
                                     postprocess.OPS)


def _start_helper() -> subprocess.Popen | None:
    """The helper process (`_compile_helper_group`), or None: one core, or no interpreter to start."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores < 2 or not sys.executable:
        return None
    try:
        return subprocess.Popen([sys.executable, "-m", "ssd_np.engine.warmup"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    except OSError:
        return None


HELPER_SECONDS: dict[str, float] = {}  # CPU seconds per kernel the helper processes of this process compiled
_helper: subprocess.Popen | None = None


def start_compiling() -> None:
    """Start the helper process now if the cache lacks the kernels (`Detector.load` calls this before it reads the
    weights file, so the two overlap); `compile_network` then uses it."""
    global _helper
    if _helper is None and must_compile():
        announce()
        _helper = _start_helper()


def compile_network() -> None:
    """Compile the network's kernels and TF's post-processing now, on two cores at once, if the cache lacks them
    (see the module docstring); nothing when they are cached or the JIT is off."""
    global _helper
    if not must_compile():
        return
    start_compiling()
    _compile_own_group()
    helper, _helper = _helper, None
    if helper is not None:
        out, _ = helper.communicate()  # its kernels are in the cache now (if it failed: compiled here on first use)
        try:
            HELPER_SECONDS.update(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            pass


def announce() -> None:
    """Tell the user, once per process, that the kernels are being compiled (when they are not cached). Only on a
    terminal, like `ssd-np detect`'s progress bar: a log or a caller that reads stderr gets no extra line."""
    global _announced
    if not _announced and sys.stderr.isatty() and not cached():
        print(f"ssd-np: compiling the numba kernels once (about {COMPILE_SECONDS} s; cached for later runs)",
              file=sys.stderr, flush=True)
    _announced = True


class _CompileTimes(event.Listener):
    """CPU seconds numba spends compiling each kernel, nested compilations counted in their own kernel only."""

    def __init__(self):
        self.stack: list[list] = []
        self.seconds: dict[str, float] = defaultdict(float)

    def on_start(self, ev):
        self.stack.append([time.process_time(), 0.0])

    def on_end(self, ev):
        start, nested = self.stack.pop()
        spent = time.process_time() - start
        function = ev.data["dispatcher"].py_func
        self.seconds[f"{function.__module__}.{function.__name__}"] += spent - nested
        if self.stack:
            self.stack[-1][1] += spent


@contextmanager
def compile_times():
    """`with compile_times() as seconds:` fills `seconds` with the CPU seconds numba spends compiling each kernel
    (by qualified name) inside the block; nothing when everything comes from the cache."""
    listener = _CompileTimes()
    event.register("numba:compile", listener)
    try:
        yield listener.seconds
    finally:
        event.unregister("numba:compile", listener)


if __name__ == "__main__":  # the helper process of compile_network(): compiles, prints its compile times
    numba.set_num_threads(1)
    with compile_times() as spent:
        _compile_helper_group()
    print(json.dumps(spent))
