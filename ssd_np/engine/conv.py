"""`Conv2D` (SAME, strides 1 or 2) as an implicit GEMM, with batch norm, ReLU6, bias or residual add fused.

Twin of `reference.mobilenet_v2.conv2d` (and of its `conv_bn`): `out[oy, ox, n] = sum_{ky, kx, c}
x[oy*s + ky - pad_top, ox*s + kx - pad_left, c] * w[ky, kx, c, n]`, the matrix product `(pixels, kh*kw*cin) x
(kh*kw*cin, cout)` whose left operand is the image's patches, read from `x` and never materialised. Weights are
packed once (`prepare_conv`) into panels of NR output channels; `conv_bn_act(x, conv, stride, ...)` applies what
follows a convolution in the graph (`v = acc * scale`, `v = v + shift`: two roundings; then ReLU6 or
`+ residual`) in the same pass.

The register tile: MR = 6 output pixels x NR output channels (one or two F32x16 vectors), accumulated over K in
order with FMA. NR is chosen for the register file numba compiles for (`simd.TARGET`): the tile's accumulators,
the NR weights of one step and the broadcast input must fit in the vector registers, else the loop spills to the
stack. AVX-512 (32 zmm): NR = 32, 12 + 2 + 1 = 15 registers. AVX2 (16 ymm, an F32x16 is two): NR = 32 would need
24 + 4 + 1 = 29, so NR = 16: 12 + 2 + 1 = 15. NEON (32 q registers, an F32x16 is four): NR = 16, 24 + 4 + 1 = 29.
SSE (16 xmm): NR = 16 still spills (correct, slower). Each output is the same sum in the same order whatever NR
is: the results do not depend on the ISA. `tools/inspect_asm.py` shows the spills, `tools/bench.py` the fraction
of the FMA peak reached.

Arithmetic against TF (TF 2.17 CPU, oneDNN graph rewrites off): TF (oneDNN's sgemm inside Eigen's contraction)
sums each output over K = kh*kw*cin in blocks of kc (a few hundred; it depends on the layer and the CPU's
caches), each block sequentially with FMA from 0, then adds the blocks. `_conv_gemm` does the same with its own
blocks: K <= KC_MAX is one block (bit-identical to TF whenever TF also uses one block, e.g. the first
convolution and the 1x1 convolutions with cin <= 64); a longer K is split into blocks of whole taps, or of
channel ranges of one tap, of at most KC_MAX products, added in order. Only the float32 summation order differs
from TF (an error bounded by K * 2**-24 * sum |x * w|, in practice ~1e-7 of the output's scale).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import prange

from ssd_np.engine.simd import (LANES, REGISTERS_PER_VECTOR, TARGET, check_hwc, empty_aligned, vadd, vbroadcast,
                               vfma, vload, vload_tail, vmul, vrelu6, vsplat, vstore)
from ssd_np.jit import njit
from ssd_np.reference.mobilenet_v2 import same_padding

# ---------------------------------------------------------------------------------------------------------------
# Dense convolution (Conv2D, SAME) as an implicit GEMM, with a fused epilogue.
# ---------------------------------------------------------------------------------------------------------------

MR = 6  # output pixels per register tile


def tile_registers(nr: int) -> int:
    """Vector registers the inner loop of an MR x nr tile keeps live: accumulators, one row of weights, one
    broadcast input."""
    return (MR * nr // LANES + nr // LANES) * REGISTERS_PER_VECTOR + 1


NR = 2 * LANES if tile_registers(2 * LANES) <= TARGET.registers else LANES  # output channels per register tile
KC_MAX = 1280  # products summed in one block (see the module docstring): 160 KiB of a panel's weights
MC = 96  # output pixels per parallel job (16 tiles) at most; the jobs of a layer get equal numbers of tiles


def pack_weights(w: np.ndarray) -> np.ndarray:
    """w (kh, kw, cin, cout) -> (ceil(cout / NR), kh*kw*cin, NR): panels of NR output channels, zero-padded.

    Row k of a panel holds the NR weights that multiply patch element k = (ky*kw + kx)*cin + c, contiguous.
    """
    k = w.shape[0] * w.shape[1] * w.shape[2]
    cout = w.shape[3]
    panels = -(-cout // NR)
    packed = empty_aligned((panels, k, NR))
    packed[:] = 0.0
    for p in range(panels):
        n = min(NR, cout - p * NR)
        packed[p, :, :n] = w.reshape(k, cout)[:, p * NR:p * NR + n]
    return packed


class Conv(NamedTuple):
    """A convolution prepared for `conv_bn_act`: packed weights and the epilogue `y = conv * scale + shift`.

    packed: `pack_weights(w)`; scale, shift: (panels * NR,) float32, zero-padded past cout.
    """
    packed: np.ndarray
    kh: int
    kw: int
    cin: int
    cout: int
    scale: np.ndarray
    shift: np.ndarray


def prepare_conv(w: np.ndarray, scale: np.ndarray | None = None, shift: np.ndarray | None = None) -> Conv:
    """Pack w (kh, kw, cin, cout) once; scale/shift (cout,) default to 1 and 0 (the raw convolution)."""
    if w.ndim != 4 or w.dtype != np.float32:
        raise ValueError(f"conv weights: expected float32 (kh, kw, cin, cout), got {w.dtype} {w.shape}")
    kh, kw, cin, cout = w.shape
    packed = pack_weights(w)
    width = packed.shape[0] * NR
    padded_scale, padded_shift = np.zeros(width, np.float32), np.zeros(width, np.float32)
    padded_scale[:cout] = 1.0 if scale is None else scale
    padded_shift[:cout] = 0.0 if shift is None else shift
    return Conv(packed, kh, kw, cin, cout, padded_scale, padded_shift)


def _blocks(kh: int, kw: int, cin: int) -> np.ndarray:
    """The K blocks (tap_begin, tap_end, c_begin, c_end) of a kh x kw x cin patch, each <= KC_MAX products."""
    taps = kh * kw
    if taps * cin <= KC_MAX:
        return np.array([[0, taps, 0, cin]], np.int64)
    if cin <= KC_MAX:
        per = KC_MAX // cin
        return np.array([[t, min(t + per, taps), 0, cin] for t in range(0, taps, per)], np.int64)
    chunks = -(-cin // KC_MAX)
    bounds = [cin * i // chunks for i in range(chunks + 1)]
    return np.array([[t, t + 1, bounds[i], bounds[i + 1]] for t in range(taps) for i in range(chunks)], np.int64)


@njit
def _patch_offset(iy, ix, h, wd, cin):
    """Offset in src (see _conv_gemm) of input pixel (iy, ix): the zero row h*wd*cin outside the image."""
    if 0 <= iy < h and 0 <= ix < wd:
        return (iy * wd + ix) * cin
    return h * wd * cin


@njit(inline="always")
def _tile_sums_one_column(src, a0, a1, a2, a3, a4, a5, b, k, n, narrow, acc, six=True):
    """`tile_sums` of the tile's first column vector only (NR is one vector, or the panel is narrow)."""
    s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = acc
    for c in range(n):
        b0 = vload(b, k)
        k += NR
        s00 = vfma(vbroadcast(src, a0 + c), b0, s00)
        s10 = vfma(vbroadcast(src, a1 + c), b0, s10)
        s20 = vfma(vbroadcast(src, a2 + c), b0, s20)
        s30 = vfma(vbroadcast(src, a3 + c), b0, s30)
        s40 = vfma(vbroadcast(src, a4 + c), b0, s40)
        if six:
            s50 = vfma(vbroadcast(src, a5 + c), b0, s50)
    return s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51


