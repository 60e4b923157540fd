"""Cosine similarity, SQNR, the tolerance presets and the detection-level verdict of `ssd-np compare`.

Synthetic traces (seeded NumPy, the genuine names and shapes of `test_compare.make_reference`); the only model
computation is ssd_np's post-processing of a candidate that stops at `concat`, `concat_1`.
"""
import io
import json

import numpy as np
import pytest

from ssd_np.reference.postprocess import SCORE_THRESHOLD
from ssd_np.verify.compare import compare_traces, cosine, main_compare, sqnr_db
from ssd_np.verify.detections import (OWN_OUTPUTS, detection_verdict, detection_verdicts, from_detection_output,
                                      postprocessed)
from ssd_np.verify.presets import FP32, PRESETS
from test_compare import EXPANDED_3, make_reference, save


@pytest.fixture(scope="module")
def reference():
    return make_reference()


def run(ref_path, cand_path, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    code = main_compare(ref_path, cand_path, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


# -------------------------------------------------------------------------------------------- metrics

def test_metrics_hand_computed():
    r, c = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0])
    assert sqnr_db(r, c) == pytest.approx(10 * np.log10(14.0))             # signal 1 + 4 + 9, noise 1
    assert cosine(r, c) == pytest.approx(17.0 / np.sqrt(14.0 * 21.0))
    assert sqnr_db(r, r) == np.inf and cosine(r, r) == pytest.approx(1.0)
    assert cosine(np.zeros(3), np.zeros(3)) == 1.0 and cosine(np.zeros(3), r) == 0.0
    assert sqnr_db(np.zeros(3), r) == -np.inf
    assert sqnr_db(r, np.array([1.0, 2.0, np.nan])) == -np.inf               # NaN against a number: infinite noise
    assert sqnr_db(r, -r) == pytest.approx(10 * np.log10(14.0 / 56.0)) and cosine(r, -r) == pytest.approx(-1.0)


def test_fp16_rounding_passes_fp16_not_fp32(reference):
    candidate = {k: v.astype(np.float16).astype(np.float32) for k, v in reference.items()}
    assert not compare_traces(reference, candidate).passed                  # float16 rounding: 5e-4 relative
    report = compare_traces(reference, candidate, preset=PRESETS["fp16"])
    worst = min(t.sqnr_db for t in report.compared)
    print(f"float16 rounding: worst SQNR {worst:.1f} dB")
    assert report.passed and 60 < worst < 80                                 # 11 bits: about 6 dB per bit


def test_scaled_layer_is_a_local_failure_in_fp16_not_int8(reference):
    candidate = dict(reference, **{EXPANDED_3: reference[EXPANDED_3] * np.float32(1.02)})
    fp16, int8 = PRESETS["fp16"], PRESETS["int8"]
    assert compare_traces(reference, candidate, preset=fp16).passed       # within a float16 build's total drift
    local = compare_traces(reference, candidate, preset=fp16.local())    # but not one layer's own rounding
    assert local.first_failure.name == EXPANDED_3
    assert local.first_failure.sqnr_db == pytest.approx(20 * np.log10(1 / 0.02), abs=0.1)
    assert compare_traces(reference, candidate, preset=int8.local()).passed   # below int8 noise: by design


