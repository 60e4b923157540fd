"""The six convolutional box predictors of ssd_mobilenet_v2_coco (`BoxPredictor_0` .. `BoxPredictor_5`).

Mirrors `object_detection/predictors/convolutional_box_predictor.py` (kernel 3, no layers before the predictor,
no batch norm, no activation): for feature map i with `A` anchors per location,
- `BoxPredictor_i/BoxEncodingPredictor`: 3x3 conv SAME stride 1 to `A * 4` channels, plus biases (`BiasAdd`);
- `BoxPredictor_i/ClassPredictor`: 3x3 conv SAME stride 1 to `A * 91` channels (column 0 = background), plus biases.
Both heads of a map run as one convolution (`prepare` concatenates their weights): the same sums as two.
On the 19x19 and 10x10 maps (`WINOGRAD_MAPS`, 93 % of the predictors' multiply-adds) the convolution runs as
Winograd F(2x2, 3x3) (`winograd.py`: 2.0-2.25x fewer multiply-adds, only the float32 rounding differs). On the
smaller maps it saves little or nothing: their time goes into reading the weights, which Winograd makes 16/9
times larger (5x5: 1.35 ms against 1.43 ms direct, for 8 MB more weights).
`BoxPredictor_i/Reshape` turns (1, H, W, A*4) into (1, H*W*A, 1, 4) and `Reshape_1` (1, H, W, A*91) into
(1, H*W*A, 91), row-major: anchor index `(y * W + x) * A + a`, box code `[ty, tx, th, tw]` in channels
`4a .. 4a+3`. The graph's `concat` (1, 1917, 1, 4) and `concat_1` (1, 1917, 91) join the six maps in order.
"""
from __future__ import annotations

import numpy as np

from ssd_np import winograd
from ssd_np.kernels import Conv, conv_bn_act, prepare_conv, without_epilogue

NUM_CLASSES_WITH_BACKGROUND = 91
BOX_CODE_SIZE = 4
ANCHORS_PER_LOCATION = (3, 6, 6, 6, 6, 6)  # ssd_anchor_generator: 3 boxes on the first map, 6 on the others
WINOGRAD_MAPS = (0, 1)  # 19x19, 10x10: 5.6 and 6.9 ms against 9.6 and 11.8 (tools/profile_layers.py --layers)


def variable_shapes(feature_channels: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the predictors' variables for feature maps with `feature_channels` channels."""
    shapes = {}
    for i, (channels, anchors) in enumerate(zip(feature_channels, ANCHORS_PER_LOCATION)):
        for head, depth in (("BoxEncodingPredictor", BOX_CODE_SIZE), ("ClassPredictor", NUM_CLASSES_WITH_BACKGROUND)):
            shapes[f"BoxPredictor_{i}/{head}/weights"] = (3, 3, channels, anchors * depth)
            shapes[f"BoxPredictor_{i}/{head}/biases"] = (anchors * depth,)
    return shapes


def prepare(weights: dict[str, np.ndarray]) -> dict[str, Conv | winograd.Winograd]:
    """Per map i, `BoxPredictor_i`: both heads as one convolution (their weights concatenated along the output
    channels, box encodings first) with the biases, prepared once (Winograd on `WINOGRAD_MAPS`)."""
    layers = {}
    for i in range(len(ANCHORS_PER_LOCATION)):
        heads = [f"BoxPredictor_{i}/{head}" for head in ("BoxEncodingPredictor", "ClassPredictor")]
        w = np.concatenate([weights[f"{h}/weights"] for h in heads], axis=3)
        biases = np.concatenate([weights[f"{h}/biases"] for h in heads])
        if i in WINOGRAD_MAPS:
            layers[f"BoxPredictor_{i}"] = winograd.prepare(w, biases)
        else:
            layers[f"BoxPredictor_{i}"] = prepare_conv(w, np.ones_like(biases), biases)
    return layers


def conv_bias(feature_map: np.ndarray, layer: Conv | winograd.Winograd) -> np.ndarray:
    """`Conv2D` 3x3 SAME stride 1 then `BiasAdd` of one map: (H, W, C) -> (H, W, A * 4 + A * 91)."""
    if isinstance(layer, winograd.Winograd):
        return winograd.conv3x3_bias(feature_map, layer)
    return conv_bn_act(feature_map, layer, 1, relu6=False)


def without_biases(layer: Conv | winograd.Winograd) -> Conv | winograd.Winograd:
    """The same convolution with zero biases: `conv_bias` then gives the raw sums `Conv2D` (for traces)."""
    if isinstance(layer, winograd.Winograd):
        return layer._replace(bias=np.zeros_like(layer.bias))
    return without_epilogue(layer)


def biases(layer: Conv | winograd.Winograd) -> np.ndarray:
    return layer.bias if isinstance(layer, winograd.Winograd) else layer.shift[:layer.cout]


def _predict_map(feature_map: np.ndarray, layer: Conv | winograd.Winograd, i: int,
                 trace: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """Box encodings (H*W*A, 4) and class logits (H*W*A, 91) of feature map i (H, W, C)."""
    boxes_width = ANCHORS_PER_LOCATION[i] * BOX_CODE_SIZE
    if trace is None:
        y = conv_bias(feature_map, layer)  # (H, W, A * 4 + A * 91)
    else:
        raw = conv_bias(feature_map, without_biases(layer))
        y = raw + biases(layer)
        for head, columns in (("BoxEncodingPredictor", slice(0, boxes_width)),
                              ("ClassPredictor", slice(boxes_width, y.shape[2]))):
            trace[f"BoxPredictor_{i}/{head}/Conv2D"] = raw[None, :, :, columns]
            trace[f"BoxPredictor_{i}/{head}/BiasAdd"] = y[None, :, :, columns]
    boxes = y[:, :, :boxes_width].reshape(-1, BOX_CODE_SIZE)
    logits = y[:, :, boxes_width:].reshape(-1, NUM_CLASSES_WITH_BACKGROUND)
    if trace is not None:
        trace[f"BoxPredictor_{i}/Reshape"] = boxes[None, :, None, :]
        trace[f"BoxPredictor_{i}/Reshape_1"] = logits[None]
    return boxes, logits


def predict(feature_maps: list[np.ndarray], weights: dict,
            trace: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Box encodings (1917, 4) `[ty, tx, th, tw]` and class logits (1917, 91), in TF's concat order.

    weights: `prepare(variables)`, or the variables themselves (then prepared on every call: much slower).
    """
    if len(feature_maps) != 6:
        raise ValueError(f"predict: expected the 6 feature maps of feature_maps(), got {len(feature_maps)}")
    layers = prepare(weights) if "BoxPredictor_0/ClassPredictor/weights" in weights else weights
    per_map = [_predict_map(fm, layers[f"BoxPredictor_{i}"], i, trace) for i, fm in enumerate(feature_maps)]
    boxes = np.concatenate([b for b, _ in per_map])
    logits = np.concatenate([c for _, c in per_map])
    if trace is not None:
        trace["concat"] = boxes[None, :, None, :]
        trace["concat_1"] = logits[None]
    return boxes, logits
