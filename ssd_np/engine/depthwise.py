"""`DepthwiseConv2dNative` 3x3 (SAME, strides 1 or 2, channel multiplier 1) with batch norm and ReLU6 fused.

Twin of `reference.mobilenet_v2.depthwise_conv2d`: TF's kernel sums the nine taps in order `ky*3 + kx`, starting
from 0, each product and each sum rounded separately (the pip build has no FMA in Eigen's packet `pmadd`); zero
padding contributes `0 * w`. `_depthwise3x3` does the same (a tap outside the image adds 0 instead of `0 * w`:
the same value up to the sign of a zero), hence reproduces TF bit for bit given the same input.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from ssd_np.engine.simd import LANES, check_hwc, empty_aligned, vadd, vload, vload_tail, vmul, vrelu6, vsplat, vstore
from ssd_np.jit import njit
from ssd_np.reference.mobilenet_v2 import same_padding

@njit(inline="always")
def _depthwise_pixel(x2, w2, c, c0, n, offsets, tmp):
    """Depthwise sum of channels c0 .. c0 + n (n <= 16) of one output pixel whose 9 input pixels start at
    offsets (flat, -1 outside the image), taps in order from 0, products and sums rounded."""
    s = vsplat(0.0)
    for t in range(9):
        if offsets[t] >= 0:
            if n == LANES:
                s = vadd(s, vmul(vload(x2, offsets[t] + c0), vload(w2, t * c + c0)))
            else:
                xt = vload_tail(x2, offsets[t] + c0, n, tmp)
                s = vadd(s, vmul(xt, vload_tail(w2, t * c + c0, n, tmp)))
    return s


@njit(inline="always")
def _bn_store(s, scale, shift, c0, n, relu6, out2, o, tmp):
    """out2[o:o + n] = [relu6](s * scale[c0:] + shift[c0:]) for the first n lanes of s."""
    if n == LANES:
        s = vadd(vmul(s, vload(scale, c0)), vload(shift, c0))
    else:
        s = vadd(vmul(s, vload_tail(scale, c0, n, tmp)), vload_tail(shift, c0, n, tmp))
    if relu6:
        s = vrelu6(s)
    if n == LANES:
        vstore(out2, o, s)
    else:
        vstore(tmp, 0, s)
        for j in range(n):
            out2[o + j] = tmp[j]


@njit(inline="always")
def depthwise_row(src, r0, r1, r2, wd, c, stride, pad_left, w2, scale, shift, relu6, out, o, wo, offsets, tmp):
    """One output row: out[o + ox*c + ch] for ox < wo, from the three input rows of its windows, which start at
    src[r0], src[r1], src[r2] (flat (wd, c) rows; -1: a row outside the image). See _depthwise3x3."""
    rows = (r0, r1, r2)
    # interior columns: 0 <= ox * stride - pad_left and ox * stride - pad_left + 2 < wd
    ox_begin = min((pad_left + stride - 1) // stride, wo)
    ox_end = max(min((wd - 3 + pad_left) // stride + 1, wo), ox_begin)
    fast = r0 >= 0 and r1 >= 0 and r2 >= 0 and c % LANES == 0
    for ox in range(wo):
        if fast and ox_begin <= ox < ox_end:
            continue
        for t in range(9):
            tx = ox * stride - pad_left + t % 3
            offsets[t] = rows[t // 3] + tx * c if rows[t // 3] >= 0 and 0 <= tx < wd else -1
        for c0 in range(0, c, LANES):
            n = min(LANES, c - c0)
            _bn_store(_depthwise_pixel(src, w2, c, c0, n, offsets, tmp), scale, shift, c0, n, relu6, out,
                      o + ox * c + c0, tmp)
    if not fast:
        return
    for c0 in range(0, c, LANES):
        q0, q1, q2 = vload(w2, c0), vload(w2, c + c0), vload(w2, 2 * c + c0)
        q3, q4, q5 = vload(w2, 3 * c + c0), vload(w2, 4 * c + c0), vload(w2, 5 * c + c0)
        q6, q7, q8 = vload(w2, 6 * c + c0), vload(w2, 7 * c + c0), vload(w2, 8 * c + c0)
        sc, sh = vload(scale, c0), vload(shift, c0)
        for ox in range(ox_begin, ox_end):
            i = (ox * stride - pad_left) * c + c0
            s = vadd(vsplat(0.0), vmul(vload(src, r0 + i), q0))
            s = vadd(s, vmul(vload(src, r0 + i + c), q1))
            s = vadd(s, vmul(vload(src, r0 + i + 2 * c), q2))
            s = vadd(s, vmul(vload(src, r1 + i), q3))
            s = vadd(s, vmul(vload(src, r1 + i + c), q4))
            s = vadd(s, vmul(vload(src, r1 + i + 2 * c), q5))
            s = vadd(s, vmul(vload(src, r2 + i), q6))
            s = vadd(s, vmul(vload(src, r2 + i + c), q7))
            s = vadd(s, vmul(vload(src, r2 + i + 2 * c), q8))
            s = vadd(vmul(s, sc), sh)
            if relu6:
                s = vrelu6(s)
            vstore(out, o + ox * c + c0, s)


@njit
def row_start(iy, h, row):
    """Flat offset of image row iy (of `row` elements), -1 outside the image."""
    return iy * row if 0 <= iy < h else -1


@njit(parallel=True)
def _depthwise3x3(x, w9, stride, pad_top, pad_left, scale, shift, relu6, out):
    """out (ho, wo, c) = [relu6](depthwise 3x3 sums of x (h, wd, c) * scale + shift), w9 (9, c).

    Taps summed in TF's order ky*3 + kx from 0, each product and sum rounded (vmul, vadd: no FMA); a tap outside
    x is skipped (TF adds 0 * w). 16 channels at a time; the last c % 16 through a zero-padded scratch vector.
    Parallel over output rows. Interior pixels (all 9 taps inside x) of a row take a fast path when c is a multiple
    of 16: per 16 channels, the 9 weight vectors stay in registers while the row's pixels stream by.
    """
    h, wd, c = x.shape
    ho, wo, _ = out.shape
    x1 = x.reshape(h * wd * c)
    out1 = out.reshape(ho * wo * c)
    w2 = w9.reshape(9 * c)
    for oy in prange(ho):
        offsets = np.empty(9, np.int64)
        tmp = np.empty(LANES, np.float32)
        iy = oy * stride - pad_top
        r0, r1, r2 = row_start(iy, h, wd * c), row_start(iy + 1, h, wd * c), row_start(iy + 2, h, wd * c)
        depthwise_row(x1, r0, r1, r2, wd, c, stride, pad_left, w2, scale, shift, relu6, out1, oy * wo * c, wo,
                       offsets, tmp)


class Depthwise(NamedTuple):
    """A 3x3 depthwise convolution prepared for `depthwise3x3_bn_act`: w9 (9, c) = w (3, 3, c, 1) reshaped, and
    the epilogue `y = conv * scale + shift` (scale, shift (c,))."""
    w9: np.ndarray
    scale: np.ndarray
    shift: np.ndarray


def prepare_depthwise(w: np.ndarray, scale: np.ndarray | None = None, shift: np.ndarray | None = None) -> Depthwise:
    """w (3, 3, c, 1) as (9, c); scale/shift (c,) default to 1 and 0 (the raw convolution)."""
    if w.ndim != 4 or w.shape[:2] != (3, 3) or w.shape[3] != 1 or w.dtype != np.float32:
        raise ValueError(f"depthwise weights: expected float32 (3, 3, c, 1), got {w.dtype} {w.shape}")
    c = w.shape[2]
    return Depthwise(np.ascontiguousarray(w.reshape(9, c)),
                     np.ones(c, np.float32) if scale is None else np.ascontiguousarray(scale, np.float32),
                     np.zeros(c, np.float32) if shift is None else np.ascontiguousarray(shift, np.float32))


def depthwise3x3_bn_act(x: np.ndarray, dw: Depthwise, stride: int, relu6: bool = True) -> np.ndarray:
    """TF `DepthwiseConv2dNative` 3x3 SAME of x (H, W, c), then batch norm `* scale + shift` and [Relu6]."""
    check_hwc(x, "depthwise input")
    c = x.shape[2]
    if dw.w9.shape != (9, c):
        raise ValueError(f"depthwise: weights for {dw.w9.shape[1]} channels do not fit input {x.shape}")
    ho, pad_top = same_padding(x.shape[0], 3, stride)
    wo, pad_left = same_padding(x.shape[1], 3, stride)
    out = empty_aligned((ho, wo, c))
    _depthwise3x3(np.ascontiguousarray(x), dw.w9, stride, pad_top, pad_left, dw.scale, dw.shift, relu6, out)
    return out


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """TF `DepthwiseConv2dNative` 3x3 SAME: x (H, W, c), w (3, 3, c, 1) -> (ceil(H/s), ceil(W/s), c), the raw sums
    (prepares w on every call: the network uses `prepare_depthwise` once and `depthwise3x3_bn_act`)."""
    check_hwc(x, "depthwise input")
    c = x.shape[2]
    if w.shape != (3, 3, c, 1) or w.dtype != np.float32:
        raise ValueError(f"depthwise: weights {w.dtype} {w.shape} do not fit input {x.shape}, want (3, 3, {c}, 1)")
    return depthwise3x3_bn_act(x, prepare_depthwise(w), stride, relu6=False)

