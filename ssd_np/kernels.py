"""Numba kernels of the network: convolutions with TF "SAME" padding, batch norm, ReLU6.

Mirrors the TF ops of the inference graph, NHWC without the batch dimension (one image, `(H, W, C)` float32):

- `Conv2D` (padding SAME, strides 1 or 2) with `w` in TF layout `(kh, kw, cin, cout)`:
  `out[oy, ox, n] = sum_{ky, kx, c} x[oy*s + ky - pad_top, ox*s + kx - pad_left, c] * w[ky, kx, c, n]`
  (zero outside `x`), i.e. the matrix product `(pixels, kh*kw*cin) x (kh*kw*cin, cout)` whose left operand is
  the image's patches ("implicit GEMM": read from `x`, never materialised). `conv2d(x, w, stride)` gives the raw
  sums; `conv_bn_act(x, conv, stride, ...)` fuses what follows a convolution in the graph (batch norm, ReLU6,
  residual add, or a bias) into the same pass.
- `DepthwiseConv2dNative` (3x3, SAME, strides 1 or 2, channel multiplier 1) with `w` in TF layout `(3, 3, c, 1)`:
  `depthwise3x3(x, w, stride)` gives the raw sums; `depthwise3x3_bn_act(x, dw, stride)` adds batch norm and
  `Relu6` in the same pass.
- slim's `expanded_conv` (1x1 expand + ReLU6, 3x3 depthwise + ReLU6, 1x1 project, `add`) in one pass over the
  image's rows: `inverted_residual`, the same operations as the three kernels above.
Weights are prepared once (`prepare_conv`: packed into panels of NR output channels; `prepare_depthwise`).
- The unfused slim batch norm (`BatchNorm/batchnorm/{add, Rsqrt, mul, mul_1, mul_2, sub, add_1}`):
  `scale = gamma * rsqrt(moving_variance + 0.001)`, `shift = beta - moving_mean * scale`, `y = x * scale + shift`,
  every operation rounded to float32 on its own (no FMA, no folding of `scale` into the weights).
- `Relu6`: `min(max(x, 0), 6)`.

SAME padding (TF `GetWindowedOutputSize`): `out = ceil(in / stride)`,
`pad_total = max((out - 1) * stride + k - in, 0)`, `pad_before = pad_total // 2` (top/left), the rest after
(bottom/right): for stride 2 on an even size the extra row/column of zeros is at the bottom/right.

Vectors. The hot loops are written with explicit 16-lane float32 vectors (`F32x16`, an LLVM `<16 x float>`: one
AVX-512 zmm register, two AVX2 ymm): `vload`, `vstore`, `vsplat`, `vbroadcast`, `vfma`, `vmul`, `vadd`,
`vrelu6`. LLVM does not keep a GEMM's accumulator tile in registers when the tile is an array (it spills it to
memory or vectorizes the wrong loop); with vector-typed locals the 12 accumulators are SSA values, i.e.
registers: the register tile runs at the machine's FMA peak when its operands are in cache (measured ~58 GMAC/s
per core, AVX-512, Zen 4). Outputs and packed weights start on a cache line (`empty_aligned`).

Arithmetic and how it compares with TF (TF 2.17 CPU, oneDNN graph rewrites off):
- Dense convolutions: TF (oneDNN's sgemm inside Eigen's contraction) sums each output over K = kh*kw*cin in
  blocks of kc (a few hundred; it depends on the layer shape and the CPU's caches), each block sequentially
  with FMA from 0, then adds the blocks. `_conv_gemm` does the same with its own blocks: K <= KC_MAX is one
  block (summed over (ky, kx, c) in order with FMA from 0: bit-identical to TF whenever TF also uses one block,
  e.g. the first convolution and the 1x1 convolutions with cin <= 64); a longer K is split into blocks of
  whole taps, or of channel ranges of one tap, of at most KC_MAX products, added in order. Only the float32
  summation order differs from TF (an error bounded by K * 2**-24 * sum |x * w|, in practice ~1e-7 of the
  output's scale). The epilogue runs on the finished sums: `v = acc * scale`, `v = v + shift` (two roundings),
  then ReLU6 or `+ residual`, exactly the graph's element-wise ops.
- Depthwise: TF's kernel sums the nine taps in order `ky*3 + kx`, starting from 0, each product and each sum
  rounded separately (the pip build has no FMA in Eigen's packet `pmadd`); zero padding contributes `0 * w`.
  `_depthwise3x3` does the same (a tap outside the image adds 0 instead of `0 * w`: the same value up to the
  sign of a zero), hence reproduces TF bit for bit given the same input.
- Batch norm, ReLU6, bias and residual adds are exact element-wise float32 operations, identical to TF's.
- `Rsqrt`: TF's scalar path (the last `size % 8` channels) is `1 / sqrt(x)`; its AVX path (packets of 8, Eigen's
  fast `prsqrt`, built on the CPU's approximate reciprocal square root) is up to 2 ulp away from that, in ~1/3
  of the channels (tests/test_kernels.py measures it); its exact bits were not reproduced. `batch_norm_params`
  uses `1 / sqrt(x)` in float32 for every channel, so batch norm scales can differ from TF's by <= 2 ulp.

Every numba kernel has a plain-NumPy twin (`*_ref`, section at the end) used by the tests.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

BN_EPSILON = np.float32(0.001)  # the graph's `BatchNorm/batchnorm/add/y`
RELU6_MAX = np.float32(6.0)


def same_padding(in_size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF SAME padding along one axis: `(out_size, pad_before)`; the remaining padding goes after."""
    out_size = -(-in_size // stride)
    pad_total = max((out_size - 1) * stride + kernel - in_size, 0)
    return out_size, pad_total // 2


def batch_norm_params(gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray,
                      variance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The slim batch norm's per-channel `(scale, shift)` exactly as the graph's float32 ops compute them.

    add = variance + 0.001; Rsqrt = 1 / sqrt(add); mul = Rsqrt * gamma; mul_2 = mean * mul; sub = beta - mul_2.
    """
    rsqrt = np.float32(1.0) / np.sqrt(variance + BN_EPSILON)
    scale = (rsqrt * gamma).astype(np.float32)
    shift = (beta - mean * scale).astype(np.float32)
    return scale, shift


ALIGN = 64  # bytes: a cache line; a vector load or store that straddles two lines costs two


def empty_aligned(shape: tuple[int, ...] | int) -> np.ndarray:
    """np.empty(shape, float32) whose data starts on a cache line (numpy only guarantees 16 bytes)."""
    n = math.prod(shape) if isinstance(shape, tuple) else shape
    buffer = np.empty(n + ALIGN // 4, np.float32)
    start = (-buffer.ctypes.data % ALIGN) // 4
    return buffer[start:start + n].reshape(shape)


def _check_hwc(x: np.ndarray, name: str) -> None:
    if x.ndim != 3 or x.dtype != np.float32:
        raise ValueError(f"{name}: expected a float32 (H, W, C) array, got {x.dtype} {x.shape}")


# ---------------------------------------------------------------------------------------------------------------
# 16-lane float32 vectors for numba: a type and a few intrinsics (each one LLVM instruction or two).
# ---------------------------------------------------------------------------------------------------------------

LANES = 16
_VECTOR = ir.VectorType(ir.FloatType(), LANES)


class F32x16(types.Type):
    def __init__(self):
        super().__init__(name="F32x16")


f32x16 = F32x16()


@register_model(F32x16)
class _F32x16Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _VECTOR)


def _vector_pointer(context, builder, array_type, array, index):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), _VECTOR.as_pointer())


@intrinsic
def vload(typingctx, array, index):
    """`array.flat[index:index + 16]` of a C-contiguous float32 array, unaligned, not bounds-checked."""
    def codegen(context, builder, sig, args):
        return builder.load(_vector_pointer(context, builder, sig.args[0], *args), align=4)
    return f32x16(array, index), codegen


@intrinsic
def vstore(typingctx, array, index, v):
    """`array.flat[index:index + 16] = v`, unaligned, not bounds-checked."""
    def codegen(context, builder, sig, args):
        builder.store(args[2], _vector_pointer(context, builder, sig.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()
    return types.none(array, index, v), codegen


@intrinsic
def vsplat(typingctx, x):
    """The float32 scalar x in all 16 lanes."""
    def codegen(context, builder, sig, args):
        scalar = context.cast(builder, args[0], sig.args[0], types.float32)
        v = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(_VECTOR, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return f32x16(x), codegen


@intrinsic
def vbroadcast(typingctx, array, index):
    """`array.flat[index]` (float32, C-contiguous) in all 16 lanes, not bounds-checked (vbroadcastss)."""
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        scalar = builder.load(builder.gep(data, [args[1]]), align=4)
        v = builder.insert_element(ir.Constant(_VECTOR, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(_VECTOR, ir.Undefined),
                                      ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))
    return f32x16(array, index), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c rounded once (`llvm.fma`: vfmadd)."""
    def codegen(context, builder, sig, args):
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_VECTOR, [_VECTOR] * 3),
                                             "llvm.fma.v16f32")
        return builder.call(fma, args)
    return f32x16(a, b, c), codegen


