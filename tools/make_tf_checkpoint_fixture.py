"""Write a small checkpoint with real TensorFlow, for tests/test_checkpoint.py (which never imports TF).

Needs the reference venv (TensorFlow 2.17.1):

    .venv-ref/bin/python tools/make_tf_checkpoint_fixture.py [OUT_DIR]

OUT_DIR defaults to tests/data/tf_written_ckpt. It gets `model.ckpt.index` and
`model.ckpt.data-00000-of-00001`, written by tf.compat.v1.train.Saver (TF1 style, as the release's
checkpoint was), and `values.npz`: every saved variable's value as TF holds it, read back from the session
after the save (the npz keys are the variable names).

The variables: float32 tensors named and shaped like ssd_mobilenet_v2's small ones, seeded random values,
one bias vector with the special values -0.0, +-inf, NaN, a subnormal and the largest float32 (to show the
bytes survive exactly), and `global_step` (int64 scalar).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
import tensorflow as tf  # noqa: E402

GLOBAL_STEP = 200000
SPECIAL = np.array([-0.0, np.inf, -np.inf, np.nan, 1e-45, np.finfo(np.float32).max], np.float32)
SHAPES = {
    "FeatureExtractor/MobilenetV2/Conv/weights": (3, 3, 3, 32),
    "FeatureExtractor/MobilenetV2/Conv/BatchNorm/gamma": (32,),
    "FeatureExtractor/MobilenetV2/Conv/BatchNorm/beta": (32,),
    "FeatureExtractor/MobilenetV2/Conv/BatchNorm/moving_mean": (32,),
    "FeatureExtractor/MobilenetV2/Conv/BatchNorm/moving_variance": (32,),
    "FeatureExtractor/MobilenetV2/expanded_conv/depthwise/depthwise_weights": (3, 3, 32, 1),
    "FeatureExtractor/MobilenetV2/expanded_conv/project/weights": (1, 1, 32, 16),
    "BoxPredictor_0/BoxEncodingPredictor/biases": (12,),
    "BoxPredictor_0/ClassPredictor/biases": (273,),
}


def stand_in_values(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in SHAPES.items()}
    values["BoxPredictor_0/BoxEncodingPredictor/biases"][: SPECIAL.size] = SPECIAL
    return values


def save_with_tf(values: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """Save `values` plus global_step with tf.compat.v1.train.Saver; return what the session holds."""
    with tf.Graph().as_default():
        variables = [tf.compat.v1.get_variable(name, initializer=value) for name, value in values.items()]
        global_step = tf.compat.v1.train.get_or_create_global_step()
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(global_step.assign(GLOBAL_STEP))
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)
            held = sess.run({v.op.name: v for v in variables + [global_step]})
    return held


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / "tests/data/tf_written_ckpt")
    out.mkdir(parents=True, exist_ok=True)
    values = stand_in_values()
    held = save_with_tf(values, str(out / "model.ckpt"))
    for name, value in values.items():
        assert held[name].tobytes() == value.tobytes(), name
    np.savez(out / "values.npz", **held)
    for path in sorted(out.iterdir()):
        print(f"{path}  {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
