"""Numba kernels of the network: convolutions with TF "SAME" padding, batch norm, ReLU6.

Mirrors the TF ops of the inference graph, NHWC without the batch dimension (one image, `(H, W, C)` float32):

- `Conv2D` (padding SAME, strides 1 or 2): `conv2d(x, w, stride)` with `w` in TF layout `(kh, kw, cin, cout)`,
  `out[oy, ox, n] = sum_{ky, kx, c} x[oy*s + ky - pad_top, ox*s + kx - pad_left, c] * w[ky, kx, c, n]`
  (zero outside `x`). A 1x1 convolution is the matmul `(H*W, cin) x (cin, cout)`.
- `DepthwiseConv2dNative` (3x3, SAME, strides 1 or 2, channel multiplier 1) followed by the slim batch norm and
  `Relu6`: `depthwise3x3_bn_relu6(x, w, stride, scale, shift)` with `w` in TF layout `(3, 3, c, 1)`.
- The unfused slim batch norm (`BatchNorm/batchnorm/{add, Rsqrt, mul, mul_1, mul_2, sub, add_1}`):
  `scale = gamma * rsqrt(moving_variance + 0.001)`, `shift = beta - moving_mean * scale`, `y = x * scale + shift`,
  every operation rounded to float32 on its own (no FMA, no folding of `scale` into the weights).
- `Relu6`: `min(max(x, 0), 6)`.

SAME padding (TF `GetWindowedOutputSize`): `out = ceil(in / stride)`,
`pad_total = max((out - 1) * stride + k - in, 0)`, `pad_before = pad_total // 2` (top/left), the rest after
(bottom/right): for stride 2 on an even size the extra row/column of zeros is at the bottom/right.

Arithmetic and how it compares with TF (TF 2.17 CPU, oneDNN graph rewrites off):
- Depthwise: TF's kernel sums the nine taps in order `ky*3 + kx`, starting from 0, each product and each sum
  rounded separately (the pip build has no FMA in Eigen's packet `pmadd`); zero padding contributes `0 * w`.
  `depthwise3x3_bn_relu6` does the same (compiled without fast-math, so LLVM neither contracts nor reorders),
  hence reproduces TF bit for bit given the same input.
- Dense convolutions: TF (oneDNN's sgemm inside Eigen's contraction) sums each output over K = kh*kw*cin in
  blocks of kc (a few hundred; it depends on the layer shape and the CPU's caches), each block sequentially with
  FMA from 0, then adds the blocks. `conv2d` has two kernels:
  * up to `SEQUENTIAL_MAX_CIN` input channels, `_conv2d_sequential`: each output summed sequentially over
    (ky, kx, c) with FMA, vectorised across output channels. That is TF's order whenever K fits in one block,
    e.g. the first convolution (K = 27) and the 1x1 convolutions with cin <= 64: bit-identical to TF there;
  * above, `_conv2d_dot`: 4x4 register tiles of dot products over the input channels with
    `fastmath={"contract", "reassoc"}` limited to the dot product itself (LLVM splits each sum into vector lanes
    and fuses multiply-adds). That changes only the float32 summation order (an error bounded by
    K * 2**-24 * sum |x * w|, in practice ~1e-7 of the output's scale); the sums are stored before batch
    norm, which runs without fast-math.
- Batch norm, ReLU6, bias and residual adds are exact element-wise float32 operations, identical to TF's.
- `Rsqrt`: TF's scalar path (the last `size % 8` channels) is `1 / sqrt(x)`; its AVX path (packets of 8, Eigen's
  fast `prsqrt`, built on the CPU's approximate reciprocal square root) is up to 2 ulp away from that, in ~1/3
  of the channels (tests/test_kernels.py measures it); its exact bits were not reproduced. `batch_norm_params`
  uses `1 / sqrt(x)` in float32 for every channel, so batch norm scales can differ from TF's by <= 2 ulp.

Every numba kernel has a plain-NumPy twin (`*_ref`, section at the end) used by the tests.
"""
from __future__ import annotations

import weakref

import numba
import numpy as np
from numba import prange

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


def _check_hwc(x: np.ndarray, name: str) -> None:
    if x.ndim != 3 or x.dtype != np.float32:
        raise ValueError(f"{name}: expected a float32 (H, W, C) array, got {x.dtype} {x.shape}")


# ---------------------------------------------------------------------------------------------------------------
# Dense convolution (Conv2D, SAME): raw sums, no bias or batch norm.
# ---------------------------------------------------------------------------------------------------------------