def test_outputs_without_new_flags_are_unchanged(tmp_path, reference):
    path = save(tmp_path / "r.npz", reference)
    code, plain, _ = run(path, path)
    assert code == 0 and "cosine" not in plain and "SQNR" not in plain
    code, extended, _ = run(path, path, preset=FP32, json_out=tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert code == 0 and "cosine" in extended and "preset fp32" in extended
    assert report["preset"]["name"] == "fp32" and report["tensors"][0]["sqnr_db"] == "inf"


# ----------------------------------------------------------------------------------- detection verdict

def swap_first_two(trace):
    swapped = dict(trace)
    for name in ("detection_boxes", "detection_scores", "detection_classes"):
        value = trace[name].copy()
        value[0, [0, 1]] = value[0, [1, 0]]
        swapped[name] = value
    return swapped


def test_order_does_not_matter_at_the_detection_level(tmp_path, reference):
    candidate = swap_first_two(reference)
    ref_path, cand_path = save(tmp_path / "r.npz", reference), save(tmp_path / "c.npz", candidate)
    assert run(ref_path, cand_path)[0] == 1                                  # element by element: rows differ
    code, out, _ = run(ref_path, cand_path, preset=FP32)
    print(out[-800:])
    assert code == 0 and "detections (tf format; the candidate's from its own outputs): PASS: 7 of 7" in out
    verdict = detection_verdict(reference, candidate, FP32, "tf")
    assert [(m.reference, m.candidate) for m in verdict.matches[:2]] == [(0, 1), (1, 0)]
    assert all(m.iou == 1.0 and m.score_delta == 0 for m in verdict.matches)


def drop(trace, index):
    """The trace without detection `index` (the rows after it move up)."""
    n = int(trace["num_detections"][0])
    dropped = dict(trace, num_detections=np.array([n - 1], np.float32))
    for name in ("detection_boxes", "detection_scores", "detection_classes"):
        value = np.delete(trace[name], index, axis=1)
        dropped[name] = np.concatenate([value, np.zeros_like(trace[name][:, :1])], axis=1)
    return dropped


def test_a_missing_detection_fails_unless_borderline(reference):
    verdict = detection_verdict(reference, drop(reference, 0), FP32, "tf")   # the best detection
    assert not verdict.passed and verdict.unmatched == [0] and len(verdict.matches) == 6
    borderline = dict(reference, detection_scores=reference["detection_scores"].copy())
    borderline["detection_scores"][0, 6] = float(SCORE_THRESHOLD) + 2e-4    # the last: just over 0.3
    verdict = detection_verdict(borderline, drop(borderline, 6), FP32, "tf")
    assert verdict.passed and verdict.unmatched == [6] and verdict.borderline(verdict.reference, 6)


def test_score_and_box_deltas_against_the_preset(reference):
    candidate = dict(reference, detection_scores=reference["detection_scores"] + np.float32(0.004))
    candidate["detection_scores"][0, 7:] = 0
    assert not detection_verdict(reference, candidate, FP32, "tf").passed
    verdict = detection_verdict(reference, candidate, PRESETS["fp16"], "tf")
    assert verdict.passed and max(abs(m.score_delta) for m in verdict.matches) == pytest.approx(0.004, abs=1e-6)
    moved = dict(reference, detection_boxes=reference["detection_boxes"] + np.float32(0.02))
    verdict = detection_verdict(reference, moved, PRESETS["fp16"], "tf")
    assert not verdict.passed and len(verdict.disagreeing) == 7
    assert all(m.box_delta == pytest.approx(0.02, abs=1e-6) for m in verdict.matches)


def test_detection_output_rows_and_a_candidate_cut_before_nms(reference):
    rng = np.random.default_rng(3)
    logits = rng.normal(-6, 1, (1, 1917, 91)).astype(np.float32)
    logits[0, [100, 900, 1500], [1, 3, 18]] = 3.0                            # three confident anchors
    cut = {"concat": rng.normal(0, 0.5, (1, 1917, 1, 4)).astype(np.float32), "concat_1": logits}
    tf_like = dict(cut, **postprocessed(cut, "tf"))
    rows = postprocessed(cut, "openvino")["DetectionOutput"]
    openvino = from_detection_output(rows)
    assert sorted(openvino.classes.tolist()) == [1, 3, 18]
    verdicts = {v.format: v for v in detection_verdicts(dict(tf_like, DetectionOutput=rows), cut, FP32)}
    assert set(verdicts) == {"tf", "openvino"}
    assert all(v.passed and v.source != OWN_OUTPUTS and len(v.matches) == 3 for v in verdicts.values())
    assert verdicts["openvino"].candidate.boxes.shape == (3, 4)
