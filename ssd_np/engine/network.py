"""The network, fast: MobileNetV2 + SSD extra layers + the six box predictors on the engine's kernels.

Twin of `reference.mobilenet_v2.feature_maps` and `reference.box_predictor.predict`, following the same
architecture table. The differences are in how, not what:
- weights are prepared once (`prepare`): packed into GEMM panels, batch norm folded to per-channel (scale,
  shift) computed exactly as the reference does (`reference.mobilenet_v2.batch_norm_params`), and each
  convolution applies its batch norm, ReLU6 or residual add in the same pass (`conv.conv_bn_act`);
- an inverted residual block whose expansion output is at least `FUSE_MIN_EXPANSION_BYTES` runs as one kernel
  (`inverted_residual`): the expansion then never leaves the cache;
- each box predictor runs its two heads as one convolution (their weights concatenated, box encodings first:
  the same sums as two), by Winograd on the 19x19 and 10x10 maps (`WINOGRAD_MAPS`).
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ssd_np.engine import warmup, winograd
from ssd_np.engine.conv import conv_bn_act, prepare_conv
from ssd_np.engine.depthwise import depthwise3x3_bn_act, prepare_depthwise
from ssd_np.engine.inverted_residual import inverted_residual
from ssd_np.reference.box_predictor import ANCHORS_PER_LOCATION, BOX_CODE_SIZE, HEADS, NUM_CLASSES_WITH_BACKGROUND
from ssd_np.reference.mobilenet_v2 import (ARCHITECTURE, FEATURE_MAP_NODES, SCOPE, batch_norm_params, has_residual,
                                           variable_shapes)

# With 1 MB, expanded_conv .. _6 (150x150x32 .. 38x38x192) are fused: backbone 17.5 -> 16.0 ms on one core, the
# same on two (`tools/profile_layers.py --fuse-min-bytes 4194304` / `1048576`); fusing the 19x19 and 10x10
# blocks too gained nothing more (their expansions fit the cache anyway, and bands recompute more of them).
FUSE_MIN_EXPANSION_BYTES = 1 << 20
# 19x19, 10x10: 5.6 and 6.9 ms against 9.6 and 11.8 direct (tools/profile_layers.py --layers). The 5x5 map
# stays direct: 1.35 against 1.43 ms is not worth 8 MB more weights.
WINOGRAD_MAPS = (0, 1)


def prepare(weights: dict[str, np.ndarray], release: bool = False) -> dict:
    """Every layer's kernel inputs, computed once from the TF variables, keyed by layer scope without SCOPE
    (`expanded_conv_3/expand`: a `conv.Conv`; `expanded_conv_3/depthwise`: a `depthwise.Depthwise`) and, per
    map i, `BoxPredictor_i`: the function (H, W, C) -> (H, W, A*4 + A*91) of both heads with their biases.

    release: delete each layer's variables from `weights` once the layer is prepared (`Detector.load` does: the
    file's variables and the packed layers then never both exist whole, ~60 MB less at the peak)."""
    warmup.compile_network()  # with an empty cache: compiled here, on two cores (see engine.warmup)

    def done(prefix: str) -> None:
        if release:
            for key in [key for key in weights if key.startswith(prefix)]:
                del weights[key]

    layers: dict = {}
    for name in variable_shapes():
        scope, leaf = name[len(SCOPE) + 1:].rsplit("/", 1)
        if leaf in ("weights", "depthwise_weights"):
            scale, shift = batch_norm_params(weights, scope, {})
            layers[scope] = (prepare_conv if leaf == "weights" else prepare_depthwise)(weights[name], scale, shift)
            done(f"{SCOPE}/{scope}/")
    for i in range(len(ANCHORS_PER_LOCATION)):
        heads = [f"BoxPredictor_{i}/{head}" for head, _ in HEADS]
        w = np.concatenate([weights[f"{h}/weights"] for h in heads], axis=3)
        biases = np.concatenate([weights[f"{h}/biases"] for h in heads])
        done(f"BoxPredictor_{i}/")
        if i in WINOGRAD_MAPS:
            layers[f"BoxPredictor_{i}"] = partial(winograd.conv3x3_bias, wg=winograd.prepare(w, biases))
        else:
            layers[f"BoxPredictor_{i}"] = partial(conv_bn_act, conv=prepare_conv(w, np.ones_like(biases), biases),
                                                  stride=1, relu6=False)
    return layers


def _expanded_conv(x: np.ndarray, layers: dict, name: str, stride: int, expansion: int, out: int,
                   keep_expansion: bool) -> tuple[np.ndarray | None, np.ndarray]:
    """One inverted residual block: `(expansion_output, output)` (expansion_output None when fused)."""
    add_input = has_residual(stride, x.shape[2], out)
    if x.size * expansion * 4 >= FUSE_MIN_EXPANSION_BYTES and not keep_expansion:
        return None, inverted_residual(x, layers.get(f"{name}/expand"), layers[f"{name}/depthwise"],
                                       layers[f"{name}/project"], stride, add_input)
    expanded = conv_bn_act(x, layers[f"{name}/expand"], 1, relu6=True) if expansion != 1 else x
    y = depthwise3x3_bn_act(expanded, layers[f"{name}/depthwise"], stride)
    return expanded, conv_bn_act(y, layers[f"{name}/project"], 1, relu6=False, residual=x if add_input else None)


def feature_maps(x: np.ndarray, layers: dict) -> list[np.ndarray]:
    """The six (H, W, C) feature maps (`FEATURE_MAP_NODES`) of one preprocessed image x (300, 300, 3) float32."""
    if x.ndim != 3 or x.shape[2] != 3 or x.dtype != np.float32:
        raise ValueError(f"feature_maps: expected a preprocessed float32 (H, W, 3) image, got {x.dtype} {x.shape}")
    maps: list[np.ndarray] = []
    y = np.ascontiguousarray(x)
    for name, kind, stride, expansion, out in ARCHITECTURE:
        if kind == "conv":
            y = conv_bn_act(y, layers[name], stride, relu6=True)
        elif kind == "expanded_conv":
            keep = f"{SCOPE}/{name}/expansion_output" in FEATURE_MAP_NODES
            expanded, y = _expanded_conv(y, layers, name, stride, expansion, out, keep)
            if keep:
                maps.append(expanded)
        else:
            if kind == "separable":
                y = depthwise3x3_bn_act(y, layers[f"{name}_depthwise"], stride)
            y = conv_bn_act(y, layers[name], 1, relu6=True)
            if f"{SCOPE}/{name}/Relu6" in FEATURE_MAP_NODES:
                maps.append(y)
    return maps


def predict(maps: list[np.ndarray], layers: dict) -> tuple[np.ndarray, np.ndarray]:
    """Six (H, W, C) maps -> box encodings (1917, 4) `[ty, tx, th, tw]` and class logits (1917, 91)."""
    if len(maps) != len(ANCHORS_PER_LOCATION):
        raise ValueError(f"predict: expected the 6 feature maps of feature_maps(), got {len(maps)}")
    boxes, logits = [], []
    for i, feature_map in enumerate(maps):
        y = layers[f"BoxPredictor_{i}"](feature_map)  # (H, W, A * 4 + A * 91)
        width = ANCHORS_PER_LOCATION[i] * BOX_CODE_SIZE
        boxes.append(y[:, :, :width].reshape(-1, BOX_CODE_SIZE))
        logits.append(y[:, :, width:].reshape(-1, NUM_CLASSES_WITH_BACKGROUND))
    return np.concatenate(boxes), np.concatenate(logits)