@njit(inline="always")
def _tile_sums_two_columns(src, a0, a1, a2, a3, a4, a5, b, k, n, narrow, acc, six=True):
    """`tile_sums` with NR = two vectors."""
    if narrow:
        return _tile_sums_one_column(src, a0, a1, a2, a3, a4, a5, b, k, n, narrow, acc, six)
    s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = acc
    for c in range(n):
        b0 = vload(b, k)
        b1 = vload(b, k + LANES)
        k += NR
        v = vbroadcast(src, a0 + c)
        s00 = vfma(v, b0, s00)
        s01 = vfma(v, b1, s01)
        v = vbroadcast(src, a1 + c)
        s10 = vfma(v, b0, s10)
        s11 = vfma(v, b1, s11)
        v = vbroadcast(src, a2 + c)
        s20 = vfma(v, b0, s20)
        s21 = vfma(v, b1, s21)
        v = vbroadcast(src, a3 + c)
        s30 = vfma(v, b0, s30)
        s31 = vfma(v, b1, s31)
        v = vbroadcast(src, a4 + c)
        s40 = vfma(v, b0, s40)
        s41 = vfma(v, b1, s41)
        if six:
            v = vbroadcast(src, a5 + c)
            s50 = vfma(v, b0, s50)
            s51 = vfma(v, b1, s51)
    return s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51


