"""ssd_np against the goldens from real TensorFlow and real OpenVINO, in the three layers of exactness, for both
implementations: the reference (`ssd_np.reference`, plain NumPy) and the engine (`ssd_np.model`, numba).

1. Post-processing is exact: fed the reference's own pre-NMS tensors, ssd_np's post-processing (with the NumPy
   kernels and with the compiled ones) gives the same rows in the same order, values within 1e-6 (each format
   against its own reference).
2. The network is faithful: every traced tensor of the layer golden (the reference's trace) is within a
   tolerance derived from TF's own spread (tests/data/golden/tf_spread.json, made by tools/tf_spread.py); the
   engine's feature maps, `concat` and `concat_1` are within twice that of the reference's on every golden.
3. End to end: the same detections, classes and order; scores and boxes within 1e-4 for at least 99 % of
   detections and within 1e-3 for all. Near-ties (a score within 1e-4 of the threshold or of a neighbour, an
   IoU within 1e-4 of 0.6) would have to be listed in NEAR_TIES with their explanation; there are none.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from functools import lru_cache

import numpy as np
import pytest

from golden import GOLDEN, golden_files, golden_id, golden_rgb, load_golden
from ssd_np import model
from ssd_np.engine import network
from ssd_np.engine import postprocess as engine_postprocess
from ssd_np.engine.preprocess import preprocess as engine_preprocess
from ssd_np.reference import anchors, mobilenet_v2, postprocess, preprocess
from ssd_np.reference import model as reference
from ssd_np.weights.standin import standin_weights

FILES = golden_files()
TF_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
NEAR_TIES: dict[str, str] = {}  # golden id -> why its rows may legitimately differ (none so far)
E2E_TIGHT, E2E_LOOSE = 1e-4, 1e-3
# Layer tolerance, relative to each tensor's scale (its largest magnitude): TF against itself with other
# legitimate settings differs by `spread` (float32 summation order); ssd_np sums in yet another order, so it
# may differ from the golden by a similar amount. We allow 3x TF's own spread, and at least 1e-6 of the scale
# (a few float32 ulps) where TF's two settings happen to sum in the same order.
SPREAD_FACTOR, SPREAD_FLOOR = 3.0, 1e-6


@lru_cache(maxsize=None)
def weights(seed: int, profile: str):
    return standin_weights(seed, profile)


@lru_cache(maxsize=None)
def layers(seed: int, profile: str):
    return model.prepare(weights(seed, profile))


@lru_cache(maxsize=None)
def run_tf(path, impl="engine"):
    _, meta = load_golden(path)
    if impl == "engine":
        return model.tf_outputs(golden_rgb(meta), layers(meta["seed"], meta["profile"]))
    return reference.tf_outputs(golden_rgb(meta), weights(meta["seed"], meta["profile"]), reference_traces[path])


reference_traces: dict = defaultdict(dict)  # golden path -> the reference's trace of its image (run_tf fills it)


@lru_cache(maxsize=None)
def bgr300(path):
    _, meta = load_golden(path)
    return preprocess.resize_bilinear_cv2(np.ascontiguousarray(golden_rgb(meta)[:, :, ::-1]))


@lru_cache(maxsize=None)
def run_openvino(path, impl="engine"):
    _, meta = load_golden(path)
    if impl == "engine":
        return model.detection_out(np.ascontiguousarray(bgr300(path)[:, :, ::-1]), layers(meta["seed"], meta["profile"]))
    return reference.detection_out(bgr300(path), weights(meta["seed"], meta["profile"]))


def layer_tolerance(spread: dict, name: str) -> float:
    return SPREAD_FACTOR * max(spread[name]["rel"], SPREAD_FLOOR)


def side_by_side(name, ref, ours, rows=None):
    ref, ours = np.asarray(ref), np.asarray(ours)
    diff = np.abs(ref.astype(np.float64) - ours)
    worst = np.unravel_index(np.argmax(diff), diff.shape) if diff.size else ()
    lines = [f"{name}: largest difference {diff.max() if diff.size else 0:.3e} at {worst}"]
    for i in rows if rows is not None else range(min(len(ref), 12)):
        lines.append(f"  row {i}: reference {np.array2string(ref[i], precision=7)}  ssd_np {np.array2string(ours[i], precision=7)}")
    return "\n".join(lines)


def test_goldens_are_present_and_from_the_references():
    assert len(FILES) >= 34, "expected 17 images x 2 seeds"
    for path in FILES:
        _, meta = load_golden(path)
        assert meta["tensorflow"] == "2.17.1" and meta["openvino"].startswith("2024.6"), path
        assert meta["graph_sha256"] == "9fcf0277380b76a041727b8894c76261e573d4bd6a7362854fe2102d273e5407"
    spread = json.loads((GOLDEN / "tf_spread.json").read_text())
    assert spread["made_by"] == "tools/tf_spread.py"


@pytest.mark.parametrize("path", FILES, ids=golden_id)
def test_inputs_are_the_goldens_inputs(path):
    """The decoded pixels and the OpenCV-style 300x300 BGR input are byte for byte what the references saw."""
    _, meta = load_golden(path)
    rgb = golden_rgb(meta)
    assert hashlib.sha256(rgb.tobytes()).hexdigest() == meta["rgb_sha256"], (
        f"{meta['image']} decodes differently here than where the golden was made (Pillow/libjpeg version?)")
    assert hashlib.sha256(bgr300(path).tobytes()).hexdigest() == meta["bgr300_sha256"], (
        "resize_bilinear_cv2 is not bit-exact with cv2.resize INTER_LINEAR on this image")


# -- 1. post-processing is exact --------------------------------------------------------------------------

OPS = pytest.mark.parametrize("ops", [postprocess.NUMPY_OPS, engine_postprocess.OPS], ids=["reference", "engine"])
IMPLS = pytest.mark.parametrize("impl", ["engine", "reference"])


@pytest.mark.parametrize("path", FILES, ids=golden_id)
@OPS
def test_tf_postprocessing_is_exact(path, ops):
    golden, _ = load_golden(path)
    out = postprocess.tf_outputs(golden["concat"].reshape(1917, 4), golden["concat_1"].reshape(1917, 91),
                                 anchors.ssd_anchors(), {}, ops)
    n = int(golden["num_detections"][0])
    assert int(out["num_detections"][0]) == n
    np.testing.assert_array_equal(out["detection_classes"], golden["detection_classes"])
    for name in ("detection_scores", "detection_boxes"):
        diff = np.abs(out[name] - golden[name]).max()
        assert diff <= 1e-6, side_by_side(name, golden[name][0], out[name][0])


@pytest.mark.parametrize("path", FILES, ids=golden_id)
@OPS
def test_openvino_postprocessing_is_exact(path, ops):
    golden, _ = load_golden(path)
    out = postprocess.detection_out(golden["openvino/box_encodings"], golden["openvino/class_logits"], {}, ops=ops)
    ref = golden["openvino/detection_out"]
    assert out.shape == ref.shape
    np.testing.assert_array_equal(out[0, 0, :, :2], ref[0, 0, :, :2])  # image ids (and -1 marker), labels
    diff = np.abs(out - ref).max()
    assert diff <= 1e-6, side_by_side("detection_out", ref[0, 0], out[0, 0])


# -- 2. the network is faithful -----------------------------------------------------------------------------

def layer_goldens():
    return [p for p in FILES if load_golden(p)[1]["layers"]]


@pytest.mark.parametrize("path", layer_goldens(), ids=golden_id)
def test_every_layer_within_tf_spread(path):
    golden, meta = load_golden(path)
    spread = json.loads((GOLDEN / "tf_spread.json").read_text())["layers"]
    run_tf(path, "reference")
    trace = reference_traces[path]
    report, failures = [], []
    for name, ref in golden.items():
        if name.startswith("openvino/") or name in TF_OUTPUTS:
            continue
        assert name in trace, f"ssd_np does not trace {name}"
        ours = np.asarray(trace[name])
        assert ours.shape == ref.shape, f"{name}: shape {ours.shape}, TF {ref.shape}"
        scale = float(np.abs(ref).max()) or 1.0
        rel = float(np.abs(ours.astype(np.float64) - ref).max()) / scale
        tolerance = layer_tolerance(spread, name)
        report.append(f"{name:78s} ours {rel:.2e}  TF spread {spread[name]['rel']:.2e}  tolerance {tolerance:.2e}")
        if rel > tolerance:
            failures.append(report[-1])
    print("\n".join(report))
    assert not failures, "layers beyond tolerance:\n" + "\n".join(failures)


# -- 3. end to end ------------------------------------------------------------------------------------------

def tf_rows(outputs):
    n = int(outputs["num_detections"][0])
    return (outputs["detection_classes"][0, :n], outputs["detection_scores"][0, :n],
            outputs["detection_boxes"][0, :n])


def openvino_rows(detection_out):
    rows = detection_out[0, 0]
    n = int(np.argmax(rows[:, 0] == -1)) if (rows[:, 0] == -1).any() else len(rows)
    return rows[:n, 1], rows[:n, 2], rows[:n, 3:]


def row_differences(path, fmt, impl="engine"):
    golden, _ = load_golden(path)
    if fmt == "tf":
        ref, ours = tf_rows(golden), tf_rows(run_tf(path, impl))
    else:
        ref, ours = openvino_rows(golden["openvino/detection_out"]), openvino_rows(run_openvino(path, impl))
    assert len(ours[0]) == len(ref[0]) and np.array_equal(ours[0], ref[0]), (
        f"{golden_id(path)} ({fmt}, {impl}): detections differ: {len(ref[0])} in the reference, {len(ours[0])} in ssd_np\n"
        f"  reference classes {ref[0].astype(int).tolist()}\n  ssd_np    classes {ours[0].astype(int).tolist()}\n"
        f"  reference scores {ref[1].tolist()}\n  ssd_np    scores {ours[1].tolist()}")
    return np.maximum(np.abs(ours[1] - ref[1]), np.abs(ours[2] - ref[2]).max(axis=1, initial=0.0))


@IMPLS
@pytest.mark.parametrize("fmt", ["tf", "openvino"])
@pytest.mark.parametrize("path", FILES, ids=golden_id)
def test_end_to_end_same_detections(path, fmt, impl):
    if golden_id(path) in NEAR_TIES:
        pytest.skip(NEAR_TIES[golden_id(path)])
    diff = row_differences(path, fmt, impl)
    assert diff.max(initial=0.0) <= E2E_LOOSE, f"largest score/box difference {diff.max():.3e} > {E2E_LOOSE}"


@IMPLS
@pytest.mark.parametrize("fmt", ["tf", "openvino"])
def test_end_to_end_match_rate(fmt, impl):
    diffs = np.concatenate([row_differences(p, fmt, impl) for p in FILES if golden_id(p) not in NEAR_TIES])
    tight = float((diffs <= E2E_TIGHT).mean())
    print(f"{fmt} ({impl}): {int((diffs <= E2E_TIGHT).sum())}/{len(diffs)} detections within {E2E_TIGHT:g} "
          f"({100 * tight:.2f} %), all within {diffs.max():.2e}")
    assert tight >= 0.99 and diffs.max() <= E2E_LOOSE


@pytest.mark.parametrize("path", FILES, ids=golden_id)
def test_engine_tensors_equal_the_references(path):
    """The engine against the reference on every golden image: feature maps, `concat`, `concat_1` within twice
    the layer tolerance (each is within it of TF), and the same detections in both formats."""
    _, meta = load_golden(path)
    spread = json.loads((GOLDEN / "tf_spread.json").read_text())["layers"]
    run_tf(path, "reference")
    trace = reference_traces[path]
    lay = layers(meta["seed"], meta["profile"])
    maps = network.feature_maps(engine_preprocess(golden_rgb(meta)), lay)
    boxes, logits = network.predict(maps, lay)
    report = []
    for name, ours in [*zip(mobilenet_v2.FEATURE_MAP_NODES, maps), ("concat", boxes), ("concat_1", logits)]:
        ref = trace[name].reshape(ours.shape)
        rel = float(np.abs(ours.astype(np.float64) - ref).max()) / (float(np.abs(ref).max()) or 1.0)
        report.append(f"{name:70s} {rel:.2e} (allowed {2 * layer_tolerance(spread, name):.2e})")
        assert rel <= 2 * layer_tolerance(spread, name), "\n".join(report)
    print("\n".join(report))
    for fmt, run in (("tf", run_tf), ("openvino", run_openvino)):
        ours, ref = run(path, "engine"), run(path, "reference")
        rows = tf_rows if fmt == "tf" else openvino_rows
        (c1, s1, b1), (c2, s2, b2) = rows(ours), rows(ref)
        assert np.array_equal(c1, c2), f"{fmt}: engine classes {c1.tolist()}, reference {c2.tolist()}"
        assert max(np.abs(s1 - s2).max(initial=0), np.abs(b1 - b2).max(initial=0)) <= E2E_LOOSE
