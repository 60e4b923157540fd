"""The real converters, checked with `ssd-np capture` + `ssd-np compare`: tf2onnx, Model Optimizer's Open Model Zoo
recipe and TF's TFLite converter on the release graph with stand-in weights, exact and with one layer's weights
scaled by 1.02.

    .venv-ref/bin/python tools/capture_walkthrough.py [--work /tmp/ssd_np_capture] [--python PY]

Needs the reference venv (tensorflow-cpu 2.17.1, openvino-dev 2024.6 with `mo`, tf2onnx 1.17). `--python` is the
interpreter that runs `ssd-np capture` and `ssd-np compare` (default: this one; it needs ssd_np's `onnx`,
`openvino` and `tflite` extras, e.g. a checkout's `.venv/bin/python`).

For each weights set (`exact`: stand-in seed 1; `scaled`: the same with
`FeatureExtractor/MobilenetV2/expanded_conv_3/project/weights` x 1.02), built once under `--work`: the frozen
graph and the OpenVINO IR (`tools/freeze_and_convert.py`), tf2onnx's `model.onnx` of the whole graph
(`tools/peers.py`), and TFLite models cut at `Preprocessor/sub` -> `concat`, `concat_1` (`tools/make_tflite.py`:
float, and for `exact` also int8). Then, on a 300x300 COCO image (the IR's input size, so both pipelines see the
same pixels): `ssd-np trace --openvino` with the exact weights, and `ssd-np capture` + `ssd-np compare` for every
model (the frozen graph itself with TensorFlow, by this interpreter); the int8 model with `--atol 0.05`. Prints
each command and the tail of its output (the table's first divergence and verdict).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from paths import COCO, ROOT

sys.path.insert(0, str(ROOT))
import freeze_and_convert  # noqa: E402
import make_tflite  # noqa: E402
import peers  # noqa: E402

SCALED_VARIABLE = "FeatureExtractor/MobilenetV2/expanded_conv_3/project/weights"
FACTOR = 1.02
IMAGE = COCO / "val2017_dev" / "000000037777.jpg"


def build(work: Path, variant: str) -> dict[str, Path]:
    """The weights (checkpoint + HDF5) and every converted model of one variant, cached under work/variant."""
    import numpy as np

    from ssd_np.weights.checkpoint import write_checkpoint
    from ssd_np.weights.hdf5 import write_h5
    from ssd_np.weights.standin import standin_weights

    d = work / variant
    paths = {"checkpoint": d / "model.ckpt", "h5": d / "weights.h5", "frozen": d / "frozen_inference_graph.pb",
             "ir": d / "ssd_mobilenet_v2_coco.xml", "onnx": d / "model.onnx",
             "tflite": d / "model_float.tflite", "tflite_int8": d / "model_int8.tflite"}
    if not paths["h5"].is_file():
        d.mkdir(parents=True, exist_ok=True)
        weights = standin_weights(1, "sparse")
        if variant == "scaled":
            weights[SCALED_VARIABLE] = weights[SCALED_VARIABLE] * np.float32(FACTOR)
        write_checkpoint(paths["checkpoint"], {**weights, "global_step": np.int64(0)})
        source = "stand-in, seed 1, profile sparse" + ("" if variant == "exact" else f", {variant}")
        write_h5(weights, paths["h5"], source)
    if not paths["frozen"].is_file():
        freeze_and_convert.freeze(paths["checkpoint"], d)
    if not paths["ir"].is_file():
        freeze_and_convert.convert(paths["frozen"], d)
    peers.build_onnx(paths, None)
    if not paths["tflite"].is_file():
        make_tflite.convert(paths["frozen"], paths["tflite"], quantize=False)
    if variant == "exact" and not paths["tflite_int8"].is_file():
        make_tflite.convert(paths["frozen"], paths["tflite_int8"], quantize=True)
    return paths


def ssd_np(python: str, *args: str, tail: int = 0) -> int:
    """Run `ssd-np ARGS` with `python`, print the command and its output (the last `tail` lines if given)."""
    print(f"$ ssd-np {' '.join(args)}", flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([python, "-m", "ssd_np.cli", *args], capture_output=True, text=True, env=env)
    lines = (result.stdout + result.stderr).rstrip().splitlines()
    print("\n".join(lines[-tail:] if tail else lines))
    print(f"(exit {result.returncode})\n", flush=True)
    return result.returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/ssd_np_capture"))
    parser.add_argument("--python", default=sys.executable, help="interpreter running ssd-np capture/compare")
    parser.add_argument("--image", type=Path, default=IMAGE, help="image (resized to 300x300)")
    parser.add_argument("--tail", type=int, default=4, help="lines of each comparison to print (0: all)")
    args = parser.parse_args(argv)
    from PIL import Image

    models = {variant: build(args.work, variant) for variant in ("exact", "scaled")}
    image = args.work / "image300.png"
    Image.open(args.image).convert("RGB").resize((300, 300), Image.BILINEAR).save(image)
    reference = args.work / "reference.npz"
    ssd_np(args.python, "trace", str(image), "--openvino", "--weights", str(models["exact"]["h5"]),
           "--out", str(reference))
    runs = [(variant, kind) for variant in ("exact", "scaled") for kind in ("onnx", "ir", "tflite", "frozen")]
    for variant, kind in runs + [("exact", "tflite_int8")]:
        candidate = args.work / f"{variant}_{kind}.npz"
        python = sys.executable if kind == "frozen" else args.python  # TensorFlow is in the reference venv
        ssd_np(python, "capture", str(models[variant][kind]), str(image), "--out", str(candidate))
        tolerance = ["--atol", "0.05"] if kind == "tflite_int8" else []
        ssd_np(args.python, "compare", str(reference), str(candidate), *tolerance, tail=args.tail)


if __name__ == "__main__":
    main()
