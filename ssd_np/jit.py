"""The project's one numba decorator (a leaf module: the engine's kernels, the CRC32C and the COCO matcher use it).

`njit` is `numba.njit` with the settings every compiled function here wants: compiled once and cached on disk;
`nogil` (the threads of `ssd-np detect --jobs` run kernels at once); no fast-math (every compiled function rounds
as its NumPy twin does). `numpy_division=True` (numba's `error_model="numpy"`) makes x / 0 give inf or NaN as
in NumPy, for the element-wise and NMS kernels whose twins divide by zero on purpose; the convolutions keep
numba's default, measured ~1 % faster on the whole network (`tools/profile_layers.py`).
"""
from __future__ import annotations

import numba


def njit(fn=None, *, parallel: bool = False, inline: str = "never", numpy_division: bool = False):
    """`@njit`, `@njit(parallel=True)`, `@njit(inline="always")` or `@njit(numpy_division=True)`."""
    decorate = numba.njit(cache=True, nogil=True, error_model="numpy" if numpy_division else "python",
                          parallel=parallel, inline=inline)
    return decorate(fn) if fn is not None else decorate
