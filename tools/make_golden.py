"""Make the golden outputs from the real references (reference venv: TF 2.17.1, OpenVINO 2024.6).

    .venv-ref/bin/python tools/make_golden.py [--seeds 1:sparse 2:dense] [--out tests/data/golden]

For each stand-in seed:
1. write the stand-in checkpoint with ssd_np's own writer and restore it into the genuine inference graph
   (`model.ckpt.meta` of the release) with `Saver.restore`: real TensorFlow, reproducible settings (one
   thread, oneDNN off, Grappler off);
2. run every golden image (uint8 RGB, decoded with Pillow) through it and save TF's four outputs, its pre-NMS
   tensors (`concat` box encodings, `concat_1` class logits) and, for the one image in LAYER_GOLDENS, the
   intermediates of `layer_nodes`, all under their graph node names;
3. freeze the same graph with the same checkpoint, convert it with the Open Model Zoo recipe (`mo`, FP32) and run
   OpenVINO (`INFERENCE_PRECISION_HINT=f32`) on the image resized to 300x300 with OpenCV (`cv2.resize`,
   INTER_LINEAR) in BGR order, saving `detection_out` and the DetectionOutput op's own inputs.

Storage (the repo keeps goldens under 20 MB): class logits and confidences are stored sparsely. Every entry
that any post-processing path could read is kept exactly: all logits above SPARSE_FLOOR (sigmoid 0.076, far
below the 0.3 threshold); the rest are stored as the floor itself, which both post-processing paths discard
exactly as they discard the true values (they only compare them with the threshold). Layer dumps keep
`concat_1` dense.

Every golden file records the TF and OpenVINO versions and the sha256 of the graph, the checkpoint files, the
image file, the decoded RGB pixels and the 300x300 BGR input.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

import cv2
import openvino as ov
from freeze_and_convert import convert, freeze
from tf_reference import META_GRAPH, ROOT, ReferenceGraph, tf

from ssd_np.weights.checkpoint import write_checkpoint
from ssd_np.weights.standin import standin_weights

from paths import COCO as _COCO  # noqa: E402

COCO = _COCO / "val2017_dev"
IMAGES = ROOT / "tests" / "data" / "images"
COCO_IMAGES = ["000000122745", "000000223747", "000000037777", "000000404484", "000000343937", "000000117645",
               "000000000802", "000000205401", "000000011813", "000000085329", "000000403385", "000000417285"]
EDGE_IMAGES = ["tiny_37x23.png", "wide_1200x150.png", "gray_320x240.png", "exact_300x300.png", "flat_200x150.png"]
LAYER_GOLDENS = {(1, "000000037777.jpg")}  # (seed, image): the one full layer dump (8.7 MB)
SPARSE_FLOOR = np.float32(-2.5)


def prepare_images() -> None:
    """Copy the COCO golden images and write the edge-case images (once; they are committed)."""
    for stem in COCO_IMAGES:
        if not (IMAGES / f"{stem}.jpg").exists():
            (IMAGES / f"{stem}.jpg").write_bytes((COCO / f"{stem}.jpg").read_bytes())

    def coco(stem: str) -> Image.Image:
        return Image.open(COCO / f"{stem}.jpg").convert("RGB")

    made = {
        "tiny_37x23.png": lambda: coco("000000000139").resize((37, 23), Image.BILINEAR),
        "wide_1200x150.png": lambda: coco("000000005001").crop((0, 200, 640, 280)).resize((1200, 150), Image.BILINEAR),
        "gray_320x240.png": lambda: coco("000000018575").convert("L").resize((320, 240), Image.BILINEAR),
        "exact_300x300.png": lambda: coco("000000025560").crop((170, 90, 470, 390)),
        "flat_200x150.png": lambda: Image.new("RGB", (200, 150), (123, 200, 45)),
    }
    for name, make in made.items():
        if not (IMAGES / name).exists():
            make().save(IMAGES / name)


def golden_image_paths() -> list[Path]:
    return [IMAGES / f"{stem}.jpg" for stem in COCO_IMAGES] + [IMAGES / name for name in EDGE_IMAGES]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def layer_nodes(graph: tf.Graph) -> list[str]:
    """The intermediates a layer golden keeps, in graph order: the preprocessed input, every block's output,
    the six feature maps (`expanded_conv_13/expansion_output`, `Conv_1/Relu6` and the extra layers' ReLU6
    outputs), the box predictors' outputs, the pre-NMS tensors, the anchors, decoded boxes and scores.
    (The expansion and depthwise outputs inside the blocks are left out: at 150x150x96 they alone would
    exceed the repo's size budget; a block's output pins down its whole computation.)"""
    keep = {"Preprocessor/sub", "FeatureExtractor/MobilenetV2/Conv/Relu6",
            "FeatureExtractor/MobilenetV2/expanded_conv_13/expansion_output", "concat", "concat_1",
            "Concatenate/concat", "Postprocessor/Reshape_2", "Postprocessor/convert_scores"}
    return [op.name for op in graph.get_operations()
            if op.name in keep or op.type == "BiasAdd"
            or (op.name.startswith("FeatureExtractor/MobilenetV2/expanded_conv") and op.name.endswith("/output"))
            or (op.name.startswith("FeatureExtractor/MobilenetV2/layer_19_") and op.type == "Relu6")
            or op.name == "FeatureExtractor/MobilenetV2/Conv_1/Relu6"]


def sparse(name: str, array: np.ndarray) -> dict[str, np.ndarray]:
    """`array` without its entries at or below SPARSE_FLOOR, under `__sparse__/<name>/{index,value}`."""
    flat = array.reshape(-1)
    index = np.flatnonzero(flat > SPARSE_FLOOR).astype(np.int32)
    return {f"__sparse__/{name}/index": index, f"__sparse__/{name}/value": flat[index]}


class OpenVINOReference:
    """The converted IR on the CPU plugin in f32, also returning its DetectionOutput's own inputs: the box
    encodings (the IR's `do_reshape_offsets` input, [1,1917,1,4] in x-first order [tx, ty, tw, th]) and the
    class logits (the `do_ExpandDims_conf` input, [1,1917,91], before the IR's own Sigmoid)."""

    def __init__(self, xml: Path):
        core = ov.Core()
        model = core.read_model(str(xml))
        by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        detection = next(op for op in model.get_ordered_ops() if op.get_type_name() == "DetectionOutput")
        outputs = [detection.output(0), by_name["do_reshape_offsets"].input_value(0),
                   by_name["do_ExpandDims_conf"].input_value(0)]
        cut = ov.Model(outputs, model.get_parameters(), "detection_out_with_inputs")
        self.compiled = core.compile_model(cut, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                         "INFERENCE_NUM_THREADS": 1})

    def run(self, bgr300: np.ndarray) -> dict[str, np.ndarray]:
        result = self.compiled([bgr300[None].astype(np.float32)])
        detection, locations, logits = (result[self.compiled.output(i)] for i in range(3))
        return {"openvino/detection_out": detection,
                "openvino/box_encodings": locations.reshape(-1, 4)[:, [1, 0, 3, 2]],  # back to [ty, tx, th, tw]
                "openvino/class_logits": logits.reshape(-1, 91)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["1:sparse", "2:dense"])
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "data" / "golden")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ssd_np_golden"))
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    prepare_images()
    graph_sha = sha256(META_GRAPH.read_bytes())
    for spec in args.seeds:
        seed, profile = int(spec.split(":")[0]), spec.split(":")[1]
        prefix = args.work / f"seed{seed}" / "model.ckpt"
        prefix.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(prefix, {**standin_weights(seed, profile), "global_step": np.int64(0)})
        ckpt_sha = {suffix: sha256(Path(f"{prefix}.{suffix}").read_bytes())
                    for suffix in ("index", "data-00000-of-00001")}
        ref = ReferenceGraph(checkpoint=str(prefix))
        xml = convert(freeze(prefix, prefix.parent), prefix.parent)
        openvino = OpenVINOReference(xml)
        nodes = layer_nodes(ref.graph)
        outputs = ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
        out_dir = args.out / f"seed{seed}"
        out_dir.mkdir(parents=True, exist_ok=True)
        for path in golden_image_paths():
            rgb = np.asarray(Image.open(path).convert("RGB"))
            layers = (seed, path.name) in LAYER_GOLDENS
            fetch = (nodes if layers else ["concat", "concat_1"]) + outputs  # graph order
            values = ref.run(rgb, fetch)
            bgr300 = cv2.resize(np.ascontiguousarray(rgb[:, :, ::-1]), (300, 300), interpolation=cv2.INTER_LINEAR)
            ov_values = openvino.run(bgr300)
            meta = {
                "producer": "tools/make_golden.py", "tensorflow": tf.__version__,
                "tf_settings": "TF_ENABLE_ONEDNN_OPTS=0, 1 intra/inter-op thread, Grappler off",
                "graph": "release model.ckpt.meta", "graph_sha256": graph_sha,
                "checkpoint": f"stand-in seed {seed}, profile {profile}, written by ssd_np.weights.checkpoint",
                "checkpoint_sha256": ckpt_sha, "seed": seed, "profile": profile,
                "image": path.name, "image_sha256": sha256(path.read_bytes()),
                "rgb_sha256": sha256(rgb.tobytes()), "rgb_shape": list(rgb.shape),
                "openvino": ov.get_version(), "openvino_settings": "CPU, INFERENCE_PRECISION_HINT=f32, 1 thread",
                "openvino_ir": "mo, Open Model Zoo recipe, FP32 (tools/freeze_and_convert.py)",
                "bgr300": "cv2.resize(BGR, (300, 300), INTER_LINEAR), opencv " + cv2.__version__,
                "bgr300_sha256": sha256(bgr300.tobytes()),
                "sparse_floor": float(SPARSE_FLOOR), "layers": layers,
            }
            arrays = {name: np.asarray(v) for name, v in values.items()}
            if not layers:
                arrays.update(sparse("concat_1", arrays.pop("concat_1")))
            arrays["openvino/detection_out"] = ov_values["openvino/detection_out"]
            arrays["openvino/box_encodings"] = ov_values["openvino/box_encodings"]
            arrays.update(sparse("openvino/class_logits", ov_values["openvino/class_logits"]))
            arrays["__meta__/json"] = np.array(json.dumps(meta, sort_keys=True))
            np.savez_compressed(out_dir / f"{path.stem}.npz", **arrays)
            print(f"seed {seed} {path.name}: {int(values['num_detections'][0])} detections")


if __name__ == "__main__":
    main()
