"""Freeze the genuine inference graph with a checkpoint, then convert it to an OpenVINO IR.

Needs the reference venv: ``.venv-ref/bin/python tools/freeze_and_convert.py CKPT_PREFIX OUT_DIR``
(tensorflow-cpu 2.17.1 and openvino-dev 2024.6.0 with the legacy Model Optimizer ``mo``).

1. ``freeze``: import the release's ``model.ckpt.meta`` (the exported inference graph, written by TF 1.5),
   restore ``CKPT_PREFIX`` into it, and fold the variables into constants
   (``convert_variables_to_constants`` with the four outputs ``detection_boxes``, ``detection_scores``,
   ``detection_classes``, ``num_detections``), as the Object Detection API exporter does. Writes
   ``OUT_DIR/frozen_inference_graph.pb``.
2. ``convert``: run Model Optimizer with the Open Model Zoo recipe for ``ssd_mobilenet_v2_coco``
   (``--reverse_input_channels``, input ``image_tensor`` [1,300,300,3], ``ssd_v2_support.json`` from the installed
   openvino-dev, the release ``pipeline.config``) as an FP32 IR (``--compress_to_fp16=False``). Writes
   ``OUT_DIR/ssd_mobilenet_v2_coco.xml`` and ``.bin``.

Importable: the golden tool calls ``freeze(...)`` and ``convert(...)``.
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

from paths import PIPELINE_CONFIG, RELEASE as RELEASE_DIR  # noqa: E402
DEFAULT_META = RELEASE_DIR / "model.ckpt.meta"
DEFAULT_PIPELINE = PIPELINE_CONFIG
OUTPUT_NODES = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
FROZEN_NAME = "frozen_inference_graph.pb"
IR_NAME = "ssd_mobilenet_v2_coco"


def _quiet_tf_environment():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"


def session_config():
    """One thread, Grappler off: the reproducible TF configuration of DESIGN.md."""
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    return config


def resolve_checkpoint(ckpt):
    """A checkpoint prefix, or a directory with a ``checkpoint`` state file -> the checkpoint prefix."""
    import tensorflow as tf

    if Path(ckpt).is_dir():
        latest = tf.train.latest_checkpoint(str(ckpt))
        if latest is None:
            raise FileNotFoundError(f"no checkpoint state file in directory {ckpt}: pass the checkpoint PREFIX "
                                    f"(e.g. {Path(ckpt) / 'model.ckpt'})")
        ckpt = latest
    index = Path(str(ckpt) + ".index")
    if not index.is_file():
        raise FileNotFoundError(f"checkpoint index {index} not found: pass the checkpoint PREFIX "
                                f"(e.g. /path/model.ckpt, next to model.ckpt.index and model.ckpt.data-*)")
    return str(ckpt)


def freeze(ckpt_prefix, out_dir, meta=DEFAULT_META):
    """Restore ``ckpt_prefix`` into the genuine meta graph and write ``out_dir/frozen_inference_graph.pb``.

    ``ckpt_prefix`` may also be a directory holding a ``checkpoint`` state file. Returns the frozen graph's path.
    """
    _quiet_tf_environment()
    import tensorflow as tf

    ckpt_prefix = resolve_checkpoint(ckpt_prefix)
    meta = Path(meta)
    if not meta.is_file():
        raise FileNotFoundError(f"meta graph {meta} not found: pass --meta PATH/model.ckpt.meta")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(meta), clear_devices=True)
        with tf.compat.v1.Session(graph=graph, config=session_config()) as sess:
            saver.restore(sess, str(ckpt_prefix))
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), list(OUTPUT_NODES))
    path = out_dir / FROZEN_NAME
    path.write_bytes(frozen.SerializeToString())
    return path


def mo_transformations_config():
    """``ssd_v2_support.json`` of the installed openvino-dev (Model Optimizer front/tf)."""
    from openvino.tools import mo

    path = Path(mo.__file__).parent / "front" / "tf" / "ssd_v2_support.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install openvino-dev 2024.6.0 (the last release with mo)")
    return path


def convert(frozen_pb, out_dir, pipeline_config=DEFAULT_PIPELINE):
    """Run Model Optimizer (Open Model Zoo recipe, FP32). Returns the path of the IR ``.xml``."""
    frozen_pb = Path(frozen_pb)
    if not frozen_pb.is_file():
        raise FileNotFoundError(f"frozen graph {frozen_pb} not found: run freeze() first")
    if not Path(pipeline_config).is_file():
        raise FileNotFoundError(f"pipeline.config {pipeline_config} not found: pass --pipeline-config PATH")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "openvino.tools.mo",
        f"--input_model={frozen_pb}",
        "--reverse_input_channels",
        "--input_shape=[1,300,300,3]",
        "--input=image_tensor",
        f"--transformations_config={mo_transformations_config()}",
        f"--tensorflow_object_detection_api_pipeline_config={pipeline_config}",
        "--output=detection_classes,detection_scores,detection_boxes,num_detections",
        "--compress_to_fp16=False",
        f"--output_dir={out_dir}",
        f"--model_name={IR_NAME}",
    ]
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    xml = out_dir / f"{IR_NAME}.xml"
    if result.returncode != 0 or not xml.is_file():
        raise RuntimeError(f"Model Optimizer failed (exit {result.returncode}):\n{' '.join(command)}\n"
                           f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return xml


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt_prefix", help="checkpoint prefix (e.g. /tmp/standin/model.ckpt) or its directory")
    parser.add_argument("out_dir", help="directory for frozen_inference_graph.pb and the IR")
    parser.add_argument("--meta", default=str(DEFAULT_META), help="model.ckpt.meta of the release")
    parser.add_argument("--pipeline-config", default=str(DEFAULT_PIPELINE), help="release pipeline.config")
    args = parser.parse_args(argv)
    frozen = freeze(args.ckpt_prefix, args.out_dir, meta=args.meta)
    print(f"frozen graph: {frozen}")
    xml = convert(frozen, args.out_dir, pipeline_config=args.pipeline_config)
    print(f"OpenVINO IR: {xml} (+ .bin)")


if __name__ == "__main__":
    main()
