"""Compiling the engine's kernels once: the notice before a first run, and `ssd-np warmup` (ahead of time).

numba compiles each kernel the first time it is called, for the CPU it runs on (`simd.TARGET`), and keeps the
machine code in its on-disk cache (`__pycache__` beside the sources, or `NUMBA_CACHE_DIR`), keyed by the
kernel's source, argument types, CPU name and CPU features. Later processes load it in well under a second.

- `cached()`: whether the cache holds the main kernels for this CPU: it reads numba's small index file of each
  kernel (`<module>.<kernel>-<line>.pyXY.nbi`; numba returns an empty index when the source changed) and looks
  for an entry made for this CPU name and features. No compilation, a few milliseconds.
- `announce()`: one line on stderr (a terminal), once per process, when they are not cached (called where the
  engine first compiles: `network.prepare`).
- `compile_times()`: the CPU seconds spent compiling each kernel in a block of code (`ssd-np warmup` compiles
  everything a detection needs ahead of time, e.g. in a Docker build step, and prints them).

COMPILE_SECONDS is what the first run took on the machine of the README's speed tables (CPU seconds, empty
cache, `ssd-np warmup`); a slower or busy machine takes longer.
"""
from __future__ import annotations

import sys
import time
from collections import defaultdict
from contextlib import contextmanager

from numba.core import event

from ssd_np.engine import conv, depthwise, inverted_residual, postprocess, preprocess, winograd

COMPILE_SECONDS = 30
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
