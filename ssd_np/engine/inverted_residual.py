"""slim's `expanded_conv` (1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 project, `add`) in one pass over the
image's rows: the same operations as `conv.conv_bn_act` and `depthwise.depthwise3x3_bn_act` in sequence, hence
the same results, with the expansion output kept to three rows in cache.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from ssd_np.engine.conv import KC_MAX, MR, NR, Conv, column_widths, finish_tile, tile_sums
from ssd_np.engine.depthwise import Depthwise, depthwise_row, row_start
from ssd_np.engine.simd import LANES, aligned_scratch, check_hwc, empty_aligned, vload, vsplat
from ssd_np.jit import njit
from ssd_np.reference.mobilenet_v2 import same_padding

# ---------------------------------------------------------------------------------------------------------------
# A whole inverted residual block (expand 1x1, depthwise 3x3, project 1x1) in one pass over the image's rows.
# ---------------------------------------------------------------------------------------------------------------

@njit
def _ring_slot(start, row):
    """The ring-buffer offset of the image row that starts at `start` (rows of `row` elements; -1 stays -1)."""
    return ((start // row) % 3) * row if start >= 0 else -1



@njit(inline="always")
def _pointwise_rows(src, s0, n_pix, cin, packed, scale, shift, relu6, residual, out, o0, cout, tmp):
    """A 1x1 convolution of n_pix consecutive pixels src[s0 + p*cin + c] (K = cin <= KC_MAX: one block), with
    conv_bn_act's epilogue, into out[o0 + p*cout + n] (+ residual[o0 + p*cout + n] unless residual is empty).
    The same register tiles and order of operations as _conv_gemm, hence the same results."""
    zero = vsplat(0.0)
    for jp in range(packed.shape[0]):
        j0 = jp * NR
        b = packed[jp].ravel()
        sc0, sc1 = vload(scale, j0), vload(scale, j0 + NR - LANES)
        sh0, sh1 = vload(shift, j0), vload(shift, j0 + NR - LANES)
        w0, w1 = column_widths(cout, j0)
        for p in range(0, n_pix, MR):
            a0, a1, a2 = s0 + p * cin, s0 + min(p + 1, n_pix - 1) * cin, s0 + min(p + 2, n_pix - 1) * cin
            a3, a4, a5 = (s0 + min(p + 3, n_pix - 1) * cin, s0 + min(p + 4, n_pix - 1) * cin,
                          s0 + min(p + 5, n_pix - 1) * cin)
            acc = tile_sums(src, a0, a1, a2, a3, a4, a5, b, 0, cin, w1 == 0,
                             (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero))
            s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = acc
            o = o0 + p * cout + j0
            for i, v0, v1 in ((0, s00, s01), (1, s10, s11), (2, s20, s21), (3, s30, s31), (4, s40, s41),
                              (5, s50, s51)):
                valid = p + i < n_pix
                finish_tile(v0, tmp, 0, 0, True, sc0, sh0, relu6, residual, out, o, w0 if valid else 0, tmp)
                if NR > LANES:
                    finish_tile(v1, tmp, 0, 0, True, sc1, sh1, relu6, residual, out, o + LANES, w1 if valid else 0,
                                tmp)
                o += cout


@njit(parallel=True)
def _inverted_residual(x, e_packed, e_scale, e_shift, w9, d_scale, d_shift, stride, pad_top, pad_left,
                       p_packed, p_scale, p_shift, add_input, bands, out):
    """out (ho, wo, cout) = project(depthwise(expand(x))) [+ x] for x (h, wd, cin), all three with their epilogues
    (expand: ReLU6; depthwise: ReLU6; project: linear, then `+ x` if add_input). e_packed (panels, cin, NR), or
    (0, 0, NR) for a block without expansion (the depthwise then reads x).

    Parallel over `bands` bands of output rows. A band walks its rows in order; the expanded input rows that an
    output row's windows need are computed once into a ring of 3 rows (row iy in slot iy % 3; a band recomputes
    the 1-2 rows it shares with the previous band), the depthwise output row goes to a row buffer, and the
    projection writes the output row. Per output element the same operations as the three separate kernels.
    """
    h, wd, cin = x.shape
    ho, wo, cout = out.shape
    inner = w9.shape[1]
    expand = e_packed.shape[0] > 0
    x1 = x.reshape(h * wd * cin)
    out1 = out.reshape(ho * wo * cout)
    w2 = w9.reshape(9 * inner)
    row = wd * inner
    per_band = (ho + bands - 1) // bands
    for band in prange(bands):
        ring = aligned_scratch(3 * row if expand else 0)
        dw_row = aligned_scratch(wo * inner)
        offsets = np.empty(9, np.int64)
        tmp = np.empty(LANES, np.float32)
        none = np.empty(0, np.float32)
        src = ring if expand else x1
        done = -1  # rows up to this one are in the ring
        for oy in range(band * per_band, min((band + 1) * per_band, ho)):
            iy = oy * stride - pad_top
            if expand:
                for r in range(max(iy, done + 1, 0), min(iy + 3, h)):
                    _pointwise_rows(x1, r * wd * cin, wd, cin, e_packed, e_scale, e_shift, True, none, ring,
                                    (r % 3) * row, inner, tmp)
                    done = r
            r0, r1, r2 = row_start(iy, h, row), row_start(iy + 1, h, row), row_start(iy + 2, h, row)
            if expand:  # row iy of the expansion is in ring slot iy % 3
                r0, r1, r2 = _ring_slot(r0, row), _ring_slot(r1, row), _ring_slot(r2, row)
            depthwise_row(src, r0, r1, r2, wd, inner, stride, pad_left, w2, d_scale, d_shift, True, dw_row,
                           0, wo, offsets, tmp)
            _pointwise_rows(dw_row, 0, wo, inner, p_packed, p_scale, p_shift, False,
                            x1 if add_input else none, out1, oy * wo * cout, cout, tmp)


_NO_EXPANSION = np.zeros((0, 0, NR), np.float32)


def inverted_residual(x: np.ndarray, expand: Conv | None, dw: Depthwise, project: Conv, stride: int,
                      add_input: bool) -> np.ndarray:
    """slim `expanded_conv` without a trace, in one kernel: `conv_bn_act(expand, relu6)` (unless expand is None),
    `depthwise3x3_bn_act(dw, stride)`, `conv_bn_act(project, linear, residual=x if add_input)`: the same results.

    The expansion output never exists whole: only a few rows of it, in cache. Returns (ceil(H/s), ceil(W/s), cout).
    """
    check_hwc(x, "inverted residual input")
    inner = dw.w9.shape[1]
    if (expand is None and x.shape[2] != inner) or (expand is not None and (expand.cin, expand.cout) !=
                                                       (x.shape[2], inner)) or project.cin != inner:
        raise ValueError(f"inverted residual: layers do not fit input {x.shape}")
    if expand is not None and expand.kh * expand.kw != 1 or project.kh * project.kw != 1 or inner > KC_MAX:
        raise ValueError("inverted residual: expand and project must be 1x1 convolutions of at most KC_MAX inputs")
    ho, pad_top = same_padding(x.shape[0], 3, stride)
    wo, pad_left = same_padding(x.shape[1], 3, stride)
    if add_input and (ho, wo, project.cout) != x.shape:
        raise ValueError(f"inverted residual: cannot add input {x.shape} to output {(ho, wo, project.cout)}")
    out = empty_aligned((ho, wo, project.cout))
    bands = min(numba.get_num_threads(), ho)
    e = expand if expand is not None else Conv(_NO_EXPANSION, 1, 1, 0, 0, project.scale, project.shift)
    _inverted_residual(np.ascontiguousarray(x), e.packed, e.scale, e.shift, dw.w9, dw.scale, dw.shift, stride,
                       pad_top, pad_left, project.packed, project.scale, project.shift, add_input, bands, out)
    return out

