"""The feature extractor: MobileNetV2 (depth multiplier 1.0) plus the SSD extra layers, under the graph scope
`FeatureExtractor/MobilenetV2/`.

Mirrors `object_detection/models/ssd_mobilenet_v2_feature_extractor.py`: slim's `mobilenet_v2.mobilenet_base`
up to `layer_19`, then `feature_map_generators.multi_resolution_feature_maps`. Every convolution is followed by
slim's unfused batch norm (epsilon 0.001) and, except for the linear bottleneck `project`, by ReLU6.

Layer kinds of `ARCHITECTURE` (all convolutions SAME):
- `conv`: 3x3 convolution, batch norm, ReLU6.
- `expanded_conv`: the inverted residual block (MobileNetV2 paper, fig. 3b): `expand` 1x1 conv to
  `expansion * in_channels` + BN + ReLU6 (absent when expansion is 1), `depthwise` 3x3 + BN + ReLU6, `project`
  1x1 conv to `out_channels` + BN (linear), and `add` of the block input when the shapes allow it.
- `pointwise`: 1x1 convolution + BN + ReLU6 (`Conv_1` and the extra layers `layer_19_1_*`).
- `separable`: SSD extra layer `layer_19_2_*`: 3x3 depthwise stride 2 + BN + ReLU6 (`<name>_depthwise`), then
  1x1 convolution + BN + ReLU6 (`<name>`).
For a 300x300 input the six maps fed to the box predictors (`FEATURE_MAP_NODES`) are 19x19x576, 10x10x1280,
5x5x512, 3x3x256, 2x2x256, 1x1x128.
"""
from __future__ import annotations

import numpy as np

from ssd_np.reference import tracing

SCOPE = "FeatureExtractor/MobilenetV2"
BN_EPSILON = np.float32(0.001)  # `BatchNorm/batchnorm/add/y`
RELU6_MAX = np.float32(6.0)

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
    """slim `expanded_conv`: the block input is added when stride is 1 and the channels are unchanged."""
    return stride == 1 and in_channels == out_channels


