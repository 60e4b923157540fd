"""Winograd F(2x2, 3x3): the box predictors' 3x3 convolutions with 16 products per 2x2 outputs instead of 36.

TF's graph computes `BoxPredictor_i/*/Conv2D` (3x3, SAME, stride 1) as a direct sum of 9 * cin products per
output; this module computes the same convolution with Lavin and Gray's minimal filtering algorithm
("Fast Algorithms for Convolutional Neural Networks", 2016). For one channel, a 4x4 input tile d (rows and
columns 2ty - 1 .. 2ty + 2, zero outside the image: SAME padding of 1) and the 3x3 kernel g give the 2x2
outputs (rows and columns 2ty .. 2ty + 1) as

    Y = A^T [(G g G^T) * (B^T d B)] A        (* element by element, 4x4)

    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
    G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]

Summed over the input channels, the element-by-element product becomes 16 matrix products, one per position
e = (a, b) of the 4x4 tile:

    V[e] (tiles, cin) = (B^T d B)[a, b]   of every tile and channel   (`_input_transform`: additions only)
    U[e] (cin, cout)  = (G g G^T)[a, b]   of every kernel             (`prepare`, once, rounded once)
    M[e] (tiles, cout) = V[e] @ U[e]                                  (`_batched_gemm`: the register tile)
    y[2ty + i, 2tx + j, n] = (A^T M A)[i, j] + bias[n]                (`_output_transform`)

2.25x fewer multiply-adds than the direct sum for even map sizes (19x19: 2.03x, its tiles cover 20x20).
Numerically only the float32 rounding differs from the direct sum: the transforms are exact up to one rounding
per addition (the weights' transform is computed in float64 and rounded once). tests/test_winograd.py bounds
the difference to the exact convolution (a rounding-error bound, like the direct sum's), and the layer goldens
check the box predictors against TF's tensors within TF's own spread (tests/test_golden.py).
Stride 1 only (all the box predictors).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from ssd_np.engine.conv import MR, NR, tile_sums
from ssd_np.engine.simd import LANES, check_hwc, empty_aligned, prefetch, vsplat, vstore
from ssd_np.jit import njit

B_T = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64)
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64)
A_T = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)


# A panel of U[e] (cin x NR weights: 80 KB for the 10x10 map's 1280 channels with NR = 16) comes from memory once
# per image (U of the 10x10 map is 45 MB), the register tiles after the first read it from the cache; meanwhile
# those tiles prefetch the next job's panel, an equal share each, PREFETCH_STEP channels at a time, one prefetch
# per 64-byte cache line. Only with panels one vector wide (AVX2 and narrower): with AVX2 code the 10x10 map took
# 6.7 -> 5.3 ms on a Zen 5 and 8.6-9.1 -> 7.1-7.2 ms on a Zen 3 at one thread; with AVX-512 code (NR = 32) the
# Zen 5's own prefetchers kept up and the prefetches only cost time (3.4 -> 4.0 ms).
PREFETCH = NR == LANES
PREFETCH_STEP = 64
CACHE_LINE = 16  # floats


class Winograd(NamedTuple):
    """A 3x3 convolution plus biases prepared for `conv3x3_bias`: U[e] packed into panels of NR channels."""
    packed: np.ndarray  # (16, panels, cin, NR)
    cin: int
    cout: int
    bias: np.ndarray  # (cout,)


def transform_weights(w: np.ndarray, a: int, b: int) -> np.ndarray:
    """U[a, b] = (G g G^T)[a, b] for every (cin, cout) kernel g of w (3, 3, cin, cout): (cin, cout), the nine
    terms summed in float64 and rounded once to float32."""
    u = np.zeros(w.shape[2:], np.float64)
    for i in range(3):
        for j in range(3):
            if G[a, i] * G[b, j] != 0.0:
                u += (G[a, i] * G[b, j]) * w[i, j].astype(np.float64)
    return u.astype(np.float32)


def prepare(w: np.ndarray, bias: np.ndarray) -> Winograd:
    """Transform and pack w (3, 3, cin, cout) once; bias (cout,)."""
    if w.ndim != 4 or w.shape[:2] != (3, 3) or w.dtype != np.float32 or bias.shape != w.shape[3:]:
        raise ValueError(f"winograd: expected float32 weights (3, 3, cin, cout) and biases (cout,), "
                         f"got {w.dtype} {w.shape} and {bias.shape}")
    cin, cout = w.shape[2:]
    panels = -(-cout // NR)
    packed = empty_aligned((16, panels, cin, NR))
    packed[:] = 0.0
    for e in range(16):
        u = transform_weights(w, e // 4, e % 4)  # (cin, cout)
        for p in range(panels):
            n = min(NR, cout - p * NR)
            packed[e, p, :, :n] = u[:, p * NR:p * NR + n]
    return Winograd(packed, cin, cout, np.ascontiguousarray(bias, np.float32))


@njit(parallel=True)
def _input_transform(xp, tiles_x, tiles, v):
    """v[e, t, c] = (B^T d B)[e // 4, e % 4] for tile t = ty * tiles_x + tx < tiles,
    d = xp[2ty:2ty+4, 2tx:2tx+4, c]. xp: the input with one row and column of zeros before it and enough after
    it to cover every tile."""
    channels = xp.shape[2]
    for t in prange(tiles):
        y0 = (t // tiles_x) * 2
        x0 = (t % tiles_x) * 2
        for c in range(channels):
            d00, d01, d02, d03 = xp[y0, x0, c], xp[y0, x0 + 1, c], xp[y0, x0 + 2, c], xp[y0, x0 + 3, c]
            d10, d11, d12, d13 = xp[y0 + 1, x0, c], xp[y0 + 1, x0 + 1, c], xp[y0 + 1, x0 + 2, c], xp[y0 + 1, x0 + 3, c]
            d20, d21, d22, d23 = xp[y0 + 2, x0, c], xp[y0 + 2, x0 + 1, c], xp[y0 + 2, x0 + 2, c], xp[y0 + 2, x0 + 3, c]
            d30, d31, d32, d33 = xp[y0 + 3, x0, c], xp[y0 + 3, x0 + 1, c], xp[y0 + 3, x0 + 2, c], xp[y0 + 3, x0 + 3, c]
            # rows: B^T d
            r00, r01, r02, r03 = d00 - d20, d01 - d21, d02 - d22, d03 - d23
            r10, r11, r12, r13 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
            r20, r21, r22, r23 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
            r30, r31, r32, r33 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
            # columns: (B^T d) B
            v[0, t, c], v[1, t, c], v[2, t, c], v[3, t, c] = r00 - r02, r01 + r02, r02 - r01, r01 - r03
            v[4, t, c], v[5, t, c], v[6, t, c], v[7, t, c] = r10 - r12, r11 + r12, r12 - r11, r11 - r13
            v[8, t, c], v[9, t, c], v[10, t, c], v[11, t, c] = r20 - r22, r21 + r22, r22 - r21, r21 - r23
            v[12, t, c], v[13, t, c], v[14, t, c], v[15, t, c] = r30 - r32, r31 + r32, r32 - r31, r31 - r33


@njit(parallel=True)
def _batched_gemm(v, packed, rows, m):
    """m[e] (tiles, panels * NR) = v[e] (tiles, cin) @ U[e] for the 16 positions e, U[e] packed (panels, cin, NR).

    Register tiles of `rows` (6 = MR, or 5) x NR outputs, summed over cin in order with FMA; tiles is a multiple
    of `rows` (5 when it saves padding: the 10x10 map's 25 tiles). Parallel over jobs (e, panel), the job's body
    inside the parallel loop (as a function of its own it ran 7-9 % slower)."""
    positions, tiles, cin = v.shape
    panels = packed.shape[1]
    width = m.shape[2]
    jobs = positions * panels
    flat = packed.reshape(jobs * cin * NR)  # job j's panel: flat[j * cin * NR:]
    later_tiles = tiles // rows - 1
    for job in prange(jobs):
        e = job // panels
        j0 = (job % panels) * NR
        src = v[e].reshape(tiles * cin)
        b = packed[e, job % panels].reshape(cin * NR)
        out = m[e].reshape(tiles * width)
        ahead = (job + 1) * cin * NR if PREFETCH and job + 1 < jobs and later_tiles > 0 else -1  # next job's panel
        for p in range(0, tiles, rows):
            zero = vsplat(0.0)
            acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
            a = p * cin
            q = p // rows - 1  # the tiles after the first fetch the next panel, 1/later_tiles each
            for c0 in range(0, cin, PREFETCH_STEP):
                n = min(PREFETCH_STEP, cin - c0)
                if q >= 0 and ahead >= 0:
                    first = ahead + (q * cin + c0) // later_tiles * NR
                    for line in range(first, ahead + (q * cin + c0 + n) // later_tiles * NR, CACHE_LINE):
                        prefetch(flat, line)
                if rows == MR:
                    acc = tile_sums(src, a + c0, a + cin + c0, a + 2 * cin + c0, a + 3 * cin + c0, a + 4 * cin + c0,
                                    a + 5 * cin + c0, b, c0 * NR, n, False, acc, True)
                else:
                    acc = tile_sums(src, a + c0, a + cin + c0, a + 2 * cin + c0, a + 3 * cin + c0, a + 4 * cin + c0,
                                    a + c0, b, c0 * NR, n, False, acc, False)
            s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = acc
            o = p * width + j0
            for v0, v1 in ((s00, s01), (s10, s11), (s20, s21), (s30, s31), (s40, s41)):
                vstore(out, o, v0)
                if NR > LANES:
                    vstore(out, o + LANES, v1)
                o += width
            if rows == MR:
                vstore(out, o, s50)
                if NR > LANES:
                    vstore(out, o + LANES, s51)


@njit(parallel=True)
def _output_transform(m, bias, tiles_x, y):
    """y[2ty + i, 2tx + j, n] = (A^T M A)[i, j] + bias[n], M[a, b] = m[a * 4 + b, ty * tiles_x + tx, n]; the
    outputs past y's bottom or right edge are dropped."""
    h, w, cout = y.shape
    tiles = ((h + 1) // 2) * tiles_x
    for t in prange(tiles):
        y0 = (t // tiles_x) * 2
        x0 = (t % tiles_x) * 2
        for n in range(cout):
            # rows: A^T M
            s0 = m[0, t, n] + m[4, t, n] + m[8, t, n]
            s1 = m[1, t, n] + m[5, t, n] + m[9, t, n]
            s2 = m[2, t, n] + m[6, t, n] + m[10, t, n]
            s3 = m[3, t, n] + m[7, t, n] + m[11, t, n]
            q0 = m[4, t, n] - m[8, t, n] - m[12, t, n]
            q1 = m[5, t, n] - m[9, t, n] - m[13, t, n]
            q2 = m[6, t, n] - m[10, t, n] - m[14, t, n]
            q3 = m[7, t, n] - m[11, t, n] - m[15, t, n]
            # columns: (A^T M) A, plus the bias
            y[y0, x0, n] = (s0 + s1 + s2) + bias[n]
            if x0 + 1 < w:
                y[y0, x0 + 1, n] = (s1 - s2 - s3) + bias[n]
            if y0 + 1 < h:
                y[y0 + 1, x0, n] = (q0 + q1 + q2) + bias[n]
                if x0 + 1 < w:
                    y[y0 + 1, x0 + 1, n] = (q1 - q2 - q3) + bias[n]


def conv3x3_bias(x: np.ndarray, wg: Winograd) -> np.ndarray:
    """Conv2D 3x3 SAME stride 1 of x (H, W, cin) plus biases, by Winograd F(2x2, 3x3) -> (H, W, cout)."""
    check_hwc(x, "winograd input")
    if x.shape[2] != wg.cin:
        raise ValueError(f"winograd: weights for {wg.cin} input channels do not fit input {x.shape}")
    h, w, cin = x.shape
    tiles_y, tiles_x = (h + 1) // 2, (w + 1) // 2
    tiles = tiles_y * tiles_x
    xp = np.zeros((2 * tiles_y + 2, 2 * tiles_x + 2, cin), np.float32)  # (H', W', cin): SAME padding and more
    xp[1:h + 1, 1:w + 1] = x
    rows = 5 if -(-tiles // 5) * 5 < -(-tiles // MR) * MR else MR  # register tile rows: the least padding
    v = empty_aligned((16, -(-tiles // rows) * rows, cin))  # (16, tiles rounded up to `rows`, cin)
    v[:, tiles:] = 0.0
    _input_transform(xp, tiles_x, tiles, v)
    m = empty_aligned((16, v.shape[1], wg.packed.shape[1] * NR))  # (16, tiles, panels * NR)
    _batched_gemm(v, wg.packed, rows, m)
    y = empty_aligned((h, w, wg.cout))
    _output_transform(m, wg.bias, tiles_x, y)
    return y
