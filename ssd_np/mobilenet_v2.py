"""MobileNetV2 feature extractor of ssd_mobilenet_v2_coco (depth multiplier 1.0, min_depth 16) plus the SSD extra
layers, as the genuine graph builds them under the scope `FeatureExtractor/MobilenetV2/`.

Mirrors `object_detection/models/ssd_mobilenet_v2_feature_extractor.py` (slim `mobilenet_v2.mobilenet_base` with
`final_endpoint='layer_19'`, then `feature_map_generators.multi_resolution_feature_maps`). Every convolution is
followed by the unfused slim batch norm (epsilon 0.001) and, except for the linear bottleneck `project`, by ReLU6.

Layer kinds of `ARCHITECTURE` (input -> output, all convolutions SAME):
- `conv`: 3x3 convolution with stride `stride` (ops `Conv2D`, batch norm, `Relu6`).
- `expanded_conv`: inverted residual block. `expand` 1x1 conv to `expansion * in_channels` + BN + ReLU6 (absent
  when expansion is 1), `depthwise` 3x3 with stride `stride` + BN + ReLU6, `project` 1x1 conv to
  `out_channels` + BN (linear), and `add` of the block input when stride is 1 and channels are unchanged.
- `pointwise`: 1x1 convolution + BN + ReLU6 (`Conv_1` and the extra layers `layer_19_1_*`).
- `separable`: SSD extra layer `layer_19_2_*`: `<name>_depthwise` 3x3 depthwise with stride 2 + BN + ReLU6, then
  `<name>` 1x1 convolution + BN + ReLU6.

Feature maps for the box predictors (`FEATURE_MAP_NODES`): 19x19x576, 10x10x1280, 5x5x512, 3x3x256, 2x2x256,
1x1x128 for a 300x300 input.

`prepare(weights)` turns the variables into per-layer kernel inputs once (packed weights, batch norm scale and
shift); `feature_maps` takes its result (or the variables, preparing them on every call). Without a trace, each
layer is one fused kernel call (convolution + batch norm + ReLU6 or residual add); with a trace, the raw sums and
each element-wise op are recorded separately (the same float32 operations, hence the same results).

Trace names are the graph's node names (all under `FeatureExtractor/MobilenetV2/`), stored NHWC with batch 1:
`<op>/Conv2D` or `<op>/depthwise` (raw conv), `<op>/BatchNorm/batchnorm/mul` and `.../sub` (per-channel scale and
shift), `<op>/BatchNorm/batchnorm/add_1`, `<op>/Relu6` (or `project/Identity`), and the block endpoints
`expanded_conv_N/expansion_output`, `depthwise_output`, `add`, `output`.
"""
from __future__ import annotations

import numpy as np

from ssd_np.kernels import (Conv, Depthwise, batch_norm_act, batch_norm_params, conv_bn_act, depthwise3x3_bn_act,
                            prepare_conv, prepare_depthwise, relu6_ref, without_epilogue, inverted_residual)

SCOPE = "FeatureExtractor/MobilenetV2"

# (layer name, kind, stride, expansion, output channels), in graph order.
ARCHITECTURE = (
    ("Conv", "conv", 2, 1, 32),
    ("expanded_conv", "expanded_conv", 1, 1, 16),
    ("expanded_conv_1", "expanded_conv", 2, 6, 24),
    ("expanded_conv_2", "expanded_conv", 1, 6, 24),
    ("expanded_conv_3", "expanded_conv", 2, 6, 32),
    ("expanded_conv_4", "expanded_conv", 1, 6, 32),
    ("expanded_conv_5", "expanded_conv", 1, 6, 32),
    ("expanded_conv_6", "expanded_conv", 2, 6, 64),
    ("expanded_conv_7", "expanded_conv", 1, 6, 64),
    ("expanded_conv_8", "expanded_conv", 1, 6, 64),
    ("expanded_conv_9", "expanded_conv", 1, 6, 64),
    ("expanded_conv_10", "expanded_conv", 1, 6, 96),
    ("expanded_conv_11", "expanded_conv", 1, 6, 96),
    ("expanded_conv_12", "expanded_conv", 1, 6, 96),
    ("expanded_conv_13", "expanded_conv", 2, 6, 160),
    ("expanded_conv_14", "expanded_conv", 1, 6, 160),
    ("expanded_conv_15", "expanded_conv", 1, 6, 160),
    ("expanded_conv_16", "expanded_conv", 1, 6, 320),
    ("Conv_1", "pointwise", 1, 1, 1280),
    ("layer_19_1_Conv2d_2_1x1_256", "pointwise", 1, 1, 256),
    ("layer_19_2_Conv2d_2_3x3_s2_512", "separable", 2, 1, 512),
    ("layer_19_1_Conv2d_3_1x1_128", "pointwise", 1, 1, 128),
    ("layer_19_2_Conv2d_3_3x3_s2_256", "separable", 2, 1, 256),
    ("layer_19_1_Conv2d_4_1x1_128", "pointwise", 1, 1, 128),
    ("layer_19_2_Conv2d_4_3x3_s2_256", "separable", 2, 1, 256),
    ("layer_19_1_Conv2d_5_1x1_64", "pointwise", 1, 1, 64),
    ("layer_19_2_Conv2d_5_3x3_s2_128", "separable", 2, 1, 128),
)