@intrinsic
def vmul(typingctx, a, b):
    """a * b, rounded (never contracted with a following add: no fast-math flags)."""
    def codegen(context, builder, sig, args):
        return builder.fmul(*args)
    return f32x16(a, b), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b, rounded."""
    def codegen(context, builder, sig, args):
        return builder.fadd(*args)
    return f32x16(a, b), codegen


@intrinsic
def vrelu6(typingctx, v):
    """min(max(v, 0), 6) lane by lane."""
    def codegen(context, builder, sig, args):
        zero, six = ir.Constant(_VECTOR, [0.0] * LANES), ir.Constant(_VECTOR, [6.0] * LANES)
        v = builder.select(builder.fcmp_ordered("<", args[0], zero), zero, args[0])
        return builder.select(builder.fcmp_ordered(">", v, six), six, v)
    return f32x16(v), codegen


@numba.njit(cache=True)
def _vload_tail(array, index, n, tmp):
    """Like vload on a 1-D array, for only n < 16 valid elements (the other lanes 0), through the scratch tmp."""
    tmp[:] = 0.0
    for j in range(n):
        tmp[j] = array[index + j]
    return vload(tmp, 0)


# ---------------------------------------------------------------------------------------------------------------
# Dense convolution (Conv2D, SAME) as an implicit GEMM, with a fused epilogue.
# ---------------------------------------------------------------------------------------------------------------

MR = 6  # output pixels per register tile
NR = 32  # output channels per register tile (two vectors): MR x NR = 12 accumulators
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


def without_epilogue(layer: Conv | Depthwise) -> Conv | Depthwise:
    """The same layer with scale 1 and shift 0: `conv_bn_act` / `depthwise3x3_bn_act` (linear) then give the raw
    sums (for traces)."""
    return layer._replace(scale=np.ones_like(layer.scale), shift=np.zeros_like(layer.shift))


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


@numba.njit(cache=True)
def _patch_offset(iy, ix, h, wd, cin):
    """Offset in src (see _conv_gemm) of input pixel (iy, ix): the zero row h*wd*cin outside the image."""
    if 0 <= iy < h and 0 <= ix < wd:
        return (iy * wd + ix) * cin
    return h * wd * cin


@numba.njit(cache=True, inline="always")
def _tile_sums(src, a0, a1, a2, a3, a4, a5, b, k, n, narrow, acc, six=True):
    """The register tile: acc (12 vectors: 6 pixel rows x 2 column vectors) + the products of n consecutive
    patch elements, src[a_i + c] (pixel row i) times the packed weight rows b[k + c*NR : ... + NR], c < n,
    accumulated in order with FMA. narrow: the panel's second column vector is past cout (left as it is).
    six=False: a tile of 5 rows (row 5 left as it is). Pass narrow and six as constants: each combination
    compiles to its own loop."""
    s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = acc
    if narrow:
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


@numba.njit(cache=True, inline="always")
def _finish(v, part, r, kb, last, scale, shift, relu6, residual, out, o, n, tmp):
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
            v = vadd(v, _vload_tail(residual, o, n, tmp))
        vstore(tmp, 0, v)
        for i in range(n):
            out[o + i] = tmp[i]


@numba.njit(parallel=True, cache=True)
def _conv_gemm(src, h, wd, cin, packed, kh, kw, stride, pad_top, pad_left, blocks, mc, scale, shift, relu6,
               residual, out):
    """out (ho, wo, cout) = epilogue(SAME convolution of x (h, wd, cin) with packed weights (panels, K, NR)).

    src: x (h, wd, cin) flattened, followed by a row of cin zeros (read for taps outside the image; not needed
    by a 1x1 convolution).

    Epilogue per output: v = acc * scale[n]; v = v + shift[n]; then min(max(v, 0), 6) if relu6, then
    v + residual[p * cout + n] if residual is not empty (residual: (ho*wo*cout,), or (0,) for none).
    Parallel over jobs = (block of mc pixels, panel of NR channels). In a job, for each K block (`blocks`), for
    each tile of MR pixels: the MR x NR sums of the block in 12 vector registers, sequentially over
    (tap, channel) with FMA; the blocks before the last are added up in the job's partial sums `part`. Pixels
    past the end of the last tile repeat the last pixel and are not stored. A tap outside the image for all six
    pixels is skipped (it adds zeros); a kernel row inside the image for all six is one run of kw*cin elements
    (contiguous in x: the same products in the same order, less bookkeeping).
    """
    ho, wo, cout = out.shape
    n_pix = ho * wo
    panels = packed.shape[0]
    out1 = out.reshape(n_pix * cout)
    pointwise = kh == 1 and kw == 1 and stride == 1  # tap (0, 0) of output pixel p is input pixel p
    zero_row = h * wd * cin
    n_blocks = blocks.shape[0]
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
        sc0, sc1 = vload(scale, j0), vload(scale, j0 + LANES)  # the panel's epilogue, in registers
        sh0, sh1 = vload(shift, j0), vload(shift, j0 + LANES)
        for i in range(0 if pointwise else mc + MR):
            q = min(m0 + i, n_pix - 1)
            iy[i] = (q // wo) * stride - pad_top
            ix[i] = (q % wo) * stride - pad_left
        w0 = min(cout - j0, LANES)  # valid lanes of the two accumulator columns
        w1 = min(max(cout - j0 - LANES, 0), LANES)
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
                    acc = _tile_sums(src, a0 + c0, a1 + c0, a2 + c0, a3 + c0, a4 + c0, a5 + c0, b,
                                     (t * cin + c0) * NR, n, w1 == 0, acc)
                    t += n // (c1 - c0)
                s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = acc
                r = (p - m0) * NR
                o = p * cout + j0
                for i, v0, v1 in ((0, s00, s01), (1, s10, s11), (2, s20, s21), (3, s30, s31), (4, s40, s41),
                                  (5, s50, s51)):
                    valid = p + i < m1
                    _finish(v0, part, r, kb, last, sc0, sh0, relu6, residual, out1, o, w0 if valid else 0, tmp)
                    _finish(v1, part, r + LANES, kb, last, sc1, sh1, relu6, residual, out1, o + LANES,
                            w1 if valid else 0, tmp)
                    r += NR
                    o += cout


_NO_RESIDUAL = np.zeros(0, np.float32)


def conv_bn_act(x: np.ndarray, conv: Conv, stride: int, relu6: bool,
                residual: np.ndarray | None = None) -> np.ndarray:
    """Conv2D SAME of x (H, W, cin) with a prepared `Conv`, then `* scale + shift`, [ReLU6], [+ residual].

    Returns (ceil(H/s), ceil(W/s), cout) float32. residual, when given, has that shape.
    """
    _check_hwc(x, "conv input")
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
    _check_hwc(x, "conv2d input")
    if w.ndim != 4 or x.shape[2] != w.shape[2] or w.dtype != np.float32:
        raise ValueError(f"conv2d: weights {w.dtype} {w.shape} do not fit input {x.shape}")
    return conv_bn_act(x, prepare_conv(w), stride, relu6=False)


# ---------------------------------------------------------------------------------------------------------------
# Batch norm + ReLU6 on a conv output (in place), depthwise conv fused with them.
# ---------------------------------------------------------------------------------------------------------------

@numba.njit(parallel=True, cache=True)
def _bn_act(y2, scale, shift, relu6):
    """y2 (P, C) <- y2 * scale + shift (two roundings), then min(max(., 0), 6) if relu6."""
    n, c = y2.shape
    for p in prange(n):
        row = y2[p]
        for ch in range(c):
            v = row[ch] * scale[ch]
            v = v + shift[ch]
            if relu6:
                v = min(max(v, np.float32(0.0)), np.float32(6.0))
            row[ch] = v


def batch_norm_act(y: np.ndarray, scale: np.ndarray, shift: np.ndarray, relu6: bool) -> np.ndarray:
    """In place: y (H, W, C) <- [Relu6](y * scale + shift), the graph's `mul_1`, `add_1` (and `Relu6`)."""
    _bn_act(y.reshape(-1, y.shape[-1]), scale, shift, relu6)
    return y


