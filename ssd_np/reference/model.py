"""The whole SSD, image to outputs, in plain NumPy: the reading copy of the model, and the trace.

Mirrors the release's inference graph (`meta_architectures/ssd_meta_arch.py`: `preprocess`, `predict`,
`postprocess`, as exported by `exporter.py`):

    image_tensor (1, H, W, 3) uint8 RGB
      -> Preprocessor/sub (1, 300, 300, 3)               preprocess.preprocess: ResizeBilinear, (2/255) x - 1
      -> six feature maps                                mobilenet_v2.feature_maps
      -> concat (1, 1917, 1, 4), concat_1 (1, 1917, 91)  box_predictor.predict
      -> detection_boxes/scores/classes, num_detections  postprocess.tf_outputs (TF's four outputs)
      or detection_out (1, 1, 100, 7)                    postprocess.detection_out (OpenVINO's converted model)

`weights` are the TF variables by name (`ssd_np.weights.hdf5.load_weights`). `trace`, when given, receives every
intermediate under the graph node name that computes it, in execution order (what `ssd-np trace` writes).
"""
from __future__ import annotations

import numpy as np

from ssd_np.reference import anchors, box_predictor, mobilenet_v2, postprocess, preprocess


def predict(x: np.ndarray, weights: dict, trace: dict) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed (300, 300, 3) float32 -> box encodings (1917, 4), class logits (1917, 91)."""
    return box_predictor.predict(mobilenet_v2.feature_maps(x, weights, trace), weights, trace)


def tf_outputs(rgb: np.ndarray, weights: dict, trace: dict | None = None) -> dict[str, np.ndarray]:
    """TF's four outputs for one (H, W, 3) uint8 RGB image of any size, with TF's shapes (batch of 1)."""
    trace = {} if trace is None else trace
    box_encodings, class_logits = predict(preprocess.preprocess(rgb, trace), weights, trace)
    return postprocess.tf_outputs(box_encodings, class_logits, anchors.ssd_anchors(), trace)


def detection_out(bgr300: np.ndarray, weights: dict, trace: dict | None = None) -> np.ndarray:
    """OpenVINO's `detection_out` (1, 1, 100, 7) for one (300, 300, 3) uint8 BGR image (the IR's input: the IR
    flips it back to RGB first, as Model Optimizer's --reverse_input_channels makes it do)."""
    trace = {} if trace is None else trace
    box_encodings, class_logits = predict(preprocess.preprocess(bgr300[:, :, ::-1], trace), weights, trace)
    return postprocess.detection_out(box_encodings, class_logits, trace)
