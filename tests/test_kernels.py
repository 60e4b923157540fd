"""ssd_np.kernels: hand-computed cases, numba kernels against their NumPy twins, and against real TF ops.

The TF fixtures (tests/data/ops/*.npz) come from tools/make_op_cases.py (TF 2.17.1, oneDNN off, one thread).

Tolerance for a convolution summed in another order than the reference: the classic bound for a float32 sum of
K products in any order (with or without FMA), |error| <= K * 2**-24 * sum_k |x_k * w_k|, evaluated per output.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA
from ssd_np import kernels

U32 = 2.0 ** -24  # unit roundoff of float32


def op_cases(name: str) -> list[dict[str, np.ndarray]]:
    with np.load(DATA / "ops" / f"{name}.npz") as z:
        cases: dict[str, dict[str, np.ndarray]] = {}
        for key in z.files:
            index, field = key.split("/")
            cases.setdefault(index, {})[field] = z[key]
    return [cases[i] for i in sorted(cases, key=int)]


def summation_bound(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """K * u * sum |x * w| per output: the largest error any float32 summation order can make."""
    kh, kw, cin, _ = w.shape
    magnitude = kernels.conv2d_ref(np.abs(x), np.abs(w), stride).astype(np.float64)
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
    assert kernels.same_padding(size, kernel, stride) == expected


def test_conv2d_stride2_pads_bottom_right():
    # 4x4 input, 3x3 ones, stride 2: pad_total 1 goes to the bottom/right, so the first window is x[0:3, 0:3].
    x = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    w = np.ones((3, 3, 1, 1), np.float32)
    expected = np.array([[45, 39], [66, 50]], np.float32)[:, :, None]
    np.testing.assert_array_equal(kernels.conv2d(x, w, 2), expected)
    np.testing.assert_array_equal(kernels.conv2d_ref(x, w, 2), expected)


def test_conv2d_3x3_image_stride2_symmetric():
    # 3x3 input, stride 2: pad_total 2, one row/column of zeros on each side; windows centred on the corners.
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1)
    w = np.zeros((3, 3, 1, 2), np.float32)
    w[1, 1, 0, 0] = 1.0  # centre tap: samples x[0, 0], x[0, 2], x[2, 0], x[2, 2]
    w[0, 0, 0, 1] = 1.0  # top-left tap: outside the image for the first output row/column
    out = kernels.conv2d(x, w, 2)
    np.testing.assert_array_equal(out[:, :, 0], [[1, 3], [7, 9]])
    np.testing.assert_array_equal(out[:, :, 1], [[0, 0], [0, 5]])


def test_conv2d_wide_input_uses_dot_kernel_same_padding():
    # Same geometry as above with more input channels than SEQUENTIAL_MAX_CIN (the dot-product kernel).
    cin = kernels.SEQUENTIAL_MAX_CIN + 3
    x = np.zeros((4, 4, cin), np.float32)
    x[:, :, 5] = np.arange(16, dtype=np.float32).reshape(4, 4)
    w = np.zeros((3, 3, cin, 1), np.float32)
    w[:, :, 5, 0] = 1.0
    np.testing.assert_array_equal(kernels.conv2d(x, w, 2)[:, :, 0], [[45, 39], [66, 50]])


def test_depthwise_single_tap_shifts():
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3, 1)
    w = np.zeros((3, 3, 1, 1), np.float32)
    w[0, 0, 0, 0] = 1.0  # out[y, x] = x[y - 1, x - 1], zero outside
    ones, zeros = np.ones(1, np.float32), np.zeros(1, np.float32)
    raw, relu = kernels.depthwise3x3_bn_relu6(x, w, 1, ones, zeros)
    np.testing.assert_array_equal(raw[:, :, 0], [[0, 0, 0], [0, 1, 2], [0, 4, 5]])
    np.testing.assert_array_equal(relu[:, :, 0], np.minimum(raw[:, :, 0], 6))


def test_batch_norm_params_hand():
    # A variance whose `+ 0.001` rounds to exactly 4, so rsqrt is exactly 0.5: scale = 2 * 0.5, shift = 0.5 - 1 * 1.
    variance = np.float32(4.0) - kernels.BN_EPSILON
    assert variance + kernels.BN_EPSILON == np.float32(4.0)
    scale, shift = kernels.batch_norm_params(np.array([2.0], np.float32), np.array([0.5], np.float32),
                                             np.array([1.0], np.float32), np.array([variance], np.float32))
    assert scale[0] == np.float32(1.0) and shift[0] == np.float32(-0.5)


def test_batch_norm_act_rounds_twice_and_clips():
    y = np.array([[[1.0, -3.0, 100.0, 0.1]]], np.float32)
    scale = np.array([np.float32(1.1), 1, 1, np.float32(3.3)], np.float32)
    shift = np.array([np.float32(0.7), 1, 1, np.float32(-0.2)], np.float32)
    expected = kernels.relu6_ref(kernels.batch_norm_ref(y, scale, shift))
    np.testing.assert_array_equal(expected[0, 0, 1:3], [0, 6])
    np.testing.assert_array_equal(kernels.batch_norm_act(y.copy(), scale, shift, True), expected)
    np.testing.assert_array_equal(kernels.batch_norm_act(y.copy(), scale, shift, False),
                                  kernels.batch_norm_ref(y, scale, shift))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="float32"):
        kernels.conv2d(np.zeros((3, 3, 2), np.float64), np.zeros((1, 1, 2, 1), np.float32), 1)
    with pytest.raises(ValueError, match="do not fit"):
        kernels.conv2d(np.zeros((3, 3, 2), np.float32), np.zeros((1, 1, 3, 1), np.float32), 1)
    with pytest.raises(ValueError, match="want"):
        kernels.depthwise3x3_bn_relu6(np.zeros((3, 3, 2), np.float32), np.zeros((3, 3, 3, 1), np.float32), 1,
                                      np.ones(2, np.float32), np.zeros(2, np.float32))


# --- numba kernels vs NumPy twins ----------------------------------------------------------------------------

CONV_SHAPES = [  # (h, w, cin, cout, k, stride): odd sizes, channel counts not multiples of 8, both kernels
    (7, 9, 5, 3, 3, 1), (13, 11, 19, 7, 3, 2), (12, 10, 24, 5, 3, 2), (9, 7, 13, 70, 1, 1), (1, 1, 33, 6, 3, 1),
    (7, 9, 67, 3, 3, 1), (13, 11, 101, 7, 3, 2), (12, 10, 96, 13, 3, 2), (9, 7, 130, 70, 1, 1),
    (2, 2, 257, 546, 3, 1), (1, 1, 131, 9, 3, 2), (5, 3, 77, 1, 1, 1),
]


@pytest.mark.parametrize("h, w, cin, cout, k, stride", CONV_SHAPES)
def test_conv2d_vs_twin(h, w, cin, cout, k, stride):
    rng = np.random.default_rng(h * 1000 + cin)
    x, weights = random_conv(rng, h, w, cin, cout, k)
    out = kernels.conv2d(x, weights, stride)
    ref = kernels.conv2d_ref(x, weights, stride)
    assert out.shape == ref.shape == (-(-h // stride), -(-w // stride), cout)
    err = np.abs(out.astype(np.float64) - ref)
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
    raw, out = kernels.depthwise3x3_bn_relu6(x, weights, stride, scale, shift)
    ref = kernels.depthwise3x3_ref(x, weights, stride)
    print(f"depthwise {h}x{w}x{c} s{stride}: max diff {np.abs(raw - ref).max():.2e}")
    np.testing.assert_array_equal(raw, ref)
    np.testing.assert_array_equal(out, kernels.relu6_ref(kernels.batch_norm_ref(ref, scale, shift)))


def test_batch_norm_act_vs_twin_exact():
    rng = np.random.default_rng(7)
    y = (3 * rng.standard_normal((9, 7, 37))).astype(np.float32)
    scale = (1 + 0.3 * rng.standard_normal(37)).astype(np.float32)
    shift = rng.standard_normal(37).astype(np.float32)
    np.testing.assert_array_equal(kernels.batch_norm_act(y.copy(), scale, shift, True),
                                  kernels.relu6_ref(kernels.batch_norm_ref(y, scale, shift)))


def test_transposed_weights_cached_per_array():
    w = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    wt = kernels.transposed_weights(w)
    np.testing.assert_array_equal(wt, w.reshape(6, 4).T)
    assert kernels.transposed_weights(w) is wt
    key = id(w)
    del w
    assert key not in kernels._TRANSPOSED


# --- against real TF ops -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", op_cases("conv2d"), ids=lambda c: f"{c['x'].shape}x{c['w'].shape}s{c['stride']}")
def test_conv2d_vs_tf(case):
    x, w, stride = case["x"], case["w"], int(case["stride"])
    out = kernels.conv2d(x, w, stride)
    err = np.abs(out.astype(np.float64) - case["out"])
    bound = summation_bound(x, w, stride)
    print(f"conv2d vs TF {x.shape} {w.shape} s{stride}: max diff {err.max():.2e} "
          f"(rel. to max |out| {err.max() / np.abs(case['out']).max():.1e}), exact {np.array_equal(out, case['out'])}")
    assert out.shape == case["out"].shape
    assert (err <= bound).all()


@pytest.mark.parametrize("case", [c for c in op_cases("conv2d")
                                  if c["w"].shape[2] <= kernels.SEQUENTIAL_MAX_CIN and c["w"][..., 0].size <= 360
                                  and c["out"].shape[0] * c["out"].shape[1] > 1],
                         ids=lambda c: f"{c['x'].shape}x{c['w'].shape}")
def test_conv2d_sequential_matches_tf_bit_for_bit(case):
    # TF's GEMM (oneDNN sgemm inside Eigen's contraction) sums K <= 360 products in one block, sequentially with
    # FMA from 0 (measured on these fixtures; longer K is split into blocks, a single output pixel takes another
    # path). The sequential kernel uses that order, so it reproduces TF exactly there (e.g. the first conv).
    out = kernels.conv2d(case["x"], case["w"], int(case["stride"]))
    np.testing.assert_array_equal(out, case["out"])


@pytest.mark.parametrize("case", op_cases("depthwise"), ids=lambda c: f"{c['x'].shape}s{c['stride']}")
def test_depthwise_vs_tf_exact(case):
    x, w, stride = case["x"], case["w"], int(case["stride"])
    c = x.shape[2]
    raw, _ = kernels.depthwise3x3_bn_relu6(x, w, stride, np.ones(c, np.float32), np.zeros(c, np.float32))
    print(f"depthwise vs TF {x.shape} s{stride}: max diff {np.abs(raw - case['out']).max():.2e}")
    np.testing.assert_array_equal(raw, case["out"])


@pytest.mark.parametrize("case", op_cases("batch_norm"), ids=lambda c: f"c{c['gamma'].size}")
def test_batch_norm_vs_tf(case):
    scale, shift = kernels.batch_norm_params(case["gamma"], case["beta"], case["mean"], case["variance"])
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
    y = kernels.batch_norm_ref(case["x"], case["scale"], case["shift"])
    np.testing.assert_array_equal(y, case["y"])
    np.testing.assert_array_equal(kernels.relu6_ref(y), case["relu6"])
    fused = kernels.batch_norm_act(case["x"].copy(), case["scale"], case["shift"], True)
    np.testing.assert_array_equal(fused, case["relu6"])
