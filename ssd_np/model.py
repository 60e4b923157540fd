"""The whole SSD on the fast engine, in one page: the same pipeline as `reference/model.py`, kernels compiled.

    image (H, W, 3) uint8 RGB
      -> (300, 300, 3) float32 in [-1, 1]          engine.preprocess.preprocess (TF's legacy ResizeBilinear)
      -> six feature maps                          engine.network.feature_maps
      -> box encodings (1917, 4), logits (1917, 91)  engine.network.predict
      -> TF's four outputs, or detection_out       reference.postprocess with the compiled kernels (engine.postprocess.OPS)

`layers` is `prepare(variables)`: the weights packed once (`Detector` does it when it loads a file). Nothing here
traces: `ssd-np trace` runs the reference, which records every intermediate.
"""
from __future__ import annotations

import numpy as np

from ssd_np.engine import network, threads
from ssd_np.engine.postprocess import OPS
from ssd_np.engine.preprocess import preprocess
from ssd_np.reference import anchors, postprocess

prepare = network.prepare


def predict(rgb: np.ndarray, layers: dict) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 RGB -> `concat` (1917, 4) box encodings and `concat_1` (1917, 91) class logits (a thread
    per core, pinned: `engine.threads`)."""
    with threads.pinned():
        return network.predict(network.feature_maps(preprocess(rgb), layers), layers)


def tf_outputs(rgb: np.ndarray, layers: dict) -> dict[str, np.ndarray]:
    """TF's four outputs for one (H, W, 3) uint8 RGB image of any size, with TF's shapes (batch of 1)."""
    return postprocess.tf_outputs(*predict(rgb, layers), anchors.ssd_anchors(), {}, OPS)


def detection_out(rgb300: np.ndarray, layers: dict) -> np.ndarray:
    """OpenVINO's `detection_out` (1, 1, 100, 7) for a (300, 300, 3) uint8 image in RGB order: what the IR computes
    from the same pixels in BGR order (its first op flips them back: Model Optimizer's --reverse_input_channels)."""
    return postprocess.detection_out(*predict(rgb300, layers), {}, ops=OPS)
