"""ssd_np.verify.compare: trace loading, the tolerance rule, layout detection, the report and exit codes.

Traces are synthetic (seeded numpy) with the genuine node names and shapes: no TF, no data files.
"""
import io
import json
import zipfile

import numpy as np
import pytest

from ssd_np.verify.compare import (DEFAULT_ATOL, DEFAULT_RTOL, TraceError, compare_traces, load_trace, main_compare)

FE = "FeatureExtractor/MobilenetV2/"
EXPANDED_3 = FE + "expanded_conv_3/output"


def _relu6(rng, shape):
    return np.clip(2.0 * rng.standard_normal(shape), 0, 6)


def _boxes(rng, n):
    yx0 = rng.uniform(0, 0.6, (n, 2))
    return np.concatenate([yx0, yx0 + rng.uniform(0.05, 0.4, (n, 2))], axis=1)   # (n, 4) [ymin, xmin, ymax, xmax]


def make_reference(seed=0) -> dict[str, np.ndarray]:
    """A trace in graph order, shaped like ssd_mobilenet_v2's, with plausible values."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(-4, 2, (1, 1917, 91))
    n = 7
    boxes = np.zeros((1, 100, 4))
    boxes[0, :n] = _boxes(rng, n)
    scores = np.zeros((1, 100))
    scores[0, :n] = np.sort(rng.uniform(0.31, 1.0, n))[::-1]
    classes = np.ones((1, 100))
    classes[0, :n] = rng.integers(1, 91, n)
    trace = {
        "Preprocessor/sub": rng.uniform(-1, 1, (1, 300, 300, 3)),
        FE + "Conv/Relu6": _relu6(rng, (1, 150, 150, 32)),
        EXPANDED_3: rng.standard_normal((1, 38, 38, 32)),
        FE + "expanded_conv_13/expansion_output": _relu6(rng, (1, 19, 19, 576)),
        FE + "layer_19_2_Conv2d_5_3x3_s2_128/Relu6": _relu6(rng, (1, 1, 1, 128)),
        "Concatenate/concat": _boxes(rng, 1917),
        "BoxPredictor_0/BoxEncodingPredictor/BiasAdd": rng.standard_normal((1, 19, 19, 12)),
        "BoxPredictor_0/ClassPredictor/BiasAdd": rng.normal(-4, 2, (1, 19, 19, 273)),
        "concat": rng.standard_normal((1, 1917, 1, 4)),
        "concat_1": logits,
        "Postprocessor/Reshape_2": _boxes(rng, 1917)[None],
        "Postprocessor/convert_scores": 1 / (1 + np.exp(-logits)),
        "detection_boxes": boxes,
        "detection_scores": scores,
        "detection_classes": classes,
        "num_detections": np.array([n]),
    }
    return {name: value.astype(np.float32) for name, value in trace.items()}


def perturbed(trace, rel, seed=1):
    """Every tensor times (1 + rel * noise): float-noise-like differences."""
    rng = np.random.default_rng(seed)
    return {k: (v * (1 + rel * rng.standard_normal(v.shape))).astype(np.float32) for k, v in trace.items()}


def save(path, trace, meta=None):
    arrays = dict(trace)
    if meta is not None:
        arrays["__meta__/json"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path


def run_cli(ref_path, cand_path, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    code = main_compare(ref_path, cand_path, out=out, err=err, **kwargs)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def reference():
    return make_reference()


def by_name(report):
    return {t.name: t for t in report.results}


# ------------------------------------------------------------------------------ hand-computed cases

def test_statistics_hand_computed():
    r = {"x": np.array([1.0, 2.0, -4.0], np.float32)}
    c = {"x": np.array([1.0, 2.5, -4.0], np.float32)}
    t = compare_traces(r, c, atol=0.1, rtol=0.0).results[0]
    assert (t.max_abs, t.max_rel, t.mismatch, t.status) == (0.5, 0.125, pytest.approx(1 / 3), "fail")


def test_tolerance_is_allclose_style():
    r = {"x": np.array([0.0, 100.0])}
    at_limit = {"x": np.array([0.5, 100.0 + 0.5 + 0.01 * 100.0])}   # |c - r| == atol + rtol * |r|
    beyond = {"x": np.array([0.5, 101.6])}
    assert compare_traces(r, at_limit, atol=0.5, rtol=0.01).passed
    assert not compare_traces(r, beyond, atol=0.5, rtol=0.01).passed


def test_nan_and_inf():
    r = {"x": np.array([np.nan, np.inf, 1.0])}
    assert compare_traces(r, {"x": r["x"].copy()}).passed
    t = compare_traces(r, {"x": np.array([np.nan, np.inf, np.nan])}).results[0]
    assert t.status == "fail" and t.max_abs == np.inf and t.mismatch == pytest.approx(1 / 3)


# ------------------------------------------------------------------------------------- verdicts

def test_identical_passes(tmp_path, reference):
    path = save(tmp_path / "ref.npz", reference)
    code, out, err = run_cli(path, path)
    print(out)
    assert code == 0 and err == ""
    assert f"PASS: all {len(reference)} common tensors within" in out
    assert ">>" not in out


def test_noise_within_tolerance_passes(reference):
    report = compare_traces(reference, perturbed(reference, 1e-6))
    worst = max(t.max_abs for t in report.results)
    print(f"max abs difference {worst:.2e}, tolerance atol={DEFAULT_ATOL} rtol={DEFAULT_RTOL}")
    assert report.passed and report.exit_code == 0 and worst > 0


def test_scaled_layer_is_the_first_failure(tmp_path, reference):
    candidate = dict(reference)
    candidate[EXPANDED_3] = reference[EXPANDED_3] * np.float32(1.5)
    names = list(reference)
    later = names[names.index(EXPANDED_3) + 1:names.index("concat_1") + 1]
    noisy = perturbed(reference, 0.05)
    candidate.update({name: noisy[name] for name in later})          # the error propagates downstream
    code, out, _ = run_cli(save(tmp_path / "r.npz", reference), save(tmp_path / "c.npz", candidate))
    print(out)
    report = compare_traces(reference, candidate)
    first = report.first_failure
    assert code == 1 and first.name == EXPANDED_3 and first.hint == "candidate = 1.5 * reference"
    assert [t.status for t in report.results[:2]] == ["ok", "ok"]
    assert all(by_name(report)[name].status == "fail" for name in later)
    assert f">> divergence starts at #3 {EXPANDED_3}" in out
    assert [line.startswith(">>") for line in out.splitlines()].count(True) == 2   # the row and the line under


def test_order_comes_from_the_reference(reference):
    candidate = dict(reference)
    for name in ("concat", EXPANDED_3):
        candidate[name] = reference[name] + np.float32(1)
    assert compare_traces(reference, candidate).first_failure.name == EXPANDED_3
    backwards = dict(reversed(list(reference.items())))
    assert compare_traces(backwards, candidate).first_failure.name == "concat"


def test_shape_mismatch_fails(reference):
    candidate = dict(reference, concat_1=reference["concat_1"][:, :, 1:])
    t = compare_traces(reference, candidate).first_failure
    assert t.name == "concat_1" and t.status == "shape" and t.candidate_shape == (1, 1917, 90)


# ---------------------------------------------------------------------------------- layout detection

def test_nchw_is_named_and_undone(tmp_path, reference):
    candidate = {k: v.transpose(0, 3, 1, 2) if v.ndim == 4 else v for k, v in reference.items()}
    code, out, _ = run_cli(save(tmp_path / "r.npz", reference), save(tmp_path / "c.npz", candidate))
    print(out)
    report = compare_traces(reference, candidate)
    four_d = [t for t in report.results if len(t.shape) == 4]
    assert all(t.status == "layout" and t.layout == "NCHW" for t in four_d)
    assert report.first_failure is None and code == 1
    assert "NCHW: candidate is NCHW (the reference transposed)" in out
    assert "no numeric divergence once the layout differences are undone" in out


def test_nchw_candidate_with_a_wrong_layer_still_judged(reference):
    candidate = {k: v.transpose(0, 3, 1, 2) if v.ndim == 4 else v for k, v in reference.items()}
    candidate[EXPANDED_3] = candidate[EXPANDED_3] + np.float32(0.01)
    first = compare_traces(reference, candidate).first_failure
    assert (first.name, first.status, first.layout) == (EXPANDED_3, "fail", "NCHW")
    assert first.hint == "candidate = 1 * reference + 0.01"


@pytest.mark.parametrize("name, change, layout", [
    ("detection_boxes", lambda v: v[..., [1, 0, 3, 2]], "xy"),
    ("Postprocessor/Reshape_2", lambda v: v[..., [1, 0, 3, 2]], "xy"),
    ("detection_classes", lambda v: v - 1, "0-based"),
    ("Postprocessor/convert_scores", lambda v: np.log(v / (1 - v)), "logits"),
    ("concat_1", lambda v: 1 / (1 + np.exp(-v)), "scores"),
    ("Preprocessor/sub", lambda v: v[..., ::-1], "BGR"),
    ("Preprocessor/sub", lambda v: v[..., ::-1].transpose(0, 3, 1, 2), "NCHW+BGR"),
    ("Concatenate/concat", lambda v: v[None], "squeezed"),
])
def test_layout_named(reference, name, change, layout):
    candidate = dict(reference)
    candidate[name] = change(reference[name].astype(np.float64)).astype(np.float32)
    report = compare_traces(reference, candidate)
    t = by_name(report)[name]
    assert (t.status, t.layout) == ("layout", layout)
    assert report.layouts == {layout: [name]} and not report.passed
    assert [u.name for u in report.results if u.status != "ok"] == [name]


def test_logits_written_where_scores_belong(reference):
    candidate = dict(reference)
    candidate["Postprocessor/convert_scores"] = reference["concat_1"]
    assert by_name(compare_traces(reference, candidate))["Postprocessor/convert_scores"].layout == "logits"


def test_affine_hint_for_another_input_normalization(reference):
    candidate = dict(reference)
    candidate["Preprocessor/sub"] = (reference["Preprocessor/sub"] + 1) / 2     # x / 255 instead of 2x/255 - 1
    t = compare_traces(reference, candidate).first_failure
    assert t.name == "Preprocessor/sub" and t.hint == "candidate = 0.5 * reference + 0.5"


def test_noise_gets_no_explanation(reference):
    report = compare_traces(reference, perturbed(reference, 0.05))
    failed = [t for t in report.results if t.status != "ok"]
    assert failed and all(t.status == "fail" and not t.layout and not t.hint for t in failed)


# ------------------------------------------------------------------------------ missing tensors

def test_missing_intermediate_is_listed_but_passes(tmp_path, reference):
    candidate = {k: v for k, v in reference.items() if k not in (EXPANDED_3, FE + "Conv/Relu6")}
    candidate["MyRuntime/extra"] = np.zeros(3, np.float32)
    code, out, _ = run_cli(save(tmp_path / "r.npz", reference), save(tmp_path / "c.npz", candidate))
    print(out)
    report = compare_traces(reference, candidate)
    assert report.only_reference == [FE + "Conv/Relu6", EXPANDED_3]
    assert report.only_candidate == ["MyRuntime/extra"] and code == 0
    assert "2 tensor(s) not in the candidate (#2-3)" in out and "only in the candidate (1): MyRuntime/extra" in out


def test_missing_final_output_fails(reference):
    candidate = {k: v for k, v in reference.items() if k != "detection_scores"}
    report = compare_traces(reference, candidate)
    assert report.missing_required == ["detection_scores"] and report.exit_code == 1
    assert "required output(s) missing from the candidate: detection_scores" in report.format_table()


# ----------------------------------------------------------------------------------- file handling

def test_load_trace_meta_and_tensor_names(tmp_path, reference):
    meta = {"producer": "test", "image_sha256": "ab"}
    arrays = {"detection_boxes:0": reference["detection_boxes"], "__meta__/note": np.array("hello")}
    tensors, loaded = load_trace(save(tmp_path / "t.npz", arrays, meta))
    assert list(tensors) == ["detection_boxes"] and tensors["detection_boxes"].dtype == np.float32
    assert loaded == {"producer": "test", "image_sha256": "ab", "note": "hello"}


def test_metadata_hash_difference_is_noted(tmp_path, reference):
    ref = save(tmp_path / "r.npz", reference, {"image_sha256": "aa", "weights": {"sha256": "w"}})
    cand = save(tmp_path / "c.npz", reference, {"image_sha256": "bb", "weights": {"sha256": "w"}})
    code, out, _ = run_cli(ref, cand)
    assert code == 0 and "metadata differs: image_sha256" in out


def _bad_files(tmp_path):
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file at all")
    np.save(tmp_path / "array.npy", np.zeros(3))
    np.savez(tmp_path / "strings.npz", concat=np.array(["a", "b"]))
    np.savez(tmp_path / "meta_only.npz", **{"__meta__/json": np.array("{}")})
    np.savez(tmp_path / "bad_json.npz", concat=np.zeros(1), **{"__meta__/json": np.array("{oops")})
    np.savez(tmp_path / "other.npz", something_else=np.zeros(3))
    with zipfile.ZipFile(tmp_path / "text.zip", "w") as z:
        z.writestr("readme.txt", "hello")
    whole = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    np.savez_compressed(tmp_path / "packed.npz", concat=np.arange(10000.0))
    packed = bytearray((tmp_path / "packed.npz").read_bytes())
    packed[200:240] = bytes(40)                                       # damage the compressed member
    (tmp_path / "corrupt.npz").write_bytes(bytes(packed))
    return {
        "missing.npz": "cannot read as an .npz trace",
        "garbage.npz": "not an .npz trace: not a (complete) zip archive",
        "truncated.npz": "not an .npz trace: not a (complete) zip archive",
        "corrupt.npz": "cannot read as an .npz trace",
        "text.zip": "member 'readme.txt' is not a .npy array",
        "array.npy": "not an .npz trace: a single .npy array",
        "strings.npz": "tensor 'concat' has dtype <U1",
        "meta_only.npz": "no tensors in this trace",
        "bad_json.npz": "__meta__/json is not a JSON string",
        "other.npz": "no tensor name in common",
    }


def test_bad_input_exits_2_with_a_clear_message(tmp_path, reference):
    good = save(tmp_path / "good.npz", reference)
    for name, message in _bad_files(tmp_path).items():
        code, out, err = run_cli(good, tmp_path / name)
        print(err.strip())
        assert code == 2 and out == "" and message in err and err.startswith("ssd-np compare: error:"), name


def test_api_raises_trace_error(tmp_path, reference):
    with pytest.raises(TraceError, match="no tensor name in common"):
        compare_traces(reference, {"detection_boxes:0": reference["detection_boxes"]})
    np.save(tmp_path / "x.npy", np.zeros(2))
    with pytest.raises(TraceError, match="not an .npz trace"):
        load_trace(tmp_path / "x.npy")


def test_negative_tolerance_is_bad_input(tmp_path, reference):
    good = save(tmp_path / "good.npz", reference)
    code, _, err = run_cli(good, good, atol=-1.0)
    assert code == 2 and "tolerances must be >= 0" in err


# ------------------------------------------------------------------------------------------- JSON

def test_json_report_schema(tmp_path, reference):
    candidate = {k: v for k, v in reference.items() if k != "detection_scores"}
    candidate[EXPANDED_3] = reference[EXPANDED_3] * np.float32(1.5)
    candidate["detection_boxes"] = reference["detection_boxes"][..., [1, 0, 3, 2]]
    candidate["concat"] = np.full_like(reference["concat"], np.nan)
    out_json = tmp_path / "report.json"
    code, _, _ = run_cli(save(tmp_path / "r.npz", reference, {"producer": "ref"}),
                         save(tmp_path / "c.npz", candidate), json_out=out_json)
    report = json.loads(out_json.read_text())
    assert code == 1 == report["exit_code"]
    assert set(report) == {"format", "format_version", "reference", "candidate", "atol", "rtol", "rule", "passed",
                           "exit_code", "first_failure", "tensors", "layouts", "only_in_reference",
                           "only_in_candidate", "missing_required", "metadata_differs"}
    assert (report["format"], report["format_version"], report["passed"]) == ("ssd_np-compare", 1, False)
    assert report["reference"]["meta"] == {"producer": "ref"}
    assert (report["atol"], report["rtol"]) == (DEFAULT_ATOL, DEFAULT_RTOL)
    assert report["first_failure"] == EXPANDED_3
    assert report["layouts"] == {"xy": ["detection_boxes"]}
    assert report["only_in_reference"] == report["missing_required"] == ["detection_scores"]
    rows = {t["name"]: t for t in report["tensors"]}
    assert len(rows) == len(reference) - 1
    assert set(rows[EXPANDED_3]) == {"index", "name", "shape", "candidate_shape", "status", "layout", "hint",
                                     "max_abs", "max_rel", "mismatch_fraction"}
    assert rows[EXPANDED_3]["status"] == "fail" and rows[EXPANDED_3]["shape"] == [1, 38, 38, 32]
    assert rows["concat"]["max_abs"] == "inf" and rows["concat"]["mismatch_fraction"] == 1.0
    assert rows["detection_boxes"]["status"] == "layout"
    assert rows["Preprocessor/sub"] == {"index": 1, "name": "Preprocessor/sub", "shape": [1, 300, 300, 3],
                                        "candidate_shape": [1, 300, 300, 3], "status": "ok", "layout": "",
                                        "hint": "", "max_abs": 0.0, "max_rel": 0.0, "mismatch_fraction": 0.0}