def variable_shapes() -> dict[str, tuple[int, ...]]:
    """Name -> shape of every variable the architecture uses (for a 3-channel input), in TF layouts."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(scope: str, shape: tuple[int, ...], leaf: str = "weights") -> None:
        shapes[f"{SCOPE}/{scope}/{leaf}"] = shape
        for bn in ("gamma", "beta", "moving_mean", "moving_variance"):
            shapes[f"{SCOPE}/{scope}/BatchNorm/{bn}"] = (shape[2] if leaf == "depthwise_weights" else shape[3],)

    c = 3
    for name, kind, _stride, expansion, out in ARCHITECTURE:
        if kind == "conv":
            conv(name, (3, 3, c, out))
        elif kind == "expanded_conv":
            if expansion != 1:
                conv(f"{name}/expand", (1, 1, c, c * expansion))
            conv(f"{name}/depthwise", (3, 3, c * expansion, 1), "depthwise_weights")
            conv(f"{name}/project", (1, 1, c * expansion, out))
        elif kind == "pointwise":
            conv(name, (1, 1, c, out))
        else:  # separable
            conv(f"{name}_depthwise", (3, 3, c, 1), "depthwise_weights")
            conv(name, (1, 1, c, out))
        c = out
    return shapes


# --- the ops ----------------------------------------------------------------------------------------------

def same_padding(in_size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF SAME padding along one axis: `(out_size, pad_before)` with out = ceil(in / stride),
    pad_total = max((out - 1) * stride + kernel - in, 0), pad_before = pad_total // 2 (the rest after: for
    stride 2 on an even size the extra zeros are at the bottom/right)."""
    out_size = -(-in_size // stride)
    pad_total = max((out_size - 1) * stride + kernel - in_size, 0)
    return out_size, pad_total // 2


def windows(x: np.ndarray, kernel: int, stride: int) -> list[np.ndarray]:
    """The kernel x kernel shifted views of the SAME-padded x (H, W, C), in tap order ky * kernel + kx:
    windows[t][oy, ox] = x[oy * stride + ky - pad_top, ox * stride + kx - pad_left] (zero outside x)."""
    ho, top = same_padding(x.shape[0], kernel, stride)
    wo, left = same_padding(x.shape[1], kernel, stride)
    bottom = (ho - 1) * stride + kernel - x.shape[0] - top
    right = (wo - 1) * stride + kernel - x.shape[1] - left
    xp = np.pad(x, ((top, max(bottom, 0)), (left, max(right, 0)), (0, 0)))
    return [xp[ky:ky + (ho - 1) * stride + 1:stride, kx:kx + (wo - 1) * stride + 1:stride]
            for ky in range(kernel) for kx in range(kernel)]


def conv2d(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """`Conv2D` SAME: x (H, W, cin), w (kh, kw, cin, cout) -> (ceil(H/s), ceil(W/s), cout),
    out[oy, ox, n] = sum_{ky, kx, c} x[oy*s + ky - pad_top, ox*s + kx - pad_left, c] * w[ky, kx, c, n].
    As one matrix product of the image patches (im2col) with the weights: float32, summed in BLAS's order
    (TF sums in another order: the results differ in the last bits, well within TF's own spread)."""
    kh, kw, cin, cout = w.shape
    patches = np.stack(windows(x, kh, stride), axis=2)  # (ho, wo, kh*kw, cin)
    ho, wo = patches.shape[:2]
    return (patches.reshape(ho * wo, kh * kw * cin) @ w.reshape(kh * kw * cin, cout)).reshape(ho, wo, cout)


def depthwise_conv2d(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """`DepthwiseConv2dNative` 3x3 SAME, channel multiplier 1: x (H, W, c), w (3, 3, c, 1) ->
    out[oy, ox, c] = sum_t window_t[oy, ox, c] * w[t, c], the nine taps added in order t = ky*3 + kx from 0,
    each product and sum rounded to float32 (TF's order: bit-exact with TF for the same input)."""
    out = np.float32(0.0)
    for t, window in enumerate(windows(x, 3, stride)):
        out = out + window * w[t // 3, t % 3, :, 0]
    return out


def batch_norm_params(weights: dict, scope: str, trace: dict) -> tuple[np.ndarray, np.ndarray]:
    """slim's unfused batch norm (`<scope>/BatchNorm/batchnorm/`) folded to a per-channel (scale, shift):
    `add` = variance + 0.001, `Rsqrt`, `mul` = rsqrt * gamma, `mul_2` = mean * mul, `sub` = beta - mul_2.
    Rsqrt is computed as 1 / sqrt: TF's AVX packets use an approximation up to 2 ulp away in some channels."""
    v = {leaf: weights[f"{SCOPE}/{scope}/BatchNorm/{leaf}"] for leaf in ("gamma", "beta", "moving_mean",
                                                                         "moving_variance")}
    scale = np.float32(1.0) / np.sqrt(v["moving_variance"] + BN_EPSILON) * v["gamma"]
    shift = v["beta"] - v["moving_mean"] * scale
    return (record(trace, f"{scope}/BatchNorm/batchnorm/mul", scale),
            record(trace, f"{scope}/BatchNorm/batchnorm/sub", shift))


def relu6(x: np.ndarray) -> np.ndarray:
    """`Relu6`: min(max(x, 0), 6)."""
    return np.minimum(np.maximum(x, np.float32(0.0)), RELU6_MAX)


def record(trace: dict, name: str, value: np.ndarray) -> np.ndarray:
    """`tracing.record` of the node `SCOPE/name` (maps NHWC with the batch dimension)."""
    return tracing.record(trace, f"{SCOPE}/{name}", value, (1, *value.shape) if value.ndim == 3 else None)


# --- the layers -------------------------------------------------------------------------------------------

def conv_bn(x: np.ndarray, weights: dict, scope: str, stride: int, trace: dict, depthwise: bool = False,
            activation: bool = True) -> np.ndarray:
    """`<scope>/Conv2D` (or `<scope>/depthwise`), `BatchNorm/batchnorm/add_1` = y * scale + shift (two
    roundings), then `<scope>/Relu6` when `activation`."""
    scale, shift = batch_norm_params(weights, scope, trace)
    if depthwise:
        y = record(trace, f"{scope}/depthwise", depthwise_conv2d(x, weights[f"{SCOPE}/{scope}/depthwise_weights"],
                                                                 stride))
    else:
        y = record(trace, f"{scope}/Conv2D", conv2d(x, weights[f"{SCOPE}/{scope}/weights"], stride))
    y = record(trace, f"{scope}/BatchNorm/batchnorm/add_1", y * scale + shift)
    return record(trace, f"{scope}/Relu6", relu6(y)) if activation else y


def expanded_conv(x: np.ndarray, weights: dict, name: str, stride: int, expansion: int, out: int,
                  trace: dict) -> np.ndarray:
    """One inverted residual block: x (H, W, cin) -> (ceil(H/s), ceil(W/s), out)."""
    y = x
    if expansion != 1:
        y = record(trace, f"{name}/expansion_output", conv_bn(x, weights, f"{name}/expand", 1, trace))
    y = record(trace, f"{name}/depthwise_output", conv_bn(y, weights, f"{name}/depthwise", stride, trace, True))
    y = record(trace, f"{name}/project/Identity",
               conv_bn(y, weights, f"{name}/project", 1, trace, activation=False))  # the linear bottleneck
    if has_residual(stride, x.shape[2], out):
        y = record(trace, f"{name}/add", y + x)
    return record(trace, f"{name}/output", y)


def feature_maps(x: np.ndarray, weights: dict, trace: dict) -> list[np.ndarray]:
    """The six (H, W, C) feature maps (`FEATURE_MAP_NODES`) of one preprocessed image x (300, 300, 3)."""
    y = x
    for name, kind, stride, expansion, out in ARCHITECTURE:
        if kind == "conv":
            y = conv_bn(y, weights, name, stride, trace)
        elif kind == "expanded_conv":
            y = expanded_conv(y, weights, name, stride, expansion, out, trace)
        elif kind == "pointwise":
            y = conv_bn(y, weights, name, 1, trace)
        else:  # separable
            y = conv_bn(y, weights, f"{name}_depthwise", stride, trace, depthwise=True)
            y = conv_bn(y, weights, name, 1, trace)
    return [trace[node][0] for node in FEATURE_MAP_NODES]