# tile_sums(src, a0, a1, a2, a3, a4, a5, b, k, n, narrow, acc, six=True): the register tile. acc (12 vectors: 6
# pixel rows x 2 column vectors) + the products of n consecutive patch elements, src[a_i + c] (pixel row i) times
# the packed weight rows b[k + c*NR : ... + NR], c < n, accumulated in order with FMA. narrow: the panel's second
# column vector is past cout, or NR is one vector (left as it is). six=False: a tile of 5 rows (row 5 left as it
# is). Pass narrow and six as constants: each combination compiles to its own loop. With NR = one vector the
# two-column loop is never compiled (it would be dead code, and compile time).
tile_sums = _tile_sums_two_columns if NR > LANES else _tile_sums_one_column


@njit(inline="always")
def column_widths(cout, j0):
    """Valid lanes of the tile's two accumulator columns for the panel starting at channel j0 (the second column
    has none when NR is one vector: loads for it then re-read the first, stores are skipped)."""
    return min(cout - j0, LANES), min(max(cout - j0 - LANES, 0), NR - LANES)


@njit(inline="always")
def finish_tile(v, part, r, kb, last, scale, shift, relu6, residual, out, o, n, tmp):
    """One accumulator vector (output out[o:o + n]) at the end of K block kb: add the partial sums of the earlier
    blocks (part[r:]), then either keep the partial sums or, after the last block, apply the epilogue (scale and
    shift: vectors) and store the n valid lanes (n = 0: a pixel past the end, dropped)."""
    if kb > 0:
        v = vadd(vload(part, r), v)
    if not last:
        vstore(part, r, v)
        return
    if n == 0:
        return
    v = vadd(vmul(v, scale), shift)
    if relu6:
        v = vrelu6(v)
    if n == LANES:
        if residual.size > 0:
            v = vadd(v, vload(residual, o))
        vstore(out, o, v)
    else:
        if residual.size > 0:
            v = vadd(v, vload_tail(residual, o, n, tmp))
        vstore(tmp, 0, v)
        for i in range(n):
            out[o + i] = tmp[i]


