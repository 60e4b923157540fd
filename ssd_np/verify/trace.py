"""`ssd-np trace`: every intermediate tensor of one image, saved under the TF graph node name that computes it.

The trace is the reference's (`ssd_np.reference.model`, plain NumPy): it records each tensor as it computes it,
so the file holds exactly what the readable code computes, layer by layer.

Trace file format (an `.npz`, also written by `tools/make_golden.py` for TF, and writable by any runtime):
- one float32 array per tensor, keyed by the genuine graph node name without `:0`
  (e.g. `FeatureExtractor/MobilenetV2/expanded_conv_3/output`), in TF's shape and layout: NHWC with the
  batch dimension 1, boxes `[ymin, xmin, ymax, xmax]`, classes 1-based as `detection_classes`;
- keys in graph (execution) order: `ssd-np compare` reports the first divergence in the reference's order;
- with `openvino=True` (`ssd-np trace --openvino`, for a 300x300 image: the input OpenVINO's converted model
  takes, so both runtimes see the same pixels) also OpenVINO's `do_ExpandDims_conf/sigmoid` and
  `DetectionOutput` (the IR's `detection_out`, `reference.postprocess.detection_out` of `concat`, `concat_1`);
- `__meta__/json`: a JSON string with the producer, its version, the weights' source and sha256, the image
  file and its sha256.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

import ssd_np
from ssd_np.atomic import atomic_path
from ssd_np.images import file_name_text, load_rgb
from ssd_np.reference import model, postprocess, preprocess
from ssd_np.weights.hdf5 import default_weights_path, load_weights, sha256_file


class TraceInputError(ValueError):
    """An image the requested trace cannot be made of."""


def trace_rgb(weights: dict[str, np.ndarray], rgb: np.ndarray, openvino: bool = False) -> dict[str, np.ndarray]:
    """All traced tensors of one (H, W, 3) uint8 RGB image, in execution order, as float32 arrays with TF's
    shapes; with `openvino` also OpenVINO's `DetectionOutput` (the image must then be 300x300)."""
    trace: dict[str, np.ndarray] = {}
    model.tf_outputs(rgb, weights, trace)
    if openvino:
        postprocess.detection_out(trace["concat"][0, :, 0, :], trace["concat_1"][0], trace)
    return {name: np.asarray(value, dtype=np.float32) for name, value in trace.items()}


def trace_image(weights: dict[str, np.ndarray], image_path: str | os.PathLike,
                openvino: bool = False) -> dict[str, np.ndarray]:
    """`trace_rgb` of an image file; `openvino` needs a 300x300 image (OpenVINO's model input)."""
    rgb = load_rgb(image_path)
    size = (preprocess.INPUT_SIZE, preprocess.INPUT_SIZE)
    if openvino and rgb.shape[:2] != size:
        raise TraceInputError(f"{image_path}: --openvino needs a {size[0]}x{size[1]} image (OpenVINO's model "
                              f"input), got {rgb.shape[1]}x{rgb.shape[0]}: resize it first")
    return trace_rgb(weights, rgb, openvino)


def write_trace(image_path: str | os.PathLike, out: str | os.PathLike,
                weights_path: str | os.PathLike | None = None, openvino: bool = False) -> int:
    """Trace `image_path` and write the trace file `out` atomically. Returns the number of tensors."""
    weights_file = Path(weights_path) if weights_path else default_weights_path()
    weights, attrs = load_weights(weights_file)
    tensors = trace_image(weights, image_path, openvino)
    meta = {
        "producer": "ssd_np reference", "version": ssd_np.__version__,
        "weights_source": str(attrs["source"]), "weights_genuine": bool(attrs["genuine"]),
        "weights_sha256": sha256_file(weights_file),
        "image": file_name_text(image_path),
        "image_sha256": sha256_file(image_path),
    }
    write_trace_file(out, tensors, meta)
    return len(tensors)


def write_trace_file(out: str | os.PathLike, tensors: dict[str, np.ndarray], meta: dict) -> None:
    """Write a trace file atomically: each tensor as a `.npy` member of a zip (what `np.savez_compressed` writes,
    at zlib level 1: as small for float data, several times faster), then `__meta__/json`."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    members = {**tensors, "__meta__/json": np.array(json.dumps(meta, sort_keys=True))}
    with atomic_path(out, suffix=".partial.npz") as tmp, \
            zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in members.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
