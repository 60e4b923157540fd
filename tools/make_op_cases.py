"""Make the op fixtures in tests/data/ops/ from the real ops (reference venv: TF 2.17.1 and OpenCV 4.11).

    .venv-ref/bin/python tools/make_op_cases.py [--out tests/data/ops]

Seeded random inputs, run through TensorFlow (graph mode, oneDNN off, one thread, Grappler off: the golden
settings of tools/tf_reference.py) and OpenCV, saved as small .npz files that tests/test_kernels.py and
tests/test_preprocess.py compare ssd_np against without TF:

- resize_tf.npz: `tf.compat.v1.image.resize_bilinear` (align_corners=False, half_pixel_centers=False) of uint8
  images cast to float32, down-, up- and mixed scaling, odd sizes, identity.
- resize_cv2.npz: `cv2.resize(..., interpolation=cv2.INTER_LINEAR)` on uint8 3-channel images, including the
  exact 2x downscale (OpenCV's area fast path) and upscaling.
- conv2d.npz: `tf.nn.conv2d` SAME, strides 1 and 2, odd and even sizes (asymmetric padding), 1x1 and 3x3.
- depthwise.npz: `tf.nn.depthwise_conv2d_native` 3x3 SAME, strides 1 and 2.
- batch_norm.npz: the slim batch norm ops as the graph wires them (add, Rsqrt, mul, mul_1, mul_2, sub, add_1)
  and Relu6, on channel counts with and without a scalar tail (TF's Rsqrt differs between its paths).

Each case `i` stores its inputs and TF's output under keys `"{i}/name"`.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tf_reference import ROOT, session_config  # noqa: E402

tf1 = tf.compat.v1


def run_tf(build, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Build a graph `build(**placeholders)` and run it once on `feeds` with the reproducible settings."""
    graph = tf.Graph()
    with graph.as_default():
        placeholders = {k: tf1.placeholder(tf.as_dtype(v.dtype), v.shape, name=k) for k, v in feeds.items()}
        output = build(**placeholders)
        with tf1.Session(graph=graph, config=session_config(True)) as session:
            return session.run(output, {placeholders[k]: v for k, v in feeds.items()})


def resize_tf_cases(rng: np.random.Generator) -> dict[str, np.ndarray]:
    cases = {}
    shapes = [((37, 53), (30, 40)), ((7, 5), (30, 40)), ((61, 9), (23, 31)), ((30, 40), (30, 40)),
              ((1, 1), (5, 7)), ((97, 131), (29, 17)), ((300, 2), (11, 300))]
    for i, ((h, w), (oh, ow)) in enumerate(shapes):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = run_tf(lambda image: tf1.image.resize_bilinear(tf.cast(image, tf.float32)[None], [oh, ow],
                                                             align_corners=False, half_pixel_centers=False)[0],
                     {"image": image})
        cases.update({f"{i}/image": image, f"{i}/out": out})
    return cases


def resize_cv2_cases(rng: np.random.Generator) -> dict[str, np.ndarray]:
    cases = {}
    shapes = [((60, 80), (30, 40)), ((37, 53), (30, 40)), ((7, 5), (30, 40)), ((61, 9), (23, 31)),
              ((90, 120), (30, 40)), ((31, 29), (300, 7)), ((600, 4), (300, 2))]
    for i, ((h, w), (oh, ow)) in enumerate(shapes):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = cv2.resize(image, (ow, oh), interpolation=cv2.INTER_LINEAR)
        cases.update({f"{i}/image": image, f"{i}/out": out})
    return cases


def conv2d_cases(rng: np.random.Generator) -> dict[str, np.ndarray]:
    cases = {}
    shapes = [((7, 9, 5), (3, 3, 5, 3), 1), ((13, 11, 19), (3, 3, 19, 7), 2), ((12, 10, 24), (3, 3, 24, 5), 2),
              ((8, 8, 16), (1, 1, 16, 13), 1), ((20, 18, 3), (3, 3, 3, 32), 2), ((5, 5, 64), (3, 3, 64, 30), 1),
              ((2, 2, 40), (3, 3, 40, 9), 1), ((1, 1, 33), (3, 3, 33, 6), 1)]
    for i, (x_shape, w_shape, stride) in enumerate(shapes):
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = (rng.standard_normal(w_shape) / np.sqrt(np.prod(w_shape[:3]))).astype(np.float32)
        out = run_tf(lambda x, w: tf.nn.conv2d(x[None], w, [1, stride, stride, 1], "SAME")[0], {"x": x, "w": w})
        cases.update({f"{i}/x": x, f"{i}/w": w, f"{i}/stride": np.int64(stride), f"{i}/out": out})
    return cases


def depthwise_cases(rng: np.random.Generator) -> dict[str, np.ndarray]:
    cases = {}
    shapes = [((7, 9, 5), 1), ((13, 11, 19), 2), ((8, 8, 16), 2), ((10, 10, 96), 1), ((6, 6, 20), 2),
              ((1, 1, 24), 2), ((2, 3, 40), 1)]
    for i, (x_shape, stride) in enumerate(shapes):
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal((3, 3, x_shape[2], 1)).astype(np.float32)
        out = run_tf(lambda x, w: tf1.nn.depthwise_conv2d_native(x[None], w, [1, stride, stride, 1], "SAME")[0],
                     {"x": x, "w": w})
        cases.update({f"{i}/x": x, f"{i}/w": w, f"{i}/stride": np.int64(stride), f"{i}/out": out})
    return cases


def slim_batch_norm(x, gamma, beta, mean, variance):
    """The ops of slim's unfused batch norm, wired as in the inference graph, and the Relu6 after it."""
    scale = tf.math.rsqrt(variance + np.float32(0.001)) * gamma  # batchnorm/add, Rsqrt, mul
    shift = beta - mean * scale  # batchnorm/mul_2, sub
    y = x * scale + shift  # batchnorm/mul_1, add_1
    return scale, shift, y, tf.nn.relu6(y)


def batch_norm_cases(rng: np.random.Generator) -> dict[str, np.ndarray]:
    cases = {}
    for i, c in enumerate([64, 37, 5, 1280]):
        feeds = {
            "x": (4 * rng.standard_normal((3, 5, c))).astype(np.float32),
            "gamma": (1.4 + 0.1 * rng.standard_normal(c)).astype(np.float32),
            "beta": (0.1 * rng.standard_normal(c)).astype(np.float32),
            "mean": (0.1 * rng.standard_normal(c)).astype(np.float32),
            "variance": (1.0 + 0.25 * rng.random(c)).astype(np.float32),
        }
        scale, shift, y, relu6 = run_tf(slim_batch_norm, feeds)
        cases.update({f"{i}/{k}": v for k, v in feeds.items()})
        cases.update({f"{i}/scale": scale, f"{i}/shift": shift, f"{i}/y": y, f"{i}/relu6": relu6})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "ops")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    makers = {"resize_tf": resize_tf_cases, "resize_cv2": resize_cv2_cases, "conv2d": conv2d_cases,
              "depthwise": depthwise_cases, "batch_norm": batch_norm_cases}
    for seed, (name, make) in enumerate(makers.items()):
        path = args.out / f"{name}.npz"
        np.savez_compressed(path, **make(np.random.default_rng(1000 + seed)))
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