@njit(parallel=True)
def _conv_gemm(src, h, wd, cin, packed, kh, kw, stride, pad_top, pad_left, blocks, mc, scale, shift, relu6,
               residual, out):
    """out (ho, wo, cout) = epilogue(SAME convolution of x (h, wd, cin) with packed weights (panels, K, NR)).

    src: x (h, wd, cin) flattened, followed by a row of cin zeros (read for taps outside the image; not needed
    by a 1x1 convolution).

    Epilogue per output: v = acc * scale[n]; v = v + shift[n]; then min(max(v, 0), 6) if relu6, then
    v + residual[p * cout + n] if residual is not empty (residual: (ho*wo*cout,), or (0,) for none).
    Parallel over jobs = (block of mc pixels, panel of NR channels). In a job, for each K block (`blocks`), for
    each tile of MR pixels: the MR x NR sums of the block in vector registers, sequentially over (tap, channel)
    with FMA; the blocks before the last are added up in the job's partial sums `part`. Pixels past the end of
    the last tile repeat the last pixel and are not stored. A tap outside the image for all six pixels is
    skipped (it adds zeros); a kernel row inside the image for all six is one run of kw*cin elements (contiguous
    in x: the same products in the same order, less bookkeeping). When K is one block and all six windows lie
    inside the image, the tile is kh such runs, rows wd*cin apart, without looking at each tap (the first
    convolution, runs of 9: 0.46 -> 0.37 ms on one Zen 5 core). The job's body stays inside the parallel loop
    (as a function of its own, called from it, short-K layers ran ~25 % slower).
    """
    ho, wo, cout = out.shape
    n_pix = ho * wo
    panels = packed.shape[0]
    out1 = out.reshape(n_pix * cout)
    pointwise = kh == 1 and kw == 1 and stride == 1  # tap (0, 0) of output pixel p is input pixel p
    zero_row = h * wd * cin
    n_blocks = blocks.shape[0]
    whole = not pointwise and n_blocks == 1  # a tile whose windows lie inside the image: kh runs (docstring)
    m_blocks = (n_pix + mc - 1) // mc
    for job in prange(m_blocks * panels):
        m0 = (job // panels) * mc
        m1 = min(m0 + mc, n_pix)
        j0 = (job % panels) * NR
        b = packed[job % panels].ravel()
        part = np.empty((mc + MR) * NR, np.float32)
        tmp = np.empty(LANES, np.float32)
        iy = np.zeros(mc + MR, np.int64)  # window origin of each pixel of the job (past the end: the last pixel)
        ix = np.zeros(mc + MR, np.int64)
        sc0, sc1 = vload(scale, j0), vload(scale, j0 + NR - LANES)  # the panel's epilogue, in registers
        sh0, sh1 = vload(shift, j0), vload(shift, j0 + NR - LANES)
        for i in range(0 if pointwise else mc + MR):
            q = min(m0 + i, n_pix - 1)
            iy[i] = (q // wo) * stride - pad_top
            ix[i] = (q % wo) * stride - pad_left
        w0, w1 = column_widths(cout, j0)
        for kb in range(n_blocks):
            t0, t1, c0, c1 = blocks[kb, 0], blocks[kb, 1], blocks[kb, 2], blocks[kb, 3]
            last = kb == n_blocks - 1
            for p in range(m0, m1, MR):
                i = p - m0
                iy0, iy1, iy2, iy3, iy4, iy5 = iy[i], iy[i + 1], iy[i + 2], iy[i + 3], iy[i + 4], iy[i + 5]
                ix0, ix1, ix2, ix3, ix4, ix5 = ix[i], ix[i + 1], ix[i + 2], ix[i + 3], ix[i + 4], ix[i + 5]
                zero = vsplat(0.0)
                acc = (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero)
                t = t0
                if (whole and min(iy0, iy1, iy2, iy3, iy4, iy5) >= 0 and max(iy0, iy1, iy2, iy3, iy4, iy5) + kh <= h
                        and min(ix0, ix1, ix2, ix3, ix4, ix5) >= 0 and max(ix0, ix1, ix2, ix3, ix4, ix5) + kw <= wd):
                    a0, a1, a2 = (iy0 * wd + ix0) * cin, (iy1 * wd + ix1) * cin, (iy2 * wd + ix2) * cin
                    a3, a4, a5 = (iy3 * wd + ix3) * cin, (iy4 * wd + ix4) * cin, (iy5 * wd + ix5) * cin
                    for ky in range(kh):
                        d = ky * wd * cin
                        acc = tile_sums(src, a0 + d, a1 + d, a2 + d, a3 + d, a4 + d, a5 + d, b, ky * kw * cin * NR,
                                        kw * cin, w1 == 0, acc)
                    t = t1
                while t < t1:
                    n = c1 - c0  # products of this step: one tap's channels, or a whole kernel row (below)
                    if pointwise:
                        end = n_pix - 1
                        a0, a1, a2 = p * cin, min(p + 1, end) * cin, min(p + 2, end) * cin
                        a3, a4, a5 = min(p + 3, end) * cin, min(p + 4, end) * cin, min(p + 5, end) * cin
                    else:
                        ky = t // kw
                        kx = t % kw
                        a0 = _patch_offset(iy0 + ky, ix0 + kx, h, wd, cin)
                        a1 = _patch_offset(iy1 + ky, ix1 + kx, h, wd, cin)
                        a2 = _patch_offset(iy2 + ky, ix2 + kx, h, wd, cin)
                        a3 = _patch_offset(iy3 + ky, ix3 + kx, h, wd, cin)
                        a4 = _patch_offset(iy4 + ky, ix4 + kx, h, wd, cin)
                        a5 = _patch_offset(iy5 + ky, ix5 + kx, h, wd, cin)
                        if min(a0, a1, a2, a3, a4, a5) == zero_row:
                            t += 1
                            continue  # the whole tile is outside the image at this tap: only zeros to add
                        if (kx == 0 and t + kw <= t1 and n == cin and max(a0, a1, a2, a3, a4, a5) < zero_row
                                and max(ix0, ix1, ix2, ix3, ix4, ix5) + kw <= wd):
                            n = kw * cin  # the kernel row is inside the image for all six: contiguous in x
                    acc = tile_sums(src, a0 + c0, a1 + c0, a2 + c0, a3 + c0, a4 + c0, a5 + c0, b,
                                 (t * cin + c0) * NR, n, w1 == 0, acc)
                    t += n // (c1 - c0)
                s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = acc
                r = (p - m0) * NR
                o = p * cout + j0
                for i, v0, v1 in ((0, s00, s01), (1, s10, s11), (2, s20, s21), (3, s30, s31), (4, s40, s41),
                                  (5, s50, s51)):
                    valid = p + i < m1
                    finish_tile(v0, part, r, kb, last, sc0, sh0, relu6, residual, out1, o, w0 if valid else 0, tmp)
                    if NR > LANES:
                        finish_tile(v1, part, r + LANES, kb, last, sc1, sh1, relu6, residual, out1, o + LANES,
                                    w1 if valid else 0, tmp)
                    r += NR
                    o += cout


_NO_RESIDUAL = np.zeros(0, np.float32)


def conv_bn_act(x: np.ndarray, conv: Conv, stride: int, relu6: bool,
                residual: np.ndarray | None = None) -> np.ndarray:
    """Conv2D SAME of x (H, W, cin) with a prepared `Conv`, then `* scale + shift`, [ReLU6], [+ residual].

    Returns (ceil(H/s), ceil(W/s), cout) float32. residual, when given, has that shape.
    """
    check_hwc(x, "conv input")
    if x.shape[2] != conv.cin:
        raise ValueError(f"conv: weights for {conv.cin} input channels do not fit input {x.shape}")
    ho, pad_top = same_padding(x.shape[0], conv.kh, stride)
    wo, pad_left = same_padding(x.shape[1], conv.kw, stride)
    out = empty_aligned((ho, wo, conv.cout))
    if conv.kh == conv.kw == 1:  # a 1x1 window never leaves the image: no zero row needed
        src = np.ascontiguousarray(x).reshape(-1)
    else:
        src = empty_aligned(x.size + conv.cin)
        src[:x.size] = x.reshape(-1)
        src[x.size:] = 0.0
    if residual is None:
        residual2 = _NO_RESIDUAL
    else:
        if residual.shape != out.shape or residual.dtype != np.float32:
            raise ValueError(f"conv: residual {residual.dtype} {residual.shape} does not fit output {out.shape}")
        residual2 = np.ascontiguousarray(residual).reshape(-1)
    n_pix = ho * wo
    m_blocks = -(-n_pix // MC)
    mc = -(-n_pix // (m_blocks * MR)) * MR  # MC or fewer pixels per job, in tiles of MR, balanced
    _conv_gemm(src, x.shape[0], x.shape[1], conv.cin, conv.packed, conv.kh, conv.kw, stride, pad_top, pad_left,
               _blocks(conv.kh, conv.kw, conv.cin), mc, conv.scale, conv.shift, relu6, residual2, out)
    return out


def conv2d(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """TF `Conv2D` with SAME padding: x (H, W, cin), w (kh, kw, cin, cout) -> (ceil(H/s), ceil(W/s), cout).

    The raw sums (packs w on every call: the network uses `prepare_conv` once and `conv_bn_act`).
    """
    check_hwc(x, "conv2d input")
    if w.ndim != 4 or x.shape[2] != w.shape[2] or w.dtype != np.float32:
        raise ValueError(f"conv2d: weights {w.dtype} {w.shape} do not fit input {x.shape}")
    return conv_bn_act(x, prepare_conv(w), stride, relu6=False)