@numba.njit(cache=True, inline="always")
def _depthwise_pixel(x2, w2, c, c0, n, offsets, tmp):
    """Depthwise sum of channels c0 .. c0 + n (n <= 16) of one output pixel whose 9 input pixels start at
    offsets (flat, -1 outside the image), taps in order from 0, products and sums rounded."""
    s = vsplat(0.0)
    for t in range(9):
        if offsets[t] >= 0:
            if n == LANES:
                s = vadd(s, vmul(vload(x2, offsets[t] + c0), vload(w2, t * c + c0)))
            else:
                xt = _vload_tail(x2, offsets[t] + c0, n, tmp)
                s = vadd(s, vmul(xt, _vload_tail(w2, t * c + c0, n, tmp)))
    return s


@numba.njit(cache=True, inline="always")
def _bn_store(s, scale, shift, c0, n, relu6, out2, o, tmp):
    """out2[o:o + n] = [relu6](s * scale[c0:] + shift[c0:]) for the first n lanes of s."""
    if n == LANES:
        s = vadd(vmul(s, vload(scale, c0)), vload(shift, c0))
    else:
        s = vadd(vmul(s, _vload_tail(scale, c0, n, tmp)), _vload_tail(shift, c0, n, tmp))
    if relu6:
        s = vrelu6(s)
    if n == LANES:
        vstore(out2, o, s)
    else:
        vstore(tmp, 0, s)
        for j in range(n):
            out2[o + j] = tmp[j]