# Without a trace, a block whose expansion output is at least this big runs as one fused kernel
# (`kernels.inverted_residual`): the expansion then never leaves the cache. With 1 MB, expanded_conv .. _6
# (150x150x32 .. 38x38x192) are fused: backbone 17.5 -> 16.0 ms on one core, the same on two (medians of
# `tools/profile_layers.py --fuse-min-bytes 4194304` / `1048576`); fusing the 19x19 and 10x10 blocks too gained
# nothing more (their expansions fit the cache anyway, and bands recompute more of them).
FUSE_MIN_EXPANSION_BYTES = 1 << 20

# The six tensors fed to BoxPredictor_0..5.
FEATURE_MAP_NODES = (
    f"{SCOPE}/expanded_conv_13/expansion_output",
    f"{SCOPE}/Conv_1/Relu6",
    f"{SCOPE}/layer_19_2_Conv2d_2_3x3_s2_512/Relu6",
    f"{SCOPE}/layer_19_2_Conv2d_3_3x3_s2_256/Relu6",
    f"{SCOPE}/layer_19_2_Conv2d_4_3x3_s2_256/Relu6",
    f"{SCOPE}/layer_19_2_Conv2d_5_3x3_s2_128/Relu6",
)


def has_residual(stride: int, in_channels: int, out_channels: int) -> bool:
    """slim `expanded_conv`: the block input is added when the shapes allow it."""
    return stride == 1 and in_channels == out_channels


def variable_shapes() -> dict[str, tuple[int, ...]]:
    """Name -> shape of every variable the architecture uses (for a 3-channel input), in TF layouts."""
    shapes: dict[str, tuple[int, ...]] = {}

    def bn(scope: str, c: int) -> None:
        for leaf in ("gamma", "beta", "moving_mean", "moving_variance"):
            shapes[f"{SCOPE}/{scope}/BatchNorm/{leaf}"] = (c,)

    c = 3
    for name, kind, _stride, expansion, out in ARCHITECTURE:
        if kind == "conv":
            shapes[f"{SCOPE}/{name}/weights"] = (3, 3, c, out)
            bn(name, out)
        elif kind == "expanded_conv":
            inner = c * expansion
            if expansion != 1:
                shapes[f"{SCOPE}/{name}/expand/weights"] = (1, 1, c, inner)
                bn(f"{name}/expand", inner)
            shapes[f"{SCOPE}/{name}/depthwise/depthwise_weights"] = (3, 3, inner, 1)
            bn(f"{name}/depthwise", inner)
            shapes[f"{SCOPE}/{name}/project/weights"] = (1, 1, inner, out)
            bn(f"{name}/project", out)
        elif kind == "pointwise":
            shapes[f"{SCOPE}/{name}/weights"] = (1, 1, c, out)
            bn(name, out)
        else:  # separable
            shapes[f"{SCOPE}/{name}_depthwise/depthwise_weights"] = (3, 3, c, 1)
            bn(f"{name}_depthwise", c)
            shapes[f"{SCOPE}/{name}/weights"] = (1, 1, c, out)
            bn(name, out)
        c = out
    return shapes


def prepare(weights: dict[str, np.ndarray]) -> dict[str, Conv | Depthwise]:
    """Every layer's kernel inputs, computed once from the variables: the convolutions' packed weights and each
    batch norm's (scale, shift) (`batch_norm_params`). Keyed by layer scope without SCOPE, e.g.
    `expanded_conv_3/expand` (a `Conv`) or `expanded_conv_3/depthwise` (a `Depthwise`)."""
    layers: dict[str, Conv | Depthwise] = {}
    for name in variable_shapes():
        scope, leaf = name[len(SCOPE) + 1:].rsplit("/", 1)
        if leaf in ("weights", "depthwise_weights"):
            bn = f"{SCOPE}/{scope}/BatchNorm"
            scale, shift = batch_norm_params(weights[f"{bn}/gamma"], weights[f"{bn}/beta"],
                                             weights[f"{bn}/moving_mean"], weights[f"{bn}/moving_variance"])
            prepare_layer = prepare_conv if leaf == "weights" else prepare_depthwise
            layers[scope] = prepare_layer(weights[name], scale, shift)
    return layers


def is_variables(weights: dict) -> bool:
    """Whether `weights` holds the TF variables (rather than `prepare`'s output)."""
    return f"{SCOPE}/Conv/weights" in weights


def _record(trace: dict | None, name: str, value: np.ndarray) -> None:
    if trace is not None:
        trace[f"{SCOPE}/{name}"] = value[None] if value.ndim == 3 else value


