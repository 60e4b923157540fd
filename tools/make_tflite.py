"""Build TFLite models of the network from a frozen graph with TF's converter: float32, and int8 (weights and
activations quantized with a representative dataset, float input and output).

Needs the reference venv (tensorflow-cpu 2.17.1): ``.venv-ref/bin/python tools/make_tflite.py FROZEN.pb OUT_DIR``.
The graph is cut at ``Preprocessor/sub`` (input: the preprocessed image, (1, 300, 300, 3) float32 in [-1, 1])
-> ``concat``, ``concat_1`` (box encodings and class logits): the converter cannot take the preprocessing loop
or the post-processing. Fused tensors keep ``;``-joined TF names (``.../Relu6;.../BatchNorm/batchnorm/add_1;
.../Conv2D``), which ``ssd-np capture`` maps back.

The representative dataset: the images of ``--images DIR`` (default: the shared COCO development images),
preprocessed as the graph does (``ssd_np.reference.preprocess``). Writes ``OUT_DIR/model_float.tflite`` and
``OUT_DIR/model_int8.tflite``. Importable: ``convert(frozen, out, quantize, images)``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from paths import COCO, ROOT

sys.path.insert(0, str(ROOT))
INPUT, OUTPUTS, SIZE = "Preprocessor/sub", ["concat", "concat_1"], 300
CALIBRATION_IMAGES = 16


def representative_images(images: Path, count: int = CALIBRATION_IMAGES):
    """Preprocessed (1, 300, 300, 3) float32 batches of the first `count` images of `images`, sorted by name."""
    import numpy as np

    from ssd_np.images import load_rgb
    from ssd_np.reference.preprocess import preprocess

    files = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
    if not files:
        raise FileNotFoundError(f"no .jpg/.png images in {images}: pass --images DIR")
    for path in files:
        yield [preprocess(load_rgb(path), {})[None].astype(np.float32)]


def convert(frozen: Path, out: Path, quantize: bool, images: Path = COCO / "val2017_dev") -> Path:
    """Convert the frozen graph to `out` (.tflite); int8 weights and activations when `quantize`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(frozen), input_arrays=[INPUT], output_arrays=OUTPUTS, input_shapes={INPUT: [1, SIZE, SIZE, 3]})
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: representative_images(images)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(converter.convert())
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("frozen", type=Path, help="frozen_inference_graph.pb (tools/freeze_and_convert.py)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--images", type=Path, default=COCO / "val2017_dev",
                        help="representative images for the int8 calibration")
    args = parser.parse_args(argv)
    for name, quantize in (("model_float.tflite", False), ("model_int8.tflite", True)):
        path = convert(args.frozen, args.out_dir / name, quantize, args.images)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