@numba.njit(cache=True, inline="always")
def _depthwise_row(src, r0, r1, r2, wd, c, stride, pad_left, w2, scale, shift, relu6, out, o, wo, offsets, tmp):
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


@numba.njit(cache=True)
def _row_start(iy, h, row):
    """Flat offset of image row iy (of `row` elements), -1 outside the image."""
    return iy * row if 0 <= iy < h else -1


@numba.njit(parallel=True, cache=True)
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
        r0, r1, r2 = _row_start(iy, h, wd * c), _row_start(iy + 1, h, wd * c), _row_start(iy + 2, h, wd * c)
        _depthwise_row(x1, r0, r1, r2, wd, c, stride, pad_left, w2, scale, shift, relu6, out1, oy * wo * c, wo,
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
    _check_hwc(x, "depthwise input")
    c = x.shape[2]
    if dw.w9.shape != (9, c):
        raise ValueError(f"depthwise: weights for {dw.w9.shape[1]} channels do not fit input {x.shape}")
    ho, pad_top = same_padding(x.shape[0], 3, stride)
    wo, pad_left = same_padding(x.shape[1], 3, stride)
    out = empty_aligned((ho, wo, c))
    _depthwise3x3(np.ascontiguousarray(x), dw.w9, stride, pad_top, pad_left, dw.scale, dw.shift, relu6, out)
    return out


def depthwise3x3(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """TF `DepthwiseConv2dNative` 3x3 SAME: x (H, W, c), w (3, 3, c, 1) -> (ceil(H/s), ceil(W/s), c), the raw sums
    (prepares w on every call: the network uses `prepare_depthwise` once and `depthwise3x3_bn_act`)."""
    _check_hwc(x, "depthwise input")
    c = x.shape[2]
    if w.shape != (3, 3, c, 1) or w.dtype != np.float32:
        raise ValueError(f"depthwise: weights {w.dtype} {w.shape} do not fit input {x.shape}, want (3, 3, {c}, 1)")
    return depthwise3x3_bn_act(x, prepare_depthwise(w), stride, relu6=False)


# ---------------------------------------------------------------------------------------------------------------
# A whole inverted residual block (expand 1x1, depthwise 3x3, project 1x1) in one pass over the image's rows.
# ---------------------------------------------------------------------------------------------------------------

@numba.njit(cache=True)
def _ring_slot(start, row):
    """The ring-buffer offset of the image row that starts at `start` (rows of `row` elements; -1 stays -1)."""
    return ((start // row) % 3) * row if start >= 0 else -1


@numba.njit(cache=True)
def _aligned_scratch(n):
    """np.empty(n, float32) starting on a cache line (inside a kernel)."""
    buffer = np.empty(n + ALIGN // 4, np.float32)
    start = (-buffer.ctypes.data % ALIGN) // 4
    return buffer[start:start + n]


@numba.njit(cache=True, inline="always")
def _pointwise_rows(src, s0, n_pix, cin, packed, scale, shift, relu6, residual, out, o0, cout, tmp):
    """A 1x1 convolution of n_pix consecutive pixels src[s0 + p*cin + c] (K = cin <= KC_MAX: one block), with
    conv_bn_act's epilogue, into out[o0 + p*cout + n] (+ residual[o0 + p*cout + n] unless residual is empty).
    The same register tiles and order of operations as _conv_gemm, hence the same results."""
    zero = vsplat(0.0)
    for jp in range(packed.shape[0]):
        j0 = jp * NR
        b = packed[jp].ravel()
        sc0, sc1 = vload(scale, j0), vload(scale, j0 + LANES)
        sh0, sh1 = vload(shift, j0), vload(shift, j0 + LANES)
        w0 = min(cout - j0, LANES)
        w1 = min(max(cout - j0 - LANES, 0), LANES)
        for p in range(0, n_pix, MR):
            a0, a1, a2 = s0 + p * cin, s0 + min(p + 1, n_pix - 1) * cin, s0 + min(p + 2, n_pix - 1) * cin
            a3, a4, a5 = (s0 + min(p + 3, n_pix - 1) * cin, s0 + min(p + 4, n_pix - 1) * cin,
                          s0 + min(p + 5, n_pix - 1) * cin)
            acc = _tile_sums(src, a0, a1, a2, a3, a4, a5, b, 0, cin, w1 == 0,
                             (zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero, zero))
            s00, s01, s10, s11, s20, s21, s30, s31, s40, s41, s50, s51 = acc
            o = o0 + p * cout + j0
            for i, v0, v1 in ((0, s00, s01), (1, s10, s11), (2, s20, s21), (3, s30, s31), (4, s40, s41),
                              (5, s50, s51)):
                valid = p + i < n_pix
                _finish(v0, tmp, 0, 0, True, sc0, sh0, relu6, residual, out, o, w0 if valid else 0, tmp)
                _finish(v1, tmp, 0, 0, True, sc1, sh1, relu6, residual, out, o + LANES, w1 if valid else 0, tmp)
                o += cout


@numba.njit(parallel=True, cache=True)
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
        ring = _aligned_scratch(3 * row if expand else 0)
        depthwise_row = _aligned_scratch(wo * inner)
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
            r0, r1, r2 = _row_start(iy, h, row), _row_start(iy + 1, h, row), _row_start(iy + 2, h, row)
            if expand:  # row iy of the expansion is in ring slot iy % 3
                r0, r1, r2 = _ring_slot(r0, row), _ring_slot(r1, row), _ring_slot(r2, row)
            _depthwise_row(src, r0, r1, r2, wd, inner, stride, pad_left, w2, d_scale, d_shift, True, depthwise_row,
                           0, wo, offsets, tmp)
            _pointwise_rows(depthwise_row, 0, wo, inner, p_packed, p_scale, p_shift, False,
                            x1 if add_input else none, out1, oy * wo * cout, cout, tmp)


_NO_EXPANSION = np.zeros((0, 0, NR), np.float32)


def inverted_residual(x: np.ndarray, expand: Conv | None, dw: Depthwise, project: Conv, stride: int,
                      add_input: bool) -> np.ndarray:
    """slim `expanded_conv` without a trace, in one kernel: `conv_bn_act(expand, relu6)` (unless expand is None),
    `depthwise3x3_bn_act(dw, stride)`, `conv_bn_act(project, linear, residual=x if add_input)`: the same results.

    The expansion output never exists whole: only a few rows of it, in cache. Returns (ceil(H/s), ceil(W/s), cout).
    """
    _check_hwc(x, "inverted residual input")
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


# ---------------------------------------------------------------------------------------------------------------
# Plain-NumPy twins (obviously correct, slow): the tests compare the kernels above with these.
# ---------------------------------------------------------------------------------------------------------------

def pad_same_ref(x: np.ndarray, kernel: int, stride: int) -> np.ndarray:
    """x (H, W, C) zero-padded for a SAME window: fewer zeros top/left than bottom/right when odd."""
    ho, top = same_padding(x.shape[0], kernel, stride)
    wo, left = same_padding(x.shape[1], kernel, stride)
    bottom = (ho - 1) * stride + kernel - x.shape[0] - top
    right = (wo - 1) * stride + kernel - x.shape[1] - left
    return np.pad(x, ((top, max(bottom, 0)), (left, max(right, 0)), (0, 0)))


def conv2d_ref(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """SAME convolution summed in float64 over taps and channels, rounded once to float32."""
    kh, kw, _, cout = w.shape
    ho, _ = same_padding(x.shape[0], kh, stride)
    wo, _ = same_padding(x.shape[1], kw, stride)
    xp = pad_same_ref(x, kh, stride).astype(np.float64)
    out = np.zeros((ho, wo, cout), np.float64)
    for ky in range(kh):
        for kx in range(kw):
            window = xp[ky:ky + (ho - 1) * stride + 1:stride, kx:kx + (wo - 1) * stride + 1:stride]
            out += window @ w[ky, kx].astype(np.float64)
    return out.astype(np.float32)


def depthwise3x3_ref(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """Depthwise 3x3 SAME in float32, taps summed in order ky*3 + kx starting from 0 (TF's order)."""
    ho, _ = same_padding(x.shape[0], 3, stride)
    wo, _ = same_padding(x.shape[1], 3, stride)
    xp = pad_same_ref(x, 3, stride)
    out = np.zeros((ho, wo, x.shape[2]), np.float32)
    for ky in range(3):
        for kx in range(3):
            window = xp[ky:ky + (ho - 1) * stride + 1:stride, kx:kx + (wo - 1) * stride + 1:stride]
            out = out + window * w[ky, kx, :, 0]
    return out


def batch_norm_ref(y: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The graph's `mul_1` then `add_1`."""
    return (y * scale) + shift


def relu6_ref(y: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(y, np.float32(0.0)), RELU6_MAX)
