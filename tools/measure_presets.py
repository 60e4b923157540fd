"""Measure how far reduced-precision builds of the stand-in SSD drift from the reference: the numbers behind
`ssd-np compare --preset fp16|int8` (ssd_np/verify/presets.py).

    SSD_NP_SHARED=/work/shared /work/venvs/ref/bin/python tools/measure_presets.py capture [--work DIR]
    .venv/bin/python tools/measure_presets.py report [--work DIR] [--json OUT.json]

Needs the reference venv for `capture` (tensorflow-cpu 2.17.1, openvino 2024.6); `report` needs only ssd_np.

`capture` builds (cached in --work): stand-in weights (seed 1, profile "sparse"), the frozen release graph and
its FP32 OpenVINO IR (tools/peers.py), then runs every candidate below on the same pixels and saves one trace
per candidate and image (`work/traces/<candidate>/<image>.npz`, TF names and layouts) beside the reference's
(`work/traces/reference/`). Every image is first resized to 300x300 with cv2's INTER_LINEAR (uint8), so the
reference's resize is the identity and every runtime sees identical input pixels.

Candidates:
- `fp16-ir`: the FP32 IR saved again with `openvino.save_model(..., compress_to_fp16=True)` (weights stored as
  float16, the usual "FP16 IR"), run by OpenVINO's CPU plugin at f32 inference precision (this CPU has no FP16
  arithmetic: its OPTIMIZATION_CAPABILITIES list BF16, FP32, INT8).
- `bf16-ov`: the FP32 IR with `INFERENCE_PRECISION_HINT=bf16` (AVX512-BF16 on this CPU): 8 mantissa bits, a
  coarser format than fp16's 11; an upper bound for 16-bit builds.
- `fp16-emulated`: the reference itself with every weight and every traced tensor rounded to float16 (a trace
  that rounds what it records: float16 storage between ops, float32 arithmetic inside each op, as GPU fp16
  kernels do); post-processing included.
- `int8-tflite`: TF's TFLite converter on the frozen graph cut at `Preprocessor/sub` -> `concat`, `concat_1`,
  full-integer quantization (int8 weights and activations, float input/output) with a representative dataset
  of CALIBRATION_IMAGES COCO development images not among the measured ones; run by the TFLite interpreter
  with `experimental_preserve_all_tensors=True`, every int8 tensor dequantized as (q - zero_point) * scale and
  stored under the first `;`-joined TF name it carries that the reference traces. Its detections are ssd_np's
  post-processing of its `concat`, `concat_1` (what `ssd-np compare` does when a candidate stops there).

`report` compares every candidate trace with the reference trace of the same image (`ssd_np.verify`): per
tensor SQNR, cosine and scale-relative error, the worst over images per candidate, and the detection-level
deltas (matched by class and IoU), and prints the table quoted in the docs.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

MEASURED_IMAGES = ROOT / "tests" / "data" / "images"
CALIBRATION_IMAGES = 24
CANDIDATES = ("fp16-ir", "bf16-ov", "fp16-emulated", "int8-tflite")
# Conventions of the Open Model Zoo IR that are not rounding (`ssd-np capture` undoes them): its box predictor
# channels are permuted to [tx, ty, tw, th] for DetectionOutput (those tensors are left out of its numbers), and
# --reverse_input_channels makes its preprocessing BGR (flipped back here; the first convolution's weights are
# flipped instead, so its output is in TF's order). Batch norm is folded into the convolutions, so the IR's
# `Conv2D` / `depthwise` nodes hold other values than TF's: only the tensors after a batch norm are compared.
PERMUTED_IN_IR = ("BoxEncodingPredictor", "concat")
SAME_IN_IR = ("Relu6", "add_1", "/add", "output", "BiasAdd", "concat_1", "DetectionOutput", "Preprocessor/sub")


def _undo_ir_conventions(trace: dict) -> dict:
    kept = {name: value for name, value in trace.items() if name.endswith(SAME_IN_IR)
            and (not any(part in name for part in PERMUTED_IN_IR) or name == "concat_1")}
    return {name: value[..., ::-1] if name.startswith("Preprocessor/") else value for name, value in kept.items()}
PRESET_OF = {"fp16-ir": "fp16", "bf16-ov": "fp16", "fp16-emulated": "fp16", "int8-tflite": "int8"}


def _images() -> list[Path]:
    return sorted(p for p in MEASURED_IMAGES.iterdir() if p.suffix in (".jpg", ".png"))


def _rgb300(path: Path) -> np.ndarray:
    from ssd_np.images import load_rgb
    from ssd_np.reference.preprocess import resize_bilinear_cv2

    return resize_bilinear_cv2(load_rgb(path))  # (300, 300, 3) uint8 RGB


def _save(path: Path, trace: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **{k: np.asarray(v, np.float32) for k, v in trace.items()})


class Float16Trace(dict):
    """A trace that stores every recorded tensor rounded to float16, and hands the rounded tensor back to the
    reference (`tracing.record` returns what the trace holds)."""

    def __setitem__(self, name, value):
        super().__setitem__(name, np.asarray(value).astype(np.float16).astype(np.float32))

    def update(self, other=(), **kwargs):
        for name, value in dict(other, **kwargs).items():
            self[name] = value


def reference_trace(rgb300: np.ndarray, weights: dict, trace: dict | None = None) -> dict:
    """TF's outputs and OpenVINO's DetectionOutput of one 300x300 RGB image (same pixels for both paths)."""
    from ssd_np.reference import model

    trace = {} if trace is None else trace
    model.tf_outputs(rgb300, weights, trace)
    detection = {}
    model.detection_out(rgb300[:, :, ::-1], weights, detection)
    trace["DetectionOutput"] = detection["DetectionOutput"]
    return trace


def _openvino_traces(xml: Path, names: set[str], config: dict, images: dict[str, np.ndarray]) -> dict:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(xml))
    extra = [op.output(0) for op in model.get_ops() if op.get_friendly_name() in names]
    model.add_outputs(extra)
    producers = [output.get_node().input_value(0).get_node() for output in model.outputs]  # Result <- op
    keys = ["DetectionOutput" if op.get_type_name() == "DetectionOutput" else op.get_friendly_name()
            for op in producers]
    compiled = core.compile_model(model, "CPU", config)
    print(f"  {xml.name}: inference precision {compiled.get_property('INFERENCE_PRECISION_HINT')}")
    traces = {}
    for stem, rgb in images.items():
        result = compiled(rgb[None, :, :, ::-1].copy())  # the IR takes BGR uint8 NHWC
        trace = {}
        for name, output in zip(keys, compiled.outputs):
            value = result[output]
            if value.ndim == 4 and name != "DetectionOutput":
                value = value.transpose(0, 2, 3, 1)  # NCHW -> NHWC
            trace[name] = value
        traces[stem] = trace
    return traces


def _tflite_int8(frozen: Path, out: Path, calibration: list[np.ndarray]) -> Path:
    if out.is_file():
        return out
    import tensorflow as tf

    converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        str(frozen), input_arrays=["Preprocessor/sub"], output_arrays=["concat", "concat_1"],
        input_shapes={"Preprocessor/sub": [1, 300, 300, 3]})
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    out.write_bytes(converter.convert())
    return out


def _tflite_traces(model: Path, names: set[str], inputs: dict[str, np.ndarray]) -> dict:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(str(model), experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    details = interpreter.get_tensor_details()
    traces = {}
    for stem, x in inputs.items():
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None])
        interpreter.invoke()
        trace = {}
        for d in details:
            name = next((part for part in d["name"].split(";") if part in names), None)
            if name is None or name in trace:
                continue
            try:
                value = interpreter.get_tensor(d["index"])
            except ValueError:  # tensors freed or not materialized
                continue
            scale, zero_point = d["quantization"]
            if value.dtype in (np.int8, np.uint8, np.int16, np.int32) and scale:
                value = (value.astype(np.float32) - zero_point) * np.float32(scale)
            trace[name] = value
        traces[stem] = trace
    return traces


def capture(work: Path) -> None:
    import peers
    from ssd_np.reference.preprocess import preprocess
    from ssd_np.weights.hdf5 import load_weights

    paths = peers.artifact_paths(work)
    peers.build_weights(paths, 1, "sparse")
    peers.build_frozen_and_ir(paths)
    weights, _ = load_weights(paths["h5"])
    images = {p.stem: _rgb300(p) for p in _images()}
    traces = work / "traces"
    def done(candidate: str) -> bool:   # traces already captured (delete the folder to capture again)
        return all((traces / candidate / f"{stem}.npz").is_file() for stem in images)

    references = {stem: reference_trace(rgb, weights) for stem, rgb in images.items()}
    for stem, trace in references.items() if not done("reference") else ():
        _save(traces / "reference" / f"{stem}.npz", trace)
    names = set(next(iter(references.values())))

    half_weights = {k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()}
    for stem, rgb in images.items() if not done("fp16-emulated") else ():
        _save(traces / "fp16-emulated" / f"{stem}.npz", reference_trace(rgb, half_weights, Float16Trace()))

    import openvino as ov

    fp16_xml = paths["ir"].with_name("ssd_mobilenet_v2_coco_fp16.xml")
    if not fp16_xml.is_file():
        ov.save_model(ov.Core().read_model(str(paths["ir"])), str(fp16_xml), compress_to_fp16=True)
    runs = {"fp16-ir": (fp16_xml, {"INFERENCE_PRECISION_HINT": "f32"}),
            "bf16-ov": (paths["ir"], {"INFERENCE_PRECISION_HINT": "bf16"})}
    for candidate, (xml, config) in runs.items():
        for stem, trace in _openvino_traces(xml, names, config, images).items() if not done(candidate) else ():
            _save(traces / candidate / f"{stem}.npz", trace)

    from paths import COCO

    measured = set(images)
    pool = sorted(p for p in (COCO / "val2017_dev").glob("*.jpg") if p.stem not in measured)
    calibration = [preprocess(_rgb300(p), {}) for p in pool[:CALIBRATION_IMAGES]]
    tflite = _tflite_int8(paths["frozen"], paths["frozen"].with_name("int8.tflite"), calibration)
    print(f"  {tflite.name}: {tflite.stat().st_size / 2**20:.1f} MiB")
    inputs = {stem: trace["Preprocessor/sub"][0] for stem, trace in references.items()}
    for stem, trace in _tflite_traces(tflite, names, inputs).items() if not done("int8-tflite") else ():
        _save(traces / "int8-tflite" / f"{stem}.npz", trace)


FINAL = ("detection_", "num_detections", "DetectionOutput")
LOCAL_IMAGES = 3   # images per candidate whose local errors (--isolate) are measured: one reference run each


def _worst(results, worst: dict) -> None:
    for t in results:
        if t.sqnr_db is None:   # shapes that do not reconcile (e.g. the IR's flattened, permuted concat)
            continue
        w = worst.setdefault(t.name, {"sqnr_db": np.inf, "cosine": 1.0, "max_rel": 0.0})
        w["sqnr_db"] = min(w["sqnr_db"], t.sqnr_db)
        w["cosine"] = min(w["cosine"], t.cosine)
        w["max_rel"] = max(w["max_rel"], t.max_rel)


def _extremes(worst: dict) -> dict:
    layers = {name: w for name, w in worst.items() if not name.startswith(FINAL)}
    if not layers:
        return {}
    at = min(layers, key=lambda name: layers[name]["sqnr_db"])
    return {"tensors": len(layers), "min_sqnr_db": layers[at]["sqnr_db"], "at": at,
            "min_cosine": min(w["cosine"] for w in layers.values()),
            "max_rel": max(w["max_rel"] for w in layers.values())}


def report(work: Path, json_out: Path | None, candidates: tuple[str, ...] = CANDIDATES) -> None:
    from ssd_np.verify.compare import compare_traces, load_trace
    from ssd_np.verify.detections import detection_verdicts
    from ssd_np.verify.diagnosis import isolate
    from ssd_np.verify.presets import PRESETS, Preset

    MEASURE = Preset("measure", atol=1e300, rtol=0.0)   # every tensor "passes": metrics only, no layout search
    from ssd_np.weights.hdf5 import load_weights

    traces = work / "traces"
    weights, _ = load_weights(work / "seed1-sparse" / "weights.h5")
    images = {p.stem: p for p in _images()}
    summary = {}
    for candidate in candidates:
        files = sorted((traces / candidate).glob("*.npz"))
        if not files:
            continue
        total, local = {}, {}
        detections = {"verdicts": 0, "passed": 0, "matched": 0, "unmatched": 0, "extra": 0, "max_score_delta": 0.0, "max_box_delta": 0.0,
                      "min_iou": 1.0}
        for k, path in enumerate(files):
            reference, _ = load_trace(traces / "reference" / path.name)
            cand, _ = load_trace(path)
            if candidate in ("fp16-ir", "bf16-ov"):
                cand = _undo_ir_conventions(cand)
            result = compare_traces(reference, cand, preset=MEASURE)
            _worst(result.compared, total)
            same_layout = {name: value for name, value in cand.items()
                           if name not in ("concat", "concat_1") or value.shape == reference[name].shape}
            for verdict in detection_verdicts(reference, same_layout, PRESETS[PRESET_OF[candidate]]):
                detections["verdicts"] += 1
                detections["passed"] += verdict.passed
                detections["matched"] += len(verdict.matches)
                detections["unmatched"] += len(verdict.unmatched)
                detections["extra"] += len(verdict.extra)
                for m in verdict.matches:
                    detections["max_score_delta"] = max(detections["max_score_delta"], abs(m.score_delta))
                    detections["max_box_delta"] = max(detections["max_box_delta"], m.box_delta)
                    detections["min_iou"] = min(detections["min_iou"], m.iou)
            if k < LOCAL_IMAGES:
                isolate(result, reference, cand, _rgb300(images[path.stem]), weights)
                _worst(result.local.values(), local)
        summary[candidate] = {"images": len(files), "total": _extremes(total), "local": _extremes(local),
                              "local_images": min(LOCAL_IMAGES, len(files)), "detections": detections}
        s = summary[candidate]
        for kind in ("total", "local"):
            e = s[kind]
            if e:
                print(f"{candidate:14s} {kind:5s} {e['tensors']:4d} tensors: min SQNR {e['min_sqnr_db']:6.1f} dB "
                      f"(at {e['at']}), min cosine {e['min_cosine']:.6f}, max rel {e['max_rel']:.3g}")
        d = detections
        print(f"{candidate:14s} detections over {len(files)} images: {d['passed']} of {d['verdicts']} verdicts pass "
              f"the {PRESET_OF[candidate]} preset; {d['matched']} matched, {d['unmatched']} "
              f"unmatched, {d['extra']} extra; max |score delta| {d['max_score_delta']:.3g}, max box delta "
              f"{d['max_box_delta']:.3g}, min IoU {d['min_iou']:.4f}")
    if json_out:
        Path(json_out).write_text(json.dumps(summary, indent=1, default=float) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["capture", "report"])
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "ssd_np_presets")
    parser.add_argument("--json", type=Path, metavar="OUT.json")
    parser.add_argument("--candidates", nargs="+", choices=CANDIDATES, default=CANDIDATES)
    args = parser.parse_args(argv)
    if args.step == "capture":
        capture(args.work)
    else:
        report(args.work, args.json, tuple(args.candidates))
    return 0


if __name__ == "__main__":
    sys.exit(main())
