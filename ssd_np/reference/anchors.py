"""SSD anchors of ssd_mobilenet_v2_coco, bit-exact with the graph node ``Concatenate/concat``.

Mirrors the Object Detection API's ``anchor_generators/multiple_grid_anchor_generator.py``
(``create_ssd_anchors`` and ``MultipleGridAnchorGenerator._generate``) and
``anchor_generators/grid_anchor_generator.py`` (``tile_anchors``) with the release settings: 6 layers on
feature maps 19, 10, 5, 3, 2, 1 of a 300x300 input, ``min_scale`` 0.2, ``max_scale`` 0.95, aspect ratios
1.0 2.0 0.5 3.0 0.333299994469, ``reduce_boxes_in_lowest_layer``, interpolated scale aspect ratio 1.0, base
anchor size 1.0, default strides and offsets.

Per layer ``i`` (Python float64 from the config's protobuf ``float`` fields, i.e. ``min_scale`` =
float32(0.2) and ``max_scale`` = float32(0.95) widened to float64, then stored as float32 graph constants):

* ``scale_i = min_scale + (max_scale - min_scale) * i / (num_layers - 1)``, and ``scale_6 = 1.0``
  (the float32 rounding of the config values matters: ``sqrt(scale_3 * scale_4)`` is 0.7211102247 in the
  graph, not float32(sqrt(0.65 * 0.8)) = 0.7211102843);
* layer 0 (reduced): ``(0.1, 1.0), (min_scale, 2.0), (min_scale, 0.5)``;
* other layers: ``(scale_i, a)`` for every aspect ratio, then ``(sqrt(scale_i * scale_{i+1}), 1.0)``.

Then in float32 TF ops (node names under ``MultipleGridAnchorGenerator/``), for a ``size x size`` grid:

* ``stride = 1 / size`` (``div``), ``offset = 0.5 * stride`` (``mul``);
* ``height = scale / sqrt(a) * 1.0``, ``width = scale * sqrt(a) * 1.0`` (``Sqrt``, ``div_14``, ``mul_14..16``;
  the 1.0 is the base anchor size times ``min(300, 300) / 300``);
* ``center_y = float(row) * stride + offset``, ``center_x = float(col) * stride + offset``;
* box ``[cy - 0.5*h, cx - 0.5*w, cy + 0.5*h, cx + 0.5*w]`` (``sub``, ``add_2``).

Anchors are ordered row, column, then anchor type; layers are concatenated. Boxes are normalized
``[ymin, xmin, ymax, xmax]`` and the large ones extend beyond [0, 1]. 19*19*3 + (100 + 25 + 9 + 4 + 1)*6 = 1917.

``openvino_priors`` gives the same boxes as OpenVINO's converted model computes them: Model Optimizer
(``ssd_v2_support.json``) turns each layer into a ``PriorBoxClustered`` whose widths and heights are pixel
sizes on the 300x300 input, ``300 * scale * sqrt(a)`` and ``300 * scale / sqrt(a)`` (float64 from the config's
decimal text: Model Optimizer parses pipeline.config itself) written to the IR with 6 significant digits;
OpenVINO (``reference/prior_box_clustered.hpp``, float32) then computes, with ``step = 300 / size`` and
offset 0.5::

    cx = (col + 0.5) * step,  cy = (row + 0.5) * step
    [xmin, ymin, xmax, ymax] = [(cx - w / 2) / 300, (cy - h / 2) / 300, (cx + w / 2) / 300, (cy + h / 2) / 300]

in the same row, column, type order, but ``[xmin, ymin, xmax, ymax]`` and not bit-identical to TF's anchors.

Both tables are constants: ``ssd_anchors()`` and ``openvino_priors()`` compute them once and return the same
read-only array on every call.
"""

import math
from functools import lru_cache

import numpy as np

F32 = np.float32

FEATURE_MAP_SIZES = (19, 10, 5, 3, 2, 1)
MIN_SCALE = 0.2
MAX_SCALE = 0.95
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.333299994469)
INTERPOLATED_SCALE_ASPECT_RATIO = 1.0
NUM_ANCHORS = 1917
IMAGE_SIZE = 300


