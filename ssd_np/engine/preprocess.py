"""The graph's preprocessing, compiled: twin of `reference.preprocess.resize_bilinear_tf` and `preprocess`
(the same float32 operations per output value, no fast-math: the same bits)."""
from __future__ import annotations

import numpy as np
from numba import prange

from ssd_np.jit import njit
from ssd_np.reference.preprocess import INPUT_SIZE, OFFSET, SCALE, check_image, legacy_sampling


@njit(parallel=True)
def _resize_bilinear_tf(image, y_lower, y_upper, y_lerp, x_lower, x_upper, x_lerp, scale, offset, out):
    """out (oh, ow*c) float32 = scale * (TF legacy bilinear of image (h, w*c) uint8) - offset, parallel over output
    rows. Rows are flat (element x*c + channel): x_lower, x_upper, x_lerp are given per output element. Per output
    row, first the horizontal lerps of its two source rows (`top`, `bottom`: contiguous, so the second loop
    vectorizes), then the vertical one and the affine map, each a float32 operation rounded as in the reference.
    (On one thread, 300x300x3: 0.52 ms with the lerps and channels in one loop nest and the affine map in numpy,
    0.33 ms like this.)"""
    oh, n = out.shape
    for y in prange(oh):
        top_row = image[y_lower[y]]
        bottom_row = image[y_upper[y]]
        top = np.empty(n, np.float32)
        bottom = np.empty(n, np.float32)
        for j in range(n):
            top_left, bottom_left = np.float32(top_row[x_lower[j]]), np.float32(bottom_row[x_lower[j]])
            top[j] = top_left + (np.float32(top_row[x_upper[j]]) - top_left) * x_lerp[j]
            bottom[j] = bottom_left + (np.float32(bottom_row[x_upper[j]]) - bottom_left) * x_lerp[j]
        yl = y_lerp[y]
        row = out[y]
        for j in range(n):
            row[j] = (top[j] + (bottom[j] - top[j]) * yl) * scale - offset


def _resize_and_scale(image: np.ndarray, out_height: int, out_width: int, scale: np.float32,
                      offset: np.float32) -> np.ndarray:
    """scale * resize_bilinear_tf(image) - offset, in one pass over the output."""
    check_image(image)
    h, w, c = image.shape
    x_lower, x_upper, x_lerp = legacy_sampling(out_width, w)
    channel = np.arange(c)
    flat_lower = (x_lower[:, None] * c + channel).ravel()  # per output element x*c + channel
    flat_upper = (x_upper[:, None] * c + channel).ravel()
    flat_lerp = np.repeat(x_lerp, c)
    out = np.empty((out_height, out_width * c), np.float32)
    rows = np.ascontiguousarray(image).reshape(h, w * c)
    rows.flags.writeable = False  # one compiled specialization for any input (arrays from PIL are read-only)
    _resize_bilinear_tf(rows, *legacy_sampling(out_height, h), flat_lower, flat_upper, flat_lerp, scale, offset,
                        out)
    return out.reshape(out_height, out_width, c)


def resize_bilinear_tf(image: np.ndarray, out_height: int = INPUT_SIZE, out_width: int = INPUT_SIZE) -> np.ndarray:
    """TF1 `ResizeBilinear` (legacy): uint8 (H, W, 3) -> float32 (out_height, out_width, 3)."""
    return _resize_and_scale(image, out_height, out_width, np.float32(1.0), np.float32(0.0))  # x * 1 - 0 == x


def preprocess(image: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> float32 (300, 300, 3), `(2/255) * resized - 1` (`Preprocessor/mul`, `/sub`)."""
    return _resize_and_scale(image, INPUT_SIZE, INPUT_SIZE, SCALE, OFFSET)
