"""The trace: every intermediate tensor under the TF graph node name that computes it, in TF's shape.

A trace is a dict that the reference fills as it computes, in execution order (what `ssd-np trace` saves).
`record` puts a tensor in and returns the tensor to compute on from there: with a plain dict, the same tensor.
A trace that substitutes another runtime's tensors (`ssd-np compare --isolate`) hands back the candidate's
tensor instead, so that every node is recomputed from the candidate's own inputs.
"""
from __future__ import annotations

import numpy as np


def record(trace: dict, name: str, value: np.ndarray, tf_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """trace[name] = value (reshaped to TF's `tf_shape`, e.g. with the batch dimension); returns what the trace
    holds there, in `value`'s shape."""
    trace[name] = value if tf_shape is None else value.reshape(tf_shape)
    return np.reshape(trace[name], value.shape)