def _scales_and_ratios(config_as_float32):
    """Per layer, the ``(scale, aspect_ratio)`` pairs in Python float64 (``create_ssd_anchors``).

    ``config_as_float32``: read the config values as protobuf ``float`` fields do (TF), or as decimals (MO).
    """
    def config_value(value):
        return float(F32(value)) if config_as_float32 else value

    min_scale, max_scale = config_value(MIN_SCALE), config_value(MAX_SCALE)
    ratios = [config_value(r) for r in ASPECT_RATIOS]
    num_layers = len(FEATURE_MAP_SIZES)
    scales = [min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)] + [1.0]
    layers = [[(0.1, 1.0), (min_scale, 2.0), (min_scale, 0.5)]]
    for layer in range(1, num_layers):
        pairs = [(scales[layer], ratio) for ratio in ratios]
        pairs.append((math.sqrt(scales[layer] * scales[layer + 1]), INTERPOLATED_SCALE_ASPECT_RATIO))
        layers.append(pairs)
    return layers


def layer_box_specs():
    """Per layer, the (A, 2) float32 ``(scale, aspect_ratio)`` constants of the graph, in TF's order."""
    return [np.array(pairs, dtype=F32) for pairs in _scales_and_ratios(config_as_float32=True)]


def grid_anchors(size, specs):
    """Anchors of one ``size x size`` layer: ``specs`` (A, 2) float32 -> (size*size*A, 4) float32."""
    scales, ratios = specs[:, 0], specs[:, 1]
    stride = F32(1.0) / F32(size)
    offset = F32(0.5) * stride
    ratio_sqrts = np.sqrt(ratios)
    heights = scales / ratio_sqrts * F32(1.0)  # (A,)
    widths = scales * ratio_sqrts * F32(1.0)  # (A,)
    centers = np.arange(size, dtype=np.int32).astype(F32) * stride + offset  # (size,)
    num_types = len(specs)
    center_y = np.broadcast_to(centers[:, None, None], (size, size, num_types)).reshape(-1)
    center_x = np.broadcast_to(centers[None, :, None], (size, size, num_types)).reshape(-1)
    height = np.broadcast_to(heights, (size, size, num_types)).reshape(-1)
    width = np.broadcast_to(widths, (size, size, num_types)).reshape(-1)
    half_h = F32(0.5) * height
    half_w = F32(0.5) * width
    return np.stack([center_y - half_h, center_x - half_w, center_y + half_h, center_x + half_w], axis=1)


def _read_only(array):
    array.flags.writeable = False
    return array


@lru_cache(maxsize=None)
def ssd_anchors():
    """The (1917, 4) float32 ``[ymin, xmin, ymax, xmax]`` anchors of ``Concatenate/concat`` (computed once,
    read-only)."""
    layers = [grid_anchors(size, specs) for size, specs in zip(FEATURE_MAP_SIZES, layer_box_specs())]
    anchors = np.concatenate(layers, axis=0).astype(F32)
    assert anchors.shape == (NUM_ANCHORS, 4)
    return _read_only(anchors)


def openvino_prior_sizes():
    """Per layer, the PriorBoxClustered ``(widths, heights)`` in pixels as the IR stores them (6 digits)."""
    sizes = []
    for pairs in _scales_and_ratios(config_as_float32=False):
        widths = [float(f"{IMAGE_SIZE * scale * math.sqrt(ratio):.6g}") for scale, ratio in pairs]
        heights = [float(f"{IMAGE_SIZE * scale / math.sqrt(ratio):.6g}") for scale, ratio in pairs]
        sizes.append((np.array(widths, F32), np.array(heights, F32)))
    return sizes


def prior_box_clustered(size, widths, heights):
    """OpenVINO ``PriorBoxClustered`` of one ``size x size`` layer -> (size*size*A, 4) ``[xmin, ymin, xmax, ymax]``."""
    image = F32(IMAGE_SIZE)
    step = image / F32(size)
    centers = (np.arange(size).astype(F32) + F32(0.5)) * step  # (size,)
    num_types = len(widths)
    center_y = np.broadcast_to(centers[:, None, None], (size, size, num_types)).reshape(-1)
    center_x = np.broadcast_to(centers[None, :, None], (size, size, num_types)).reshape(-1)
    half_w = np.broadcast_to(widths / F32(2.0), (size, size, num_types)).reshape(-1)
    half_h = np.broadcast_to(heights / F32(2.0), (size, size, num_types)).reshape(-1)
    return np.stack([(center_x - half_w) / image, (center_y - half_h) / image,
                     (center_x + half_w) / image, (center_y + half_h) / image], axis=1)


@lru_cache(maxsize=None)
def openvino_priors():
    """The (1917, 4) float32 ``[xmin, ymin, xmax, ymax]`` priors of the OpenVINO IR (``ConcatPriorBoxesClustered``),
    computed once, read-only."""
    layers = [prior_box_clustered(size, widths, heights)
              for size, (widths, heights) in zip(FEATURE_MAP_SIZES, openvino_prior_sizes())]
    return _read_only(np.concatenate(layers, axis=0).astype(F32))
