"""The six convolutional box predictors (`BoxPredictor_0` .. `BoxPredictor_5`): per feature map, box encodings
and class logits for every anchor.

Mirrors `object_detection/predictors/convolutional_box_predictor.py` (kernel 3, no layers before the predictor,
no batch norm, no activation). For feature map i (H, W, C) with A anchors per location:
- `BoxPredictor_i/BoxEncodingPredictor`: 3x3 conv SAME to A * 4 channels, then `BiasAdd`;
- `BoxPredictor_i/ClassPredictor`: 3x3 conv SAME to A * 91 channels (column 0: background), then `BiasAdd`.
`Reshape` turns (1, H, W, A*4) into (1, H*W*A, 1, 4) and `Reshape_1` (1, H, W, A*91) into (1, H*W*A, 91),
row-major: anchor index (y * W + x) * A + a, box code [ty, tx, th, tw] in channels 4a .. 4a+3 (the anchors
are generated in the same order). `concat` (1, 1917, 1, 4) and `concat_1` (1, 1917, 91) join the six maps.
"""
from __future__ import annotations

import numpy as np

from ssd_np.reference.mobilenet_v2 import conv2d
from ssd_np.reference.tracing import record

NUM_CLASSES_WITH_BACKGROUND = 91
BOX_CODE_SIZE = 4
ANCHORS_PER_LOCATION = (3, 6, 6, 6, 6, 6)  # ssd_anchor_generator: 3 boxes on the first map, 6 on the others
HEADS = (("BoxEncodingPredictor", BOX_CODE_SIZE), ("ClassPredictor", NUM_CLASSES_WITH_BACKGROUND))


def variable_shapes(feature_channels: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the predictors' variables for feature maps with `feature_channels` channels."""
    shapes = {}
    for i, (channels, anchors) in enumerate(zip(feature_channels, ANCHORS_PER_LOCATION)):
        for head, depth in HEADS:
            shapes[f"BoxPredictor_{i}/{head}/weights"] = (3, 3, channels, anchors * depth)
            shapes[f"BoxPredictor_{i}/{head}/biases"] = (anchors * depth,)
    return shapes


def predict(feature_maps: list[np.ndarray], weights: dict, trace: dict) -> tuple[np.ndarray, np.ndarray]:
    """Six (H, W, C) maps -> box encodings (1917, 4) `[ty, tx, th, tw]` and class logits (1917, 91)."""
    boxes, logits = [], []
    for i, feature_map in enumerate(feature_maps):
        y = {}
        for head, _ in HEADS:
            scope = f"BoxPredictor_{i}/{head}"
            raw = conv2d(feature_map, weights[f"{scope}/weights"], 1)  # (H, W, A * depth)
            raw = record(trace, f"{scope}/Conv2D", raw, (1, *raw.shape))
            y[head] = record(trace, f"{scope}/BiasAdd", raw + weights[f"{scope}/biases"], (1, *raw.shape))
        box = y["BoxEncodingPredictor"].reshape(-1, BOX_CODE_SIZE)  # (H*W*A, 4)
        boxes.append(record(trace, f"BoxPredictor_{i}/Reshape", box, (1, len(box), 1, BOX_CODE_SIZE)))
        logit = y["ClassPredictor"].reshape(-1, NUM_CLASSES_WITH_BACKGROUND)  # (H*W*A, 91)
        logits.append(record(trace, f"BoxPredictor_{i}/Reshape_1", logit, (1, *logit.shape)))
    boxes, logits = np.concatenate(boxes), np.concatenate(logits)  # (1917, 4), (1917, 91)
    return (record(trace, "concat", boxes, (1, len(boxes), 1, BOX_CODE_SIZE)),
            record(trace, "concat_1", logits, (1, *logits.shape)))