def _record_bn(trace: dict | None, scope: str, layer: Conv | Depthwise, channels: int) -> None:
    _record(trace, f"{scope}/BatchNorm/batchnorm/mul", layer.scale[:channels])
    _record(trace, f"{scope}/BatchNorm/batchnorm/sub", layer.shift[:channels])


def _conv_bn(x: np.ndarray, layers: dict, scope: str, stride: int, relu6: bool, trace: dict | None,
             residual: np.ndarray | None = None) -> np.ndarray:
    """`scope/Conv2D` (SAME), batch norm, then `scope/Relu6` when relu6 (or the block's `add` of residual)."""
    conv = layers[scope]
    if trace is None:
        return conv_bn_act(x, conv, stride, relu6, residual)
    _record_bn(trace, scope, conv, conv.cout)
    y = conv_bn_act(x, without_epilogue(conv), stride, relu6=False)
    _record(trace, f"{scope}/Conv2D", y.copy())
    batch_norm_act(y, conv.scale[:conv.cout], conv.shift[:conv.cout], relu6=False)
    _record(trace, f"{scope}/BatchNorm/batchnorm/add_1", y)
    if relu6:
        y = relu6_ref(y)
        _record(trace, f"{scope}/Relu6", y)
    if residual is not None:
        _record(trace, f"{scope}/Identity", y)
        y = y + residual
    return y


def _depthwise_bn(x: np.ndarray, layers: dict, scope: str, stride: int, trace: dict | None) -> np.ndarray:
    """`scope/depthwise` 3x3 SAME, batch norm, `scope/Relu6`."""
    dw = layers[scope]
    if trace is None:
        return depthwise3x3_bn_act(x, dw, stride)
    _record_bn(trace, scope, dw, x.shape[2])
    raw = depthwise3x3_bn_act(x, without_epilogue(dw), stride, relu6=False)
    y = batch_norm_act(raw.copy(), dw.scale, dw.shift, relu6=False)
    _record(trace, f"{scope}/depthwise", raw)
    _record(trace, f"{scope}/BatchNorm/batchnorm/add_1", y.copy())
    y = relu6_ref(y)
    _record(trace, f"{scope}/Relu6", y)
    return y


def _expanded_conv(x: np.ndarray, layers: dict, name: str, stride: int, expansion: int, out: int,
                   trace: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """One inverted residual block: returns `(expansion_output, output)` (expansion_output None when fused)."""
    fuse = x.shape[0] * x.shape[1] * x.shape[2] * expansion * 4 >= FUSE_MIN_EXPANSION_BYTES
    if trace is None and fuse and f"{SCOPE}/{name}/expansion_output" not in FEATURE_MAP_NODES:
        y = inverted_residual(x, layers.get(f"{name}/expand"), layers[f"{name}/depthwise"], layers[f"{name}/project"],
                              stride, has_residual(stride, x.shape[2], out))
        return None, y
    expanded = x
    if expansion != 1:
        expanded = _conv_bn(x, layers, f"{name}/expand", 1, True, trace)
        _record(trace, f"{name}/expansion_output", expanded)
    y = _depthwise_bn(expanded, layers, f"{name}/depthwise", stride, trace)
    _record(trace, f"{name}/depthwise_output", y)
    residual = x if has_residual(stride, x.shape[2], out) else None
    y = _conv_bn(y, layers, f"{name}/project", 1, False, trace, residual)
    if residual is not None:
        _record(trace, f"{name}/add", y)
    else:
        _record(trace, f"{name}/project/Identity", y)
    _record(trace, f"{name}/output", y)
    return expanded, y


def feature_maps(x: np.ndarray, weights: dict, trace: dict | None = None) -> list[np.ndarray]:
    """The six (H, W, C) feature maps of one preprocessed image x (300, 300, 3) float32 (see FEATURE_MAP_NODES).

    weights: `prepare(variables)`, or the variables themselves (then prepared on every call: slower).
    """
    if x.ndim != 3 or x.shape[2] != 3 or x.dtype != np.float32:
        raise ValueError(f"feature_maps: expected a preprocessed float32 (H, W, 3) image, got {x.dtype} {x.shape}")
    layers = prepare(weights) if is_variables(weights) else weights
    maps: list[np.ndarray] = []
    y = np.ascontiguousarray(x)
    for name, kind, stride, expansion, out in ARCHITECTURE:
        if kind == "conv":
            y = _conv_bn(y, layers, name, stride, True, trace)
        elif kind == "expanded_conv":
            expanded, y = _expanded_conv(y, layers, name, stride, expansion, out, trace)
            if name == "expanded_conv_13":
                maps.append(expanded)
        elif kind == "pointwise":
            y = _conv_bn(y, layers, name, 1, True, trace)
            if name == "Conv_1":
                maps.append(y)
        else:  # separable
            y = _depthwise_bn(y, layers, f"{name}_depthwise", stride, trace)
            y = _conv_bn(y, layers, name, 1, True, trace)
            maps.append(y)
    return maps
