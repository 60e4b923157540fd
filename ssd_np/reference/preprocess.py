"""Preprocessing: the graph's resize and scaling (`Preprocessor/`), and OpenCV's uint8 resize that OpenVINO users
put in front of the converted model.

TF graph: `ToFloat` of the uint8 RGB image, `ResizeBilinear` to 300x300 (align_corners=False,
half_pixel_centers=False: TF1's "legacy" sampling, `resize_bilinear_op.cc`), then `Preprocessor/mul`
(`float32(2/255) * x`) and `Preprocessor/sub` (`- 1`). The image is stretched, its aspect ratio not kept
(`fixed_shape_resizer`): the model was trained on stretched images.

TF legacy bilinear, per axis (`compute_interpolation_weights` with `LegacyScaler`), all float32:
    scale = in_size / out_size,  src = i * scale                       (i = output index)
    lower = max(floor(src), 0),  upper = min(ceil(src), in_size - 1),  lerp = src - floor(src)
and per output value (`compute_lerp`), each operation rounded to float32 (TF's SSE path, no FMA):
    top = top_left + (top_right - top_left) * x_lerp;  bottom = likewise;  out = top + (bottom - top) * y_lerp
Written out op by op rather than as one interpolation formula because TF rounds after every operation.

OpenCV `cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)` on uint8 (`imgproc/src/resize.cpp`, 4.x):
fixed point with 11-bit coefficients. Per axis, in double then float:
    f = float((d + 0.5) * (1 / (out / in)) - 0.5), s = floor(f), frac = f - s
    alpha = (rint((1 - frac) * 2048), rint(frac * 2048))          (round half to even)
Along x, taps outside the image are clamped (s < 0 -> s = 0, frac = 0; s >= in - 1 -> s = in - 1, frac = 0);
along y the coefficients are not clamped but the rows `s, s + 1` are clamped to [0, in - 1].
Horizontal pass: `h = src[s] * a0 + src[s + 1] * a1` (int32, exact); vertical pass:
    out = (((b0 * (h0 >> 4)) >> 16) + ((b1 * (h1 >> 4)) >> 16) + 2) >> 2
Exactly twice the output size along both axes takes OpenCV's area fast path: `(a + b + c + d + 2) >> 2`.
"""
from __future__ import annotations

import numpy as np

from ssd_np.reference.tracing import record

INPUT_SIZE = 300  # fixed_shape_resizer 300x300
SCALE = np.float32(2.0 / 255.0)  # `Preprocessor/mul/x`
OFFSET = np.float32(1.0)  # `Preprocessor/sub/y`


def check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"empty image {image.shape}")


def legacy_sampling(out_size: int, in_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF legacy sampling along one axis: (lower, upper, lerp) per output index."""
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size).astype(np.float32) * scale
    floor = np.floor(src)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    return lower, upper, src - floor


def resize_bilinear_tf(image: np.ndarray, out_height: int = INPUT_SIZE, out_width: int = INPUT_SIZE) -> np.ndarray:
    """TF1 `ResizeBilinear` (legacy): uint8 (H, W, 3) -> float32 (out_height, out_width, 3)."""
    check_image(image)
    y_lower, y_upper, y_lerp = legacy_sampling(out_height, image.shape[0])
    x_lower, x_upper, x_lerp = legacy_sampling(out_width, image.shape[1])
    pixels = image.astype(np.float32)
    top_rows, bottom_rows = pixels[y_lower], pixels[y_upper]  # (out_h, W, 3)
    x_lerp = x_lerp[None, :, None]
    top = top_rows[:, x_lower] + (top_rows[:, x_upper] - top_rows[:, x_lower]) * x_lerp  # (out_h, out_w, 3)
    bottom = bottom_rows[:, x_lower] + (bottom_rows[:, x_upper] - bottom_rows[:, x_lower]) * x_lerp
    return top + (bottom - top) * y_lerp[:, None, None]


def preprocess(image: np.ndarray, trace: dict) -> np.ndarray:
    """`Preprocessor/`: uint8 RGB (H, W, 3) -> float32 (300, 300, 3) in [-1, 1], `(2/255) * resized - 1`."""
    batched = (1, INPUT_SIZE, INPUT_SIZE, 3)
    resized = record(trace, "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3", resize_bilinear_tf(image),
                     batched)  # (300, 300, 3), values 0..255
    scaled = record(trace, "Preprocessor/mul", SCALE * resized, batched)
    return record(trace, "Preprocessor/sub", scaled - OFFSET, batched)


def _cv2_linear_taps(out_size: int, in_size: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV INTER_LINEAR 8-bit taps along one axis: (first source index, alpha0, alpha1), int64."""
    scale = 1.0 / (out_size / in_size)
    f = ((np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(f).astype(np.int64)
    frac = f - first.astype(np.float32)
    if clamp:
        edge = (first < 0) | (first >= in_size - 1)
        frac[edge] = 0
        first = np.clip(first, 0, in_size - 1)
    alpha0 = np.rint((np.float32(1.0) - frac) * np.float32(2048.0)).astype(np.int64)
    alpha1 = np.rint(frac * np.float32(2048.0)).astype(np.int64)
    return first, alpha0, alpha1


def resize_bilinear_cv2(image: np.ndarray, out_height: int = INPUT_SIZE, out_width: int = INPUT_SIZE) -> np.ndarray:
    """`cv2.resize(image, (out_width, out_height), interpolation=cv2.INTER_LINEAR)` on uint8 (H, W, C), bit-exact."""
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, C) image, got {image.dtype} {image.shape}")
    in_height, in_width = image.shape[:2]
    if (in_height, in_width) == (out_height, out_width):
        return image.copy()
    src = image.astype(np.int64)
    if in_height == 2 * out_height and in_width == 2 * out_width:
        blocks = src[0::2, 0::2] + src[0::2, 1::2] + src[1::2, 0::2] + src[1::2, 1::2]
        return ((blocks + 2) >> 2).astype(np.uint8)
    x0, a0, a1 = _cv2_linear_taps(out_width, in_width, clamp=True)
    x1 = np.minimum(x0 + 1, in_width - 1)
    y0, b0, b1 = _cv2_linear_taps(out_height, in_height, clamp=False)
    rows0 = np.clip(y0, 0, in_height - 1)
    rows1 = np.clip(y0 + 1, 0, in_height - 1)
    horizontal = src[:, x0] * a0[None, :, None] + src[:, x1] * a1[None, :, None]  # (H, out_w, C), scale 2**11
    h0 = horizontal[rows0] >> 4
    h1 = horizontal[rows1] >> 4
    out = (((b0[:, None, None] * h0) >> 16) + ((b1[:, None, None] * h1) >> 16) + 2) >> 2
    return out.astype(np.uint8)
