"""The engine's convolution kernels (ssd_np/engine/conv.py, depthwise.py, inverted_residual.py, simd.py):
hand-computed cases, the kernels against their reference twins (ssd_np/reference/mobilenet_v2.py), and against
real TF ops.

The TF fixtures (tests/data/ops/*.npz) come from tools/make_op_cases.py (TF 2.17.1, oneDNN off, one thread).

Tolerance for a convolution summed in another order than the reference: the classic bound for a float32 sum of
K products in any order (with or without FMA), |error| <= K * 2**-24 * sum_k |x_k * w_k|, evaluated per output.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

from conftest import DATA
from ssd_np.engine import conv, depthwise, simd
from ssd_np.engine import inverted_residual as fused_block
from ssd_np.reference import mobilenet_v2 as ref

U32 = 2.0 ** -24  # unit roundoff of float32


def op_cases(name: str) -> list[dict[str, np.ndarray]]:
    with np.load(DATA / "ops" / f"{name}.npz") as z:
        cases: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            index, field = key.split("/")
            cases.setdefault(index, {})[field] = z[key]
    return [cases[i] for i in sorted(cases, key=int)]


def conv2d_exact(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """The reference convolution summed in float64, rounded once to float32."""
    return ref.conv2d(x.astype(np.float64), w.astype(np.float64), stride).astype(np.float32)


def bn(y: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The graph's batch norm `mul_1` then `add_1` (two roundings), as the reference computes it."""
    return y * scale + shift


def bn_params(gamma, beta, mean, variance):
    """`reference.mobilenet_v2.batch_norm_params` of raw arrays."""
    leaves = dict(gamma=gamma, beta=beta, moving_mean=mean, moving_variance=variance)
    return ref.batch_norm_params({f"{ref.SCOPE}/t/BatchNorm/{k}": v for k, v in leaves.items()}, "t", {})


def epilogue(y: np.ndarray, scale: np.ndarray, shift: np.ndarray, relu6: bool) -> np.ndarray:
    """The engine's fused epilogue alone: an identity 1x1 convolution (each sum is one product x * 1, exact)."""
    eye = np.eye(y.shape[2], dtype=np.float32)[None, None]
    return conv.conv_bn_act(y, conv.prepare_conv(eye, scale, shift), 1, relu6)


def summation_bound(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """K * u * sum |x * w| per output: the largest error any float32 summation order can make."""
    kh, kw, cin, _ = w.shape
    magnitude = conv2d_exact(np.abs(x), np.abs(w), stride).astype(np.float64)
    return (kh * kw * cin) * U32 * magnitude + 1e-30


def random_conv(rng: np.random.Generator, h: int, w: int, cin: int, cout: int, k: int):
    x = rng.standard_normal((h, w, cin)).astype(np.float32)
    weights = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
    return x, weights


# --- hand-computed -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size, kernel, stride, expected", [
    (4, 3, 2, (2, 0)), (3, 3, 2, (2, 1)), (300, 3, 2, (150, 0)), (19, 3, 2, (10, 1)), (5, 3, 1, (5, 1)),
    (1, 3, 2, (1, 1)), (2, 3, 2, (1, 0)), (10, 1, 1, (10, 0)),
])
def test_same_padding(size, kernel, stride, expected):
    assert ref.same_padding(size, kernel, stride) == expected


def test_conv2d_stride2_pads_bottom_right():
    # 4x4 input, 3x3 ones, stride 2: pad_total 1 goes to the bottom/right, so the first window is x[0:3, 0:3].
    x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    w = np.ones((3, 3, 1, 1), np.float32)
    expected = np.array([[45, 39], [66, 50]], np.float32)[:, :, None]
    np.testing.assert_array_equal(conv.conv2d(x, w, 2), expected)
    np.testing.assert_array_equal(conv2d_exact(x, w, 2), expected)


def test_conv2d_3x3_image_stride2_symmetric():
    # 3x3 input, stride 2: pad_total 2, one row/column of zeros on each side; windows centred on the corners.
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1)
    w = np.zeros((3, 3, 1, 2), np.float32)
    w[1, 1, 0, 0] = 1.0  # centre tap: samples x[0, 0], x[0, 2], x[2, 0], x[2, 2]
    w[0, 0, 0, 1] = 1.0  # top-left tap: outside the image for the first output row/column
    out = conv.conv2d(x, w, 2)
    np.testing.assert_array_equal(out[:, :, 0], [[1, 3], [7, 9]])
    np.testing.assert_array_equal(out[:, :, 1], [[0, 0], [0, 5]])