SEQUENTIAL_MAX_CIN = 64  # conv2d sums in sequential order up to this many input channels, by dot products above


@numba.njit(cache=True)
def _input_row(p, n_pix, wo, stride, dy, dx, h, wd):
    """Row of x (flattened to (h*wd, cin)) read by output pixel p at tap offset (dy, dx); -1 outside x or past
    the last pixel."""
    if p >= n_pix:
        return -1
    iy = (p // wo) * stride + dy
    ix = (p % wo) * stride + dx
    if 0 <= iy < h and 0 <= ix < wd:
        return iy * wd + ix
    return -1


@numba.njit(parallel=True, cache=True, fastmath={"contract"})
def _conv2d_sequential(x, w, stride, pad_top, pad_left, out):
    """out (ho, wo, cout) = SAME convolution of x (h, wd, cin) with w (kh, kw, cin, cout), small cin.

    Each output is accumulated from 0 over (ky, kx, c) in order with fused multiply-adds, vectorised across
    output channels: tiles of 4 output pixels x up to 64 output channels accumulate in the output rows
    (L1-resident). Past the last pixel a tile repeats the last pixel with a zero input row (adds exact zeros).
    """
    h, wd, cin = x.shape
    kh, kw, _, cout = w.shape
    ho, wo, _ = out.shape
    n_pix = ho * wo
    x2 = x.reshape(h * wd, cin)
    w2 = w.reshape(kh * kw * cin, cout)
    out2 = out.reshape(n_pix, cout)
    zero = np.zeros(cin, np.float32)
    n_blocks = (cout + 63) // 64
    for t in prange(((n_pix + 3) // 4) * n_blocks):
        p = (t // n_blocks) * 4
        n0 = (t % n_blocks) * 64
        n1 = min(n0 + 64, cout)
        o0 = out2[p, n0:n1]
        o1 = out2[min(p + 1, n_pix - 1), n0:n1]
        o2 = out2[min(p + 2, n_pix - 1), n0:n1]
        o3 = out2[min(p + 3, n_pix - 1), n0:n1]
        o0[:] = 0.0
        o1[:] = 0.0
        o2[:] = 0.0
        o3[:] = 0.0
        for ky in range(kh):
            for kx in range(kw):
                r0 = _input_row(p, n_pix, wo, stride, ky - pad_top, kx - pad_left, h, wd)
                r1 = _input_row(p + 1, n_pix, wo, stride, ky - pad_top, kx - pad_left, h, wd)
                r2 = _input_row(p + 2, n_pix, wo, stride, ky - pad_top, kx - pad_left, h, wd)
                r3 = _input_row(p + 3, n_pix, wo, stride, ky - pad_top, kx - pad_left, h, wd)
                a0 = x2[r0] if r0 >= 0 else zero
                a1 = x2[r1] if r1 >= 0 else zero
                a2 = x2[r2] if r2 >= 0 else zero
                a3 = x2[r3] if r3 >= 0 else zero
                base = (ky * kw + kx) * cin
                for c in range(cin):
                    u0 = a0[c]
                    u1 = a1[c]
                    u2 = a2[c]
                    u3 = a3[c]
                    wrow = w2[base + c, n0:n1]
                    for n in range(n1 - n0):
                        v = wrow[n]
                        o0[n] += u0 * v
                        o1[n] += u1 * v
                        o2[n] += u2 * v
                        o3[n] += u3 * v


@numba.njit(parallel=True, cache=True, fastmath={"contract", "reassoc"})
def _conv2d_dot(x, wt, kh, kw, stride, pad_top, pad_left, out):
    """out (ho, wo, cout) = SAME convolution of x (h, wd, cin) with wt (cout, kh*kw*cin) (weights transposed).

    Register tile: 4 output pixels x 4 output channels = 16 dot products over the input channels of each tap,
    accumulated across the taps (LLVM splits each dot product into vector lanes). Parallel over tiles of 4
    output channels. Pixels and channels past the end of a tile are clamped to the last one (recomputed, the
    same value written twice).
    """
    h, wd, cin = x.shape
    ho, wo, cout = out.shape
    n_pix = ho * wo
    x2 = x.reshape(h * wd, cin)
    out2 = out.reshape(n_pix, cout)
    zero = np.zeros(cin, np.float32)
    for nt in prange((cout + 3) // 4):
        n0 = min(nt * 4, cout - 1)
        n1 = min(nt * 4 + 1, cout - 1)
        n2 = min(nt * 4 + 2, cout - 1)
        n3 = min(nt * 4 + 3, cout - 1)
        for pt in range((n_pix + 3) // 4):
            p0 = min(pt * 4, n_pix - 1)
            p1 = min(pt * 4 + 1, n_pix - 1)
            p2 = min(pt * 4 + 2, n_pix - 1)
            p3 = min(pt * 4 + 3, n_pix - 1)
            s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.float32(0.0)
            s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = np.float32(0.0)
            for ky in range(kh):
                for kx in range(kw):
                    iy0 = (p0 // wo) * stride + ky - pad_top
                    ix0 = (p0 % wo) * stride + kx - pad_left
                    iy1 = (p1 // wo) * stride + ky - pad_top
                    ix1 = (p1 % wo) * stride + kx - pad_left
                    iy2 = (p2 // wo) * stride + ky - pad_top
                    ix2 = (p2 % wo) * stride + kx - pad_left
                    iy3 = (p3 // wo) * stride + ky - pad_top
                    ix3 = (p3 % wo) * stride + kx - pad_left
                    a0 = x2[iy0 * wd + ix0] if 0 <= iy0 < h and 0 <= ix0 < wd else zero
                    a1 = x2[iy1 * wd + ix1] if 0 <= iy1 < h and 0 <= ix1 < wd else zero
                    a2 = x2[iy2 * wd + ix2] if 0 <= iy2 < h and 0 <= ix2 < wd else zero
                    a3 = x2[iy3 * wd + ix3] if 0 <= iy3 < h and 0 <= ix3 < wd else zero
                    base = (ky * kw + kx) * cin
                    b0 = wt[n0, base:base + cin]
                    b1 = wt[n1, base:base + cin]
                    b2 = wt[n2, base:base + cin]
                    b3 = wt[n3, base:base + cin]
                    for c in range(cin):
                        u0 = a0[c]
                        u1 = a1[c]
                        u2 = a2[c]
                        u3 = a3[c]
                        v0 = b0[c]
                        v1 = b1[c]
                        v2 = b2[c]
                        v3 = b3[c]
                        s00 += u0 * v0
                        s01 += u0 * v1
                        s02 += u0 * v2
                        s03 += u0 * v3
                        s10 += u1 * v0
                        s11 += u1 * v1
                        s12 += u1 * v2
                        s13 += u1 * v3
                        s20 += u2 * v0
                        s21 += u2 * v1
                        s22 += u2 * v2
                        s23 += u2 * v3
                        s30 += u3 * v0
                        s31 += u3 * v1
                        s32 += u3 * v2
                        s33 += u3 * v3
            out2[p0, n0] = s00
            out2[p0, n1] = s01
            out2[p0, n2] = s02
            out2[p0, n3] = s03
            out2[p1, n0] = s10
            out2[p1, n1] = s11
            out2[p1, n2] = s12
            out2[p1, n3] = s13
            out2[p2, n0] = s20
            out2[p2, n1] = s21
            out2[p2, n2] = s22
            out2[p2, n3] = s23
            out2[p3, n0] = s30
            out2[p3, n1] = s31
            out2[p3, n2] = s32
            out2[p3, n3] = s33


_TRANSPOSED: dict[int, np.ndarray] = {}


def transposed_weights(w: np.ndarray) -> np.ndarray:
    """w (kh, kw, cin, cout) as a contiguous (cout, kh*kw*cin) copy, made once per weights array.

    The copy is cached under the array's identity and dropped when the array is garbage collected; weights are
    never modified in place, so it stays valid.
    """
    key = id(w)
    wt = _TRANSPOSED.get(key)
    if wt is None:
        wt = np.ascontiguousarray(w.reshape(-1, w.shape[-1]).T)
        _TRANSPOSED[key] = wt
        weakref.finalize(w, _TRANSPOSED.pop, key, None)
    return wt


def conv2d(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """TF `Conv2D` with SAME padding: x (H, W, cin), w (kh, kw, cin, cout) -> (ceil(H/s), ceil(W/s), cout).

    Up to SEQUENTIAL_MAX_CIN input channels every output is a sequential fused multiply-add sum over
    (ky, kx, c), which is also the order of TF's GEMM within one K block; above, 4x4 tiles of dot products.
    """
    _check_hwc(x, "conv2d input")
    kh, kw, cin, cout = w.shape
    if x.shape[2] != cin or w.dtype != np.float32:
        raise ValueError(f"conv2d: weights {w.dtype} {w.shape} do not fit input {x.shape}")
    ho, pad_top = same_padding(x.shape[0], kh, stride)
    wo, pad_left = same_padding(x.shape[1], kw, stride)
    out = np.empty((ho, wo, cout), np.float32)
    x = np.ascontiguousarray(x)
    if cin <= SEQUENTIAL_MAX_CIN:
        _conv2d_sequential(x, np.ascontiguousarray(w), stride, pad_top, pad_left, out)
    else:
        _conv2d_dot(x, transposed_weights(w), kh, kw, stride, pad_top, pad_left, out)
    return out


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


@numba.njit(parallel=True, cache=True)
def _depthwise3x3_bn_relu6(x, w9, stride, pad_top, pad_left, scale, shift, raw, out):
    """raw (ho, wo, c) = depthwise 3x3 sums of x (h, wd, c), w9 (9, c); out = relu6(raw * scale + shift).

    Taps summed in TF's order ky*3 + kx from 0, every product and sum rounded (no fast-math). A tap outside x
    reads row 0 of x with a zero weight row (index 9 of wz), i.e. adds a zero product, as TF's zero padding does.
    """
    h, wd, c = x.shape
    ho, wo, _ = out.shape
    x2 = x.reshape(h * wd, c)
    wz = np.zeros((10, c), np.float32)
    wz[:9] = w9
    for oy in prange(ho):
        rows = np.empty(9, np.int64)
        taps = np.empty(9, np.int64)
        for ox in range(wo):
            for ky in range(3):
                for kx in range(3):
                    t = ky * 3 + kx
                    iy = oy * stride + ky - pad_top
                    ix = ox * stride + kx - pad_left
                    if 0 <= iy < h and 0 <= ix < wd:
                        rows[t] = iy * wd + ix
                        taps[t] = t
                    else:
                        rows[t] = 0
                        taps[t] = 9
            r0, r1, r2 = x2[rows[0]], x2[rows[1]], x2[rows[2]]
            r3, r4, r5 = x2[rows[3]], x2[rows[4]], x2[rows[5]]
            r6, r7, r8 = x2[rows[6]], x2[rows[7]], x2[rows[8]]
            q0, q1, q2 = wz[taps[0]], wz[taps[1]], wz[taps[2]]
            q3, q4, q5 = wz[taps[3]], wz[taps[4]], wz[taps[5]]
            q6, q7, q8 = wz[taps[6]], wz[taps[7]], wz[taps[8]]
            raw_row = raw[oy, ox]
            out_row = out[oy, ox]
            for ch in range(c):
                s = np.float32(0.0) + r0[ch] * q0[ch]
                s = s + r1[ch] * q1[ch]
                s = s + r2[ch] * q2[ch]
                s = s + r3[ch] * q3[ch]
                s = s + r4[ch] * q4[ch]
                s = s + r5[ch] * q5[ch]
                s = s + r6[ch] * q6[ch]
                s = s + r7[ch] * q7[ch]
                s = s + r8[ch] * q8[ch]
                raw_row[ch] = s
                v = s * scale[ch]
                v = v + shift[ch]
                out_row[ch] = min(max(v, np.float32(0.0)), np.float32(6.0))


def depthwise3x3_bn_relu6(x: np.ndarray, w: np.ndarray, stride: int, scale: np.ndarray,
                          shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TF `DepthwiseConv2dNative` 3x3 SAME, then batch norm and Relu6: returns `(conv, relu6_output)`."""
    _check_hwc(x, "depthwise input")
    c = x.shape[2]
    if w.shape != (3, 3, c, 1) or w.dtype != np.float32:
        raise ValueError(f"depthwise: weights {w.dtype} {w.shape} do not fit input {x.shape}, want (3, 3, {c}, 1)")
    ho, pad_top = same_padding(x.shape[0], 3, stride)
    wo, pad_left = same_padding(x.shape[1], 3, stride)
    raw = np.empty((ho, wo, c), np.float32)
    out = np.empty((ho, wo, c), np.float32)
    _depthwise3x3_bn_relu6(np.ascontiguousarray(x), np.ascontiguousarray(w).reshape(9, c), stride, pad_top,
                           pad_left, scale, shift, raw, out)
    return raw, out


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
