"""Capture a TensorFlow frozen graph (`.pb`, e.g. the release's `frozen_inference_graph.pb`) with TensorFlow.

The graph's node names are TF's own: every node whose name is a reference node is fetched (its output 0) in one
`Session.run`, one thread, Grappler off (`DESIGN.md`'s reproducible configuration). The input is the graph's
placeholder (`image_tensor`: uint8 NHWC pixels of any size, or `Preprocessor/sub` for a cut graph). TensorFlow is
not an extra of ssd_np (it is large): install it yourself.
"""
from __future__ import annotations

import os
from pathlib import Path

from ssd_np.verify.capture import CaptureError, RuntimeCapture, convention_from_shape, missing_runtime, reference_shapes


def run(model_path: Path, feed, precision: str | None = None) -> RuntimeCapture:
    """Run the frozen graph on `feed(convention)`, fetching every node with a reference counterpart."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as e:
        raise missing_runtime(".pb", "tensorflow") from e
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(Path(model_path).read_bytes())
    except Exception as e:  # protobuf's DecodeError
        raise CaptureError(f"{model_path}: not a TF GraphDef ({type(e).__name__})") from e
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    placeholders = [op for op in graph.get_operations() if op.type == "Placeholder"]
    if len(placeholders) != 1:
        raise CaptureError(f"{model_path}: expected one input placeholder, found {len(placeholders)}")
    image = placeholders[0].outputs[0]
    shape = image.shape.as_list() if image.shape.rank else [None] * 4
    dtype = "uint8" if image.dtype == tf.uint8 else "float32"
    x, convention = feed(convention_from_shape(shape, dtype, image.op.name))
    known = reference_shapes()
    fetches = {op.name: op.outputs[0] for op in graph.get_operations()
               if op.name in known and op.outputs and op is not image.op}
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        values = session.run(fetches, {image: x})
    values[image.op.name] = x
    consumed = {tensor.op.name for op in graph.get_operations() for tensor in op.inputs}
    outputs = [name for name in fetches if name not in consumed]  # the graph's final nodes
    return RuntimeCapture(values, convention, "tensorflow", tf.__version__, outputs=outputs)