def test_conv2d_long_k_in_blocks_same_padding():
    # Same geometry as above with more input channels than KC_MAX: K is summed in blocks (channel ranges of a tap).
    cin = conv.KC_MAX + 3
    x = np.zeros((4, 4, cin), np.float32)
    x[:, :, 5] = np.arange(16, dtype=np.float32).reshape(4, 4)
    x[:, :, cin - 1] = 1.0
    w = np.zeros((3, 3, cin, 1), np.float32)
    w[:, :, 5, 0] = 1.0
    w[:, :, cin - 1, 0] = 0.5  # in the last block: + 0.5 per tap inside the image
    assert len(conv._blocks(3, 3, cin)) == 18
    np.testing.assert_array_equal(conv.conv2d(x, w, 2)[:, :, 0], [[49.5, 42], [69, 52]])


def test_blocks_hand():
    # (tap_begin, tap_end, c_begin, c_end): one block up to KC_MAX products, else whole taps, else channel ranges.
    np.testing.assert_array_equal(conv._blocks(3, 3, 3), [[0, 9, 0, 3]])
    np.testing.assert_array_equal(conv._blocks(1, 1, conv.KC_MAX), [[0, 1, 0, conv.KC_MAX]])
    cin = conv.KC_MAX // 3  # three taps per block
    assert [tuple(b) for b in conv._blocks(3, 3, cin)] == [(0, 3, 0, cin), (3, 6, 0, cin), (6, 9, 0, cin)]
    cin = 2 * conv.KC_MAX + 1
    blocks = conv._blocks(3, 3, cin)
    assert len(blocks) == 27 and tuple(blocks[0]) == (0, 1, 0, cin // 3)
    assert tuple(blocks[-1]) == (8, 9, 2 * cin // 3, cin)
    assert (blocks[:, 3] - blocks[:, 2]).max() <= conv.KC_MAX


def test_pack_weights_hand():
    w = np.arange(2 * 3 * 40, dtype=np.float32).reshape(1, 2, 3, 40)  # K = 6, cout = 40: panels of NR (32 or 16)
    packed = conv.pack_weights(w)
    nr = conv.NR
    panels = -(-40 // nr)
    assert packed.shape == (panels, 6, nr)
    for p in range(panels):
        n = min(nr, 40 - p * nr)
        np.testing.assert_array_equal(packed[p, :, :n], w.reshape(6, 40)[:, p * nr:p * nr + n])
    assert not packed[-1, :, 40 - (panels - 1) * nr:].any()
    layer = conv.prepare_conv(w, np.full(40, 2, np.float32), np.ones(40, np.float32))
    assert (layer.kh, layer.kw, layer.cin, layer.cout) == (1, 2, 3, 40) and layer.scale.shape == (panels * nr,)
    assert layer.scale[39] == 2 and layer.scale[40] == 0 and layer.shift[39] == 1


def test_empty_aligned():
    for shape in [(3,), (7, 5), (2, 3, 17)]:
        a = simd.empty_aligned(shape)
        assert a.shape == shape and a.dtype == np.float32 and a.flags.c_contiguous
        assert a.ctypes.data % simd.ALIGN == 0
    assert conv.pack_weights(np.ones((1, 1, 3, 5), np.float32)).ctypes.data % simd.ALIGN == 0


def test_vector_intrinsics():
    a = np.arange(-20, 28, dtype=np.float32) / np.float32(3)  # 48 values, three vectors
    b = (np.arange(48, dtype=np.float32)[::-1] / np.float32(7)).copy()
    got = _vector_ops(a, b)
    np.testing.assert_array_equal(got[0], a[16:32] * b[16:32])
    np.testing.assert_array_equal(got[1], a[16:32] + b[16:32])
    np.testing.assert_array_equal(got[2], ref.relu6(a[16:32] * np.float32(4)))
    np.testing.assert_array_equal(got[3], np.full(16, a[5]))
    fma = (a[16:32].astype(np.float64) * b[16:32] + b[:16]).astype(np.float32)  # one rounding, as vfmadd
    np.testing.assert_allclose(got[4], fma, rtol=2 ** -23)
    np.testing.assert_array_equal(got[5], np.full(16, np.float32(2.5)))


@numba.njit
def _vector_ops(a, b):
    out = np.zeros((6, 16), np.float32)
    x, y = simd.vload(a, 16), simd.vload(b, 16)
    simd.vstore(out[0], 0, simd.vmul(x, y))
    simd.vstore(out[1], 0, simd.vadd(x, y))
    simd.vstore(out[2], 0, simd.vrelu6(simd.vmul(x, simd.vsplat(4.0))))
    simd.vstore(out[3], 0, simd.vbroadcast(a, 5))
    simd.vstore(out[4], 0, simd.vfma(x, y, simd.vload(b, 0)))
    simd.vstore(out[5], 0, simd.vsplat(np.float32(2.5)))
    return out


def test_depthwise_single_tap_shifts():
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1)
    w = np.zeros((3, 3, 1, 1), np.float32)
    w[0, 0, 0, 0] = 1.0  # out[y, x] = x[y - 1, x - 1], zero outside
    raw = depthwise.depthwise_conv2d(x, w, 1)
    relu = depthwise.depthwise3x3_bn_act(x, depthwise.prepare_depthwise(w), 1)
    np.testing.assert_array_equal(raw[:, :, 0], [[0, 0, 0], [0, 1, 2], [0, 4, 5]])
    np.testing.assert_array_equal(relu[:, :, 0], np.minimum(raw[:, :, 0], 6))


def test_batch_norm_params_hand():
    # A variance whose `+ 0.001` rounds to exactly 4, so rsqrt is exactly 0.5: scale = 2 * 0.5, shift = 0.5 - 1 * 1.
    variance = np.float32(4.0) - ref.BN_EPSILON
    assert variance + ref.BN_EPSILON == np.float32(4.0)
    scale, shift = bn_params(np.array([2.0], np.float32), np.array([0.5], np.float32),
                                             np.array([1.0], np.float32), np.array([variance], np.float32))
    assert scale[0] == np.float32(1.0) and shift[0] == np.float32(-0.5)


def test_epilogue_rounds_twice_and_clips():
    y = np.array([[[1.0, -3.0, 100.0, 0.1]]], np.float32)
    scale = np.array([np.float32(1.1), 1, 1, np.float32(3.3)], np.float32)
    shift = np.array([np.float32(0.7), 1, 1, np.float32(-0.2)], np.float32)
    expected = ref.relu6(bn(y, scale, shift))
    np.testing.assert_array_equal(expected[0, 0, 1:3], [0, 6])
    np.testing.assert_array_equal(epilogue(y, scale, shift, True), expected)
    np.testing.assert_array_equal(epilogue(y, scale, shift, False), bn(y, scale, shift))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="residual"):
        conv.conv_bn_act(np.zeros((3, 3, 2), np.float32), conv.prepare_conv(np.zeros((1, 1, 2, 4), np.float32)),
                            1, False, residual=np.zeros((3, 3, 2), np.float32))
    with pytest.raises(ValueError, match="float32"):
        conv.conv2d(np.zeros((3, 3, 2), np.float64), np.zeros((1, 1, 2, 1), np.float32), 1)
    with pytest.raises(ValueError, match="do not fit"):
        conv.conv2d(np.zeros((3, 3, 2), np.float32), np.zeros((1, 1, 3, 1), np.float32), 1)
    with pytest.raises(ValueError, match="want"):
        depthwise.depthwise_conv2d(np.zeros((3, 3, 2), np.float32), np.zeros((3, 3, 3, 1), np.float32), 1)


# --- numba kernels vs NumPy twins ----------------------------------------------------------------------------

CONV_SHAPES = [  # (h, w, cin, cout, k, stride): odd sizes, channel counts not multiples of 8, both kernels
    (7, 9, 5, 3, 3, 1), (13, 11, 19, 7, 3, 2), (12, 10, 24, 5, 3, 2), (9, 7, 13, 70, 1, 1), (1, 1, 33, 6, 3, 1),
    (7, 9, 67, 3, 3, 1), (13, 11, 101, 7, 3, 2), (12, 10, 96, 13, 3, 2), (9, 7, 130, 70, 1, 1),
    (2, 2, 257, 546, 3, 1), (1, 1, 131, 9, 3, 2), (5, 3, 77, 1, 1, 1),
    # K in several blocks: whole taps, then channel ranges of a tap (cin > KC_MAX); cout past a panel of 32
    (5, 4, 300, 45, 3, 1), (7, 5, 200, 33, 3, 2), (3, 4, 1300, 40, 3, 1), (2, 1, 1291, 70, 3, 2),
]


@pytest.mark.parametrize("h, w, cin, cout, k, stride", CONV_SHAPES)
def test_conv2d_vs_twin(h, w, cin, cout, k, stride):
    rng = np.random.default_rng(h * 1000 + cin)
    x, weights = random_conv(rng, h, w, cin, cout, k)
    out = conv.conv2d(x, weights, stride)
    exact = conv2d_exact(x, weights, stride)
    assert out.shape == exact.shape == (-(-h // stride), -(-w // stride), cout)
    err = np.abs(out.astype(np.float64) - exact)
    bound = summation_bound(x, weights, stride)
    print(f"conv2d {h}x{w}x{cin}->{cout} k{k} s{stride}: max diff {err.max():.2e}, max diff/bound "
          f"{(err / bound).max():.3f}")
    assert (err <= bound).all()


@pytest.mark.parametrize("h, w, c, stride", [(7, 9, 5, 1), (13, 11, 19, 2), (8, 8, 16, 2), (11, 13, 37, 1),
                                              (1, 1, 24, 2), (2, 3, 40, 1), (10, 10, 101, 2)])
def test_depthwise_vs_twin_exact(h, w, c, stride):
    rng = np.random.default_rng(h * 100 + c)
    x = rng.standard_normal((h, w, c)).astype(np.float32)
    weights = rng.standard_normal((3, 3, c, 1)).astype(np.float32)
    scale = (1 + 0.3 * rng.standard_normal(c)).astype(np.float32)
    shift = (0.5 * rng.standard_normal(c)).astype(np.float32)
    raw = depthwise.depthwise_conv2d(x, weights, stride)
    out = depthwise.depthwise3x3_bn_act(x, depthwise.prepare_depthwise(weights, scale, shift), stride)
    twin = ref.depthwise_conv2d(x, weights, stride)
    print(f"depthwise {h}x{w}x{c} s{stride}: max diff {np.abs(raw - twin).max():.2e}")
    np.testing.assert_array_equal(raw, twin)
    np.testing.assert_array_equal(out, ref.relu6(bn(twin, scale, shift)))


def test_epilogue_vs_twin_exact():
    rng = np.random.default_rng(7)
    y = (3 * rng.standard_normal((9, 7, 37))).astype(np.float32)
    scale = (1 + 0.3 * rng.standard_normal(37)).astype(np.float32)
    shift = rng.standard_normal(37).astype(np.float32)
    np.testing.assert_array_equal(epilogue(y, scale, shift, True), ref.relu6(bn(y, scale, shift)))


EPILOGUE_SHAPES = [(7, 9, 5, 3, 3, 1), (13, 11, 19, 45, 3, 2), (9, 7, 70, 96, 1, 1), (3, 4, 40, 33, 1, 1),
                   (5, 4, 300, 17, 3, 1)]


@pytest.mark.parametrize("h, w, cin, cout, k, stride", EPILOGUE_SHAPES)
def test_conv_bn_act_epilogue_exact(h, w, cin, cout, k, stride):
    # The fused epilogue is the graph's element-wise ops on the same sums: bit for bit the NumPy twins applied to
    # conv2d's output (batch norm `mul_1`, `add_1`, Relu6; or the linear bottleneck's `add` of the block input).
    rng = np.random.default_rng(cout * 100 + cin)
    x, weights = random_conv(rng, h, w, cin, cout, k)
    scale = (1 + 0.3 * rng.standard_normal(cout)).astype(np.float32)
    shift = rng.standard_normal(cout).astype(np.float32)
    layer = conv.prepare_conv(weights, scale, shift)
    raw = conv.conv2d(x, weights, stride)
    normed = bn(raw, scale, shift)
    np.testing.assert_array_equal(conv.conv_bn_act(x, layer, stride, relu6=True), ref.relu6(normed))
    np.testing.assert_array_equal(conv.conv_bn_act(x, layer, stride, relu6=False), normed)
    residual = rng.standard_normal(raw.shape).astype(np.float32)
    np.testing.assert_array_equal(conv.conv_bn_act(x, layer, stride, relu6=False, residual=residual),
                                  normed + residual)
    np.testing.assert_array_equal(conv.conv_bn_act(x, conv.prepare_conv(weights), stride, relu6=False), raw)


@pytest.mark.parametrize("h, w, c, stride", [(20, 21, 32, 1), (21, 19, 48, 2), (5, 6, 32, 2), (2, 2, 16, 1),
                                              (9, 8, 37, 1)])
def test_depthwise_bn_act_vs_twin_exact(h, w, c, stride):
    # Sizes with interior pixels and 16k channels (the fast path) and without; linear and ReLU6 epilogues.
    rng = np.random.default_rng(h * 100 + c)
    x = rng.standard_normal((h, w, c)).astype(np.float32)
    weights = rng.standard_normal((3, 3, c, 1)).astype(np.float32)
    scale = (1 + 0.3 * rng.standard_normal(c)).astype(np.float32)
    shift = (0.5 * rng.standard_normal(c)).astype(np.float32)
    dw = depthwise.prepare_depthwise(weights, scale, shift)
    normed = bn(ref.depthwise_conv2d(x, weights, stride), scale, shift)
    np.testing.assert_array_equal(depthwise.depthwise3x3_bn_act(x, dw, stride, relu6=False), normed)
    np.testing.assert_array_equal(depthwise.depthwise3x3_bn_act(x, dw, stride), ref.relu6(normed))


@pytest.mark.parametrize("h, w, cin, inner, cout, stride", [
    (9, 11, 5, 30, 5, 1), (11, 13, 16, 96, 24, 2), (7, 9, 24, 144, 24, 1), (10, 12, 32, 32, 16, 1),
    (13, 15, 20, 40, 33, 2), (1, 3, 8, 48, 8, 1), (2, 4, 8, 16, 16, 2)])
@pytest.mark.parametrize("threads", [1, 2])
def test_inverted_residual_exact(h, w, cin, inner, cout, stride, threads):
    # The fused block = the three kernels one after the other, bit for bit (same tiles, same operations), with one
    # band of rows or two (the second band recomputes the expansion rows it shares with the first); and within
    # float32 summation error of the NumPy twins.
    rng = np.random.default_rng(h * 1000 + inner)
    x = rng.standard_normal((h, w, cin)).astype(np.float32)

    def params(c):
        return (1 + 0.2 * rng.standard_normal(c)).astype(np.float32), rng.standard_normal(c).astype(np.float32)

    w_expand = (rng.standard_normal((1, 1, cin, inner)) / np.sqrt(cin)).astype(np.float32)
    w_dw = rng.standard_normal((3, 3, inner, 1)).astype(np.float32)
    w_project = (rng.standard_normal((1, 1, inner, cout)) / np.sqrt(inner)).astype(np.float32)
    (es, eb), (ds, db), (ps, pb) = params(inner), params(inner), params(cout)
    expand = conv.prepare_conv(w_expand, es, eb) if cin != inner else None
    dw, project = depthwise.prepare_depthwise(w_dw, ds, db), conv.prepare_conv(w_project, ps, pb)
    add = stride == 1 and cin == cout
    saved = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        fused = fused_block.inverted_residual(x, expand, dw, project, stride, add)
    finally:
        numba.set_num_threads(saved)
    y = conv.conv_bn_act(x, expand, 1, relu6=True) if expand is not None else x
    y = depthwise.depthwise3x3_bn_act(y, dw, stride)
    np.testing.assert_array_equal(fused, conv.conv_bn_act(y, project, 1, relu6=False, residual=x if add else None))
    bn_relu6 = lambda y, scale, shift: ref.relu6(bn(y, scale, shift))  # noqa: E731
    twin = x if expand is None else bn_relu6(conv2d_exact(x, w_expand, 1), es, eb)
    twin = bn_relu6(ref.depthwise_conv2d(twin, w_dw, stride), ds, db)
    twin = bn(conv2d_exact(twin, w_project, 1), ps, pb) + (x if add else 0)
    print(f"inverted residual {h}x{w}x{cin}->{inner}->{cout} s{stride}: "
          f"max diff to twin {np.abs(fused - twin).max():.2e}")
    np.testing.assert_allclose(fused, twin, rtol=1e-5, atol=1e-5 * np.abs(twin).max())


def test_inverted_residual_bad_layers_raise():
    x = np.zeros((4, 4, 8), np.float32)
    dw = depthwise.prepare_depthwise(np.zeros((3, 3, 16, 1), np.float32))
    project = conv.prepare_conv(np.zeros((1, 1, 16, 8), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        fused_block.inverted_residual(x, None, dw, project, 1, False)
    expand = conv.prepare_conv(np.zeros((1, 1, 8, 16), np.float32))
    with pytest.raises(ValueError, match="cannot add"):
        fused_block.inverted_residual(x, expand, dw, project, 2, True)


# --- against real TF ops -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", op_cases("conv2d"), ids=lambda c: f"{c['x'].shape}x{c['w'].shape}s{c['stride']}")
def test_conv2d_vs_tf(case):
    x, w, stride = case["x"], case["w"], int(case["stride"])
    out = conv.conv2d(x, w, stride)
    err = np.abs(out.astype(np.float64) - case["out"])
    bound = summation_bound(x, w, stride)
    print(f"conv2d vs TF {x.shape} {w.shape} s{stride}: max diff {err.max():.2e} "
          f"(rel. to max |out| {err.max() / np.abs(case['out']).max():.1e}), exact {np.array_equal(out, case['out'])}")
    assert out.shape == case["out"].shape
    assert (err <= bound).all()


@pytest.mark.parametrize("case", [c for c in op_cases("conv2d")
                                  if c["w"][..., 0].size <= min(360, conv.KC_MAX)
                                  and c["out"].shape[0] * c["out"].shape[1] > 1],
                         ids=lambda c: f"{c['x'].shape}x{c['w'].shape}")
def test_conv2d_sequential_matches_tf_bit_for_bit(case):
    # TF's GEMM (oneDNN sgemm inside Eigen's contraction) sums K <= 360 products in one block, sequentially with
    # FMA from 0 (measured on these fixtures; longer K is split into blocks, a single output pixel takes another
    # path). conv2d sums K <= KC_MAX in one block in that order, so it reproduces TF exactly there (e.g. the first
    # conv).
    out = conv.conv2d(case["x"], case["w"], int(case["stride"]))
    np.testing.assert_array_equal(out, case["out"])


@pytest.mark.parametrize("case", op_cases("depthwise"), ids=lambda c: f"{c['x'].shape}s{c['stride']}")
def test_depthwise_vs_tf_exact(case):
    x, w, stride = case["x"], case["w"], int(case["stride"])
    raw = depthwise.depthwise_conv2d(x, w, stride)
    print(f"depthwise vs TF {x.shape} s{stride}: max diff {np.abs(raw - case['out']).max():.2e}")
    np.testing.assert_array_equal(raw, case["out"])


@pytest.mark.parametrize("case", op_cases("batch_norm"), ids=lambda c: f"c{c['gamma'].size}")
def test_batch_norm_vs_tf(case):
    scale, shift = bn_params(case["gamma"], case["beta"], case["mean"], case["variance"])
    ulps = np.abs(scale.view(np.int32).astype(np.int64) - case["scale"].view(np.int32))
    print(f"batch norm c={scale.size}: scale differs from TF in {np.count_nonzero(ulps)} channels, "
          f"max {ulps.max()} ulp")
    # TF's Rsqrt: AVX packets of 8 use the CPU's rsqrt approximation + one Newton step (<= 2 ulp off); the last
    # size % 8 channels take the scalar path 1 / sqrt(x), which batch_norm_params reproduces exactly.
    assert ulps.max() <= 2
    tail = scale.size % 8
    np.testing.assert_array_equal(scale[scale.size - tail:], case["scale"][scale.size - tail:])
    # Given TF's scale, everything else is exact float32 arithmetic.
    np.testing.assert_array_equal(case["beta"] - case["mean"] * case["scale"], case["shift"])
    y = bn(case["x"], case["scale"], case["shift"])
    np.testing.assert_array_equal(y, case["y"])
    np.testing.assert_array_equal(ref.relu6(y), case["relu6"])
    fused = epilogue(case["x"], case["scale"], case["shift"], True)
    np.testing.assert_array_equal(fused, case["relu6"])
