"""Compare ssd_np's network (preprocess, MobileNetV2, box predictors) with the genuine graph, layer by layer.

    .venv-ref/bin/python tools/check_network_tf.py [--image PATH] [--seed 1] [--profile sparse] [--spread]

Reference venv (TF 2.17.1; numba and ssd_np run there too, numpy 1.26). Stand-in weights (ssd_np.weights.standin) are
assigned to the variables of the genuine `model.ckpt.meta` (tools/tf_reference.py: oneDNN off, one thread,
Grappler off); one uint8 RGB image is fed to `image_tensor:0`, and every node that ssd_np traces is fetched.
Per node it prints the largest absolute difference, that difference relative to the tensor's largest
magnitude, and whether the two are bit-identical. With --spread, TF is also run with its default settings
(oneDNN on, default threads, Grappler on; in a child process, since oneDNN is chosen when TF is imported) and
the same numbers are printed for TF against itself.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if "--tf-defaults" in sys.argv:
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tf_reference import ReferenceGraph  # noqa: E402

from ssd_np.reference import model  # noqa: E402
from ssd_np.weights.standin import standin_weights  # noqa: E402

from paths import COCO  # noqa: E402

DEFAULT_IMAGE = COCO / "val2017_dev" / "000000000139.jpg"


def ssd_np_trace(rgb: np.ndarray, weights: dict) -> dict[str, np.ndarray]:
    """The reference's trace of the network (preprocessing to `concat_1`; the post-processing is checked
    separately, bit for bit, by tests/test_postprocess.py)."""
    trace: dict[str, np.ndarray] = {}
    model.predict(model.preprocess.preprocess(rgb, trace), weights, trace)
    return trace


def difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float, bool]:
    diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    scale = float(np.abs(b).max())
    return diff, diff / scale if scale else 0.0, bool(np.array_equal(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", default="sparse")
    parser.add_argument("--spread", action="store_true", help="also measure TF default settings against TF")
    parser.add_argument("--tf-defaults", type=Path, help=argparse.SUPPRESS)  # child: dump TF-default values here
    args = parser.parse_args()

    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    weights = standin_weights(args.seed, args.profile)
    ours = ssd_np_trace(rgb, weights)
    names = list(ours)
    if args.tf_defaults:
        np.savez(args.tf_defaults, **ReferenceGraph(weights, reproducible=False).run(rgb, names))
        return
    reference = ReferenceGraph(weights).run(rgb, names)
    spread = None
    if args.spread:
        with tempfile.TemporaryDirectory() as tmp:
            dump = Path(tmp) / "tf_defaults.npz"
            subprocess.run([sys.executable, __file__, "--image", str(args.image), "--seed", str(args.seed),
                            "--profile", args.profile, "--tf-defaults", str(dump)], check=True)
            with np.load(dump) as z:
                spread = {k: z[k] for k in z.files}

    header = f"{'node':<72} {'shape':>18} {'max_abs':>9} {'rel':>9} exact"
    print(header + ("   tf_rel tf_exact" if spread else ""))
    worst = {}
    for name in names:
        tf_value = reference[name]
        if ours[name].shape != tf_value.shape:
            raise SystemExit(f"{name}: ssd_np shape {ours[name].shape} != TF shape {tf_value.shape}")
        diff, rel, exact = difference(ours[name], tf_value)
        line = f"{name:<72} {str(tf_value.shape):>18} {diff:9.2e} {rel:9.2e} {str(exact):>5}"
        if spread:
            _, tf_rel, tf_exact = difference(spread[name], tf_value)
            line += f" {tf_rel:8.2e} {str(tf_exact):>5}"
        print(line)
        worst[name] = rel
    name = max(worst, key=worst.get)
    print(f"largest relative difference: {worst[name]:.3e} at {name}")


if __name__ == "__main__":
    main()
