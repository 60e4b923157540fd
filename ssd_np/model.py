"""The whole SSD: preprocessing, MobileNetV2 feature maps, box predictors, then either post-processing path.

Mirrors the release's inference graph, `object_detection/meta_architectures/ssd_meta_arch.py` (`preprocess`,
`predict`, `postprocess`) as exported by `exporter.py`:

    image_tensor (1, H, W, 3) uint8 RGB
      -> Preprocessor/sub (1, 300, 300, 3)          preprocess.preprocess: ResizeBilinear, (2/255) x - 1
      -> six feature maps                           mobilenet_v2.feature_maps
      -> concat (1, 1917, 1, 4), concat_1 (1, 1917, 91)   box_predictor.predict
      -> detection_boxes/scores/classes, num_detections   postprocess.tf_outputs (TF's four outputs)
      or detection_out (1, 1, N, 7)                       postprocess.detection_out (OpenVINO's IR)

`trace`, when given, receives every intermediate under the graph node name that computes it. `weights` is either
the TF variables or, faster, `prepare(variables)`: the layers with their weights packed once (as `Detector` does).
"""
from __future__ import annotations

import numpy as np

from ssd_np import anchors, box_predictor, mobilenet_v2, postprocess, preprocess


def prepare(weights: dict[str, np.ndarray]) -> dict:
    """The network's layers, prepared once from the TF variables (packed weights, batch norm scale and shift)."""
    return {**mobilenet_v2.prepare(weights), **box_predictor.prepare(weights)}


def predict(x: np.ndarray, weights: dict[str, np.ndarray], trace: dict | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """Network on a preprocessed (300, 300, 3) float32 input -> box encodings (1917, 4), class logits (1917, 91)."""
    features = mobilenet_v2.feature_maps(x, weights, trace)
    return box_predictor.predict(features, weights, trace)


def tf_outputs(rgb: np.ndarray, weights: dict[str, np.ndarray], trace: dict | None = None) -> dict[str, np.ndarray]:
    """TF's four outputs for one (H, W, 3) uint8 RGB image of any size, with TF's shapes (batch of 1)."""
    x = preprocess.preprocess(rgb, trace)
    box_encodings, class_logits = predict(x, weights, trace)
    return postprocess.tf_outputs(box_encodings, class_logits, anchors.ssd_anchors(), trace)


def detection_out(bgr300: np.ndarray, weights: dict[str, np.ndarray], trace: dict | None = None) -> np.ndarray:
    """OpenVINO's `detection_out` (1, 1, 100, 7) for one (300, 300, 3) uint8 BGR image (the IR's input)."""
    x = preprocess.preprocess(np.ascontiguousarray(bgr300[:, :, ::-1]), trace)
    box_encodings, class_logits = predict(x, weights, trace)
    return postprocess.detection_out(box_encodings, class_logits)
