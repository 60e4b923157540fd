"""The genuine TF inference graph in a TF session, for the tools (reference venv only: tensorflow-cpu 2.17.1).

    from tf_reference import ReferenceGraph
    ref = ReferenceGraph(weights)                 # weights: TF variable name -> float32 array
    out = ref.run(image_uint8_hwc, ["detection_boxes", "concat_1"])

Reproducible settings, as REFERENCE.md prescribes for goldens: oneDNN off (TF_ENABLE_ONEDNN_OPTS=0 must be set
before TensorFlow is imported: this module sets it), one intra-op and one inter-op thread, Grappler off.
`ReferenceGraph(weights, reproducible=False)` gives TF's default settings instead (optimizer on, default
threads), used to measure TF's own run-to-run spread.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from paths import RELEASE as SHARED_RELEASE  # noqa: E402
META_GRAPH = SHARED_RELEASE / "model.ckpt.meta"


def session_config(reproducible: bool) -> tf.compat.v1.ConfigProto:
    config = tf.compat.v1.ConfigProto()
    if reproducible:
        config.intra_op_parallelism_threads = 1
        config.inter_op_parallelism_threads = 1
        config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


class ReferenceGraph:
    """The genuine `model.ckpt.meta` imported into its own graph, variables set from `weights` or a checkpoint."""

    def __init__(self, weights: dict[str, np.ndarray] | None = None, *, checkpoint: str | None = None,
                 reproducible: bool = True, meta_graph: Path = META_GRAPH):
        self.graph = tf.Graph()
        with self.graph.as_default():
            saver = tf.compat.v1.train.import_meta_graph(str(meta_graph), clear_devices=True)
            self.session = tf.compat.v1.Session(graph=self.graph, config=session_config(reproducible))
            if checkpoint is not None:
                saver.restore(self.session, checkpoint)
            else:
                self._assign(weights)

    def _assign(self, weights: dict[str, np.ndarray]) -> None:
        """Set every VariableV2 through its own Assign op, feeding the value in place of its initializer."""
        for op in self.graph.get_operations():
            if op.type != "VariableV2":
                continue
            assign = self.graph.get_operation_by_name(f"{op.name}/Assign")
            value = np.int64(0) if op.name == "global_step" else weights[op.name]
            self.session.run(assign, feed_dict={assign.inputs[1]: value})

    def run(self, image: np.ndarray, fetches: list[str], feed: dict[str, np.ndarray] | None = None) -> dict:
        """Run one (H, W, 3) uint8 RGB image; return {node name: value} for the named graph nodes."""
        feed_dict = {"image_tensor:0": image[None]}
        feed_dict.update({f"{k}:0": v for k, v in (feed or {}).items()})
        values = self.session.run([f"{name}:0" for name in fetches], feed_dict=feed_dict)
        return dict(zip(fetches, values))
