"""`ssd-np compare --isolate`: separate each layer's own error from the error it inherited.

When one layer of a candidate runtime is wrong, every tensor after it diverges from the reference too, and a
plain comparison only says where divergence *starts*. Isolation recomputes every reference node from the
candidate's own inputs, in one pass of the reference:

- the reference records each intermediate through `tracing.record(trace, name, value)`, which stores the tensor
  and returns what the trace holds under that name;
- `SubstitutingTrace` keeps the reference's value aside (`recomputed[name]`: the node computed from whatever its
  inputs were) and, when the candidate has a tensor of that name and shape, holds the *candidate's* tensor
  instead, so every later node computes on the candidate's values.

For a candidate tensor N: local error = candidate[N] against recomputed[N] (the reference node fed the
candidate's inputs of N); the rest of candidate[N] - reference[N] is inherited. A single wrong layer in a correct
pipeline is then the only local failure, although everything after it diverges. The local comparison uses the
same preset (and layout detection) as the plain one.

Substituted values are the candidate's with only the shape conventions undone (NCHW, size-1 dimensions:
`compare.in_reference_shape`): a candidate that feeds BGR or xy-ordered data to its next node really computed
on those values. Nodes the candidate lacks keep the reference's value (computed from the candidate's nearest
captured inputs), so a candidate that exposes only block outputs is isolated block by block. Nodes the reference
does not record through `record` (`Postprocessor/Slice`, the final outputs) are recomputed but never read back.
A candidate with OpenVINO's `DetectionOutput` also gets the reference's `detection_out` post-processing of the
(substituted) `concat`, `concat_1`.

Inputs: the weights the reference trace was made with (`--weights`, default as `ssd-np detect`; checked against
the reference's `weights_sha256` when its metadata has one) and the traced image (`--image`, default: the
`image` named in the candidate's, else the reference's metadata; checked against their `image_sha256`).
Preprocessing is recomputed with TF's resize from that image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ssd_np.reference import model, postprocess
from ssd_np.verify.compare import TraceError
from ssd_np.verify.detections import OPENVINO_OUTPUTS
from ssd_np.weights.hdf5 import sha256_file


class IsolationError(TraceError):
    """--isolate cannot run: the image or the weights are missing or not the traced ones."""


class SubstitutingTrace(dict):
    """A trace that hands the candidate's tensors to the reference and keeps the reference's own values in
    `recomputed` (execution order)."""

    def __init__(self, candidate: Mapping[str, np.ndarray]):
        super().__init__()
        self.candidate = candidate                 # name -> tensor in the reference's (TF) shape
        self.recomputed: dict[str, np.ndarray] = {}

    def __setitem__(self, name: str, value: np.ndarray) -> None:
        value = np.asarray(value)
        self.recomputed[name] = value
        theirs = self.candidate.get(name)
        if theirs is not None and theirs.shape == value.shape:
            value = theirs.astype(value.dtype)
        super().__setitem__(name, value)

    def update(self, other=(), **kwargs) -> None:   # dict.update would bypass __setitem__
        for name, value in dict(other, **kwargs).items():
            self[name] = value


def recompute(rgb: np.ndarray, weights: dict, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every reference node of the (H, W, 3) uint8 RGB image recomputed from the candidate's `inputs` (tensors in
    the reference's shapes, float32), in execution order."""
    trace = SubstitutingTrace(inputs)
    model.tf_outputs(rgb, weights, trace)
    if OPENVINO_OUTPUTS[0] in inputs:
        box_encodings = np.reshape(trace["concat"], (-1, 4))  # (1917, 4): the candidate's, substituted
        postprocess.detection_out(box_encodings, np.reshape(trace["concat_1"], (len(box_encodings), -1)), trace)
    return trace.recomputed


# ------------------------------------------------------------------------------------------ inputs

def _meta_image(meta: dict, trace_path: Path) -> Path | None:
    name = meta.get("image")
    if not name:
        return None
    path = Path(name)
    return path if path.is_absolute() or path.exists() else trace_path.parent / path


def traced_image(image: str | Path | None, traces: list[tuple[str, Path, dict]]) -> Path:
    """The image the traces were made from: `image`, else the first `image` in the traces' metadata
    (`traces`: (label, path, metadata)); checked against every `image_sha256` in the metadata."""
    from_meta = [(label, _meta_image(meta, path)) for label, path, meta in traces if _meta_image(meta, path)]
    if image is None and not from_meta:
        raise IsolationError("--isolate needs the traced image and neither trace's metadata names one: pass --image FILE")
    path, origin = (Path(image), "--image") if image is not None else (from_meta[0][1], f"{from_meta[0][0]}'s metadata")
    if not path.is_file():
        raise IsolationError(f"--isolate: image {path} (from the {origin}) not found: pass --image FILE")
    digest = sha256_file(path)
    for label, _, meta in traces:
        expected = meta.get("image_sha256")
        if expected and expected != digest:
            raise IsolationError(f"--isolate: {path} is not the image the {label} trace was made from (sha256 "
                             f"{digest[:12]}..., the trace says {str(expected)[:12]}...): pass --image with that image")
    return path


def check_weights(weights_path: Path, reference_meta: dict) -> None:
    """The weights file must be the one the reference trace was made with, when its metadata says which."""
    expected = reference_meta.get("weights_sha256")
    if expected and sha256_file(weights_path) != expected:
        raise IsolationError(f"--isolate: {weights_path} is not the weights file the reference trace was made with "
                         f"(its sha256 differs from the trace's weights_sha256 {str(expected)[:12]}...): pass "
                         f"--weights with that file")
