"""Preprocessing (reference and engine): TF's legacy ResizeBilinear and scaling, OpenCV's uint8 INTER_LINEAR resize.

Fixtures tests/data/ops/resize_tf.npz and resize_cv2.npz come from tools/make_op_cases.py (real TF 2.17.1 and
OpenCV 4.11); both resizes are bit-exact.
"""
from __future__ import annotations

import numpy as np
import pytest

from ssd_np.engine import preprocess as engine_preprocess
from ssd_np.reference import preprocess
from test_kernels import op_cases


def test_tf_legacy_weights_hand():
    # 2 -> 4: scale 0.5, source coordinates 0, 0.5, 1, 1.5 (no half-pixel offset); the last clamps to row 1.
    lower, upper, lerp = preprocess.legacy_sampling(4, 2)
    np.testing.assert_array_equal(lower, [0, 0, 1, 1])
    np.testing.assert_array_equal(upper, [0, 1, 1, 1])
    np.testing.assert_array_equal(lerp, [0, 0.5, 0, 0.5])


def test_resize_tf_hand():
    image = np.zeros((2, 2, 3), np.uint8)
    image[:, :, 0] = [[0, 100], [200, 50]]
    out = preprocess.resize_bilinear_tf(image, 4, 4)[:, :, 0]
    np.testing.assert_array_equal(out[0], [0, 50, 100, 100])
    np.testing.assert_array_equal(out[2], [200, 125, 50, 50])
    np.testing.assert_array_equal(out[1], [100, 87.5, 75, 75])  # half-way between output rows 0 and 2
    np.testing.assert_array_equal(out[3], out[2])


@pytest.mark.parametrize("in_shape, out_shape", [((37, 53), (300, 300)), ((480, 640), (300, 300)), ((7, 5), (13, 11)),
                                                ((1, 1), (3, 2)), ((301, 299), (300, 300))])
def test_resize_tf_kernel_vs_twin_exact(in_shape, out_shape):
    image = np.random.default_rng(in_shape[0]).integers(0, 256, (*in_shape, 3), dtype=np.uint8)
    out = engine_preprocess.resize_bilinear_tf(image, *out_shape)
    ref = preprocess.resize_bilinear_tf(image, *out_shape)
    print(f"resize_tf {in_shape} -> {out_shape}: max diff {np.abs(out - ref).max():.2e}")
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("case", op_cases("resize_tf"), ids=lambda c: f"{c['image'].shape[:2]}->{c['out'].shape[:2]}")
@pytest.mark.parametrize("resize", [preprocess.resize_bilinear_tf, engine_preprocess.resize_bilinear_tf],
                         ids=["reference", "engine"])
def test_resize_tf_vs_tf_exact(case, resize):
    out = resize(case["image"], *case["out"].shape[:2])
    print(f"resize_tf {case['image'].shape} -> {out.shape}: max diff {np.abs(out - case['out']).max():.2e}")
    np.testing.assert_array_equal(out, case["out"])


def test_preprocess_constants_and_arithmetic():
    assert preprocess.SCALE.view(np.uint32) == 1006665857  # the graph's Preprocessor/mul/x, float32(2/255)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    trace: dict = {}
    out = preprocess.preprocess(image, trace)
    resized = preprocess.resize_bilinear_tf(image)
    assert out.shape == (300, 300, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(trace["Preprocessor/mul"][0], np.float32(2 / 255) * resized)
    np.testing.assert_array_equal(out, (np.float32(2 / 255) * resized) - np.float32(1))
    assert trace["Preprocessor/sub"].shape == (1, 300, 300, 3)
    assert out.min() >= -1 and out.max() <= 1
    np.testing.assert_array_equal(engine_preprocess.preprocess(image), out)


def test_cv2_hand_cases():
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(preprocess.resize_bilinear_cv2(image, 6, 8), image)
    # Exactly 2x smaller along both axes: OpenCV's area fast path, (a + b + c + d + 2) >> 2.
    blocks = image.astype(int).reshape(3, 2, 4, 2, 3).sum(axis=(1, 3))
    np.testing.assert_array_equal(preprocess.resize_bilinear_cv2(image, 3, 4), (blocks + 2) >> 2)
    # Constant images stay constant (coefficient pairs sum to 2048; the rounding recovers the value).
    flat = np.full((5, 7, 3), 201, np.uint8)
    np.testing.assert_array_equal(preprocess.resize_bilinear_cv2(flat, 300, 300), 201)


@pytest.mark.parametrize("case", op_cases("resize_cv2"), ids=lambda c: f"{c['image'].shape[:2]}->{c['out'].shape[:2]}")
def test_resize_cv2_vs_opencv_exact(case):
    out = preprocess.resize_bilinear_cv2(case["image"], *case["out"].shape[:2])
    print(f"resize_cv2 {case['image'].shape} -> {out.shape}: "
          f"max diff {np.abs(out.astype(int) - case['out']).max()}")
    np.testing.assert_array_equal(out, case["out"])


def test_bad_images_raise():
    with pytest.raises(ValueError, match="uint8"):
        preprocess.preprocess(np.zeros((4, 4, 3), np.float32), {})
    with pytest.raises(ValueError, match="uint8"):
        preprocess.resize_bilinear_tf(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        preprocess.resize_bilinear_cv2(np.zeros((4, 4), np.uint8))
