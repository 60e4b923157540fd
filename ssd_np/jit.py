"""The project's one numba decorator (a leaf module: the engine's kernels, the CRC32C and the COCO matcher use it).

`njit` is `numba.njit` with the settings every compiled function here wants: compiled once and cached on disk;
`nogil` (the threads of `ssd-np detect --jobs` run kernels at once); `error_model="numpy"` (x / 0 gives inf or
NaN as in NumPy, and no zero-division checks in integer index arithmetic). No fast-math: every compiled function
rounds as its NumPy twin does.
"""
from __future__ import annotations

import numba


def njit(fn=None, *, parallel: bool = False, inline: str = "never"):
    """`@njit`, `@njit(parallel=True)` or `@njit(inline="always")`."""
    decorate = numba.njit(cache=True, nogil=True, error_model="numpy", parallel=parallel, inline=inline)
    return decorate(fn) if fn is not None else decorate
