"""`ssd-np compare --isolate` and `--html`: planted faults, built from the reference itself, are named and isolated.

Candidates are traces of the reference (stand-in weights, seed 1) with one fault planted: one layer's weights
scaled by 1.02, the image fed as BGR, a /255 preprocessing. Most candidates keep only what a fused runtime
exposes (`FUSED`: activations, block outputs, heads, final outputs), as a real capture does.
"""
import hashlib
import json

import numpy as np
import pytest

from conftest import DATA, needs_chromium, screenshot
from ssd_np.cli.main import main
from ssd_np.images import load_rgb
from ssd_np.reference import anchors, model, postprocess, preprocess
from ssd_np.reference.tracing import record
from ssd_np.verify.compare import add_detection_verdicts, compare_traces
from ssd_np.verify.diagnosis import isolate
from ssd_np.verify.isolate import SubstitutingTrace
from ssd_np.verify.presets import PRESETS
from ssd_np.weights.standin import standin_weights

IMAGE = DATA / "images" / "000000037777.jpg"
FE = "FeatureExtractor/MobilenetV2/"
SCALED = FE + "expanded_conv_13/expand/weights"
RESIZE = "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3"
BATCHED = (1, preprocess.INPUT_SIZE, preprocess.INPUT_SIZE, 3)


def fused(trace: dict) -> dict:
    """What a runtime with fused layers exposes: preprocessing output, activations, block outputs, heads, outputs."""
    return {k: v for k, v in trace.items()
            if k.endswith(("Relu6", "/output", "/BiasAdd", "Preprocessor/sub")) or k in (
                "concat", "concat_1", "detection_boxes", "detection_scores", "detection_classes", "num_detections")}


def traced(rgb, weights, preprocessing=preprocess.preprocess) -> dict:
    """The reference's trace with another preprocessing function."""
    trace = {}
    box_encodings, class_logits = model.predict(preprocessing(rgb, trace), weights, trace)
    postprocess.tf_outputs(box_encodings, class_logits, anchors.ssd_anchors(), trace)
    return trace


def divided_by_255(rgb, trace):
    resized = record(trace, RESIZE, preprocess.resize_bilinear_tf(rgb), BATCHED)
    return record(trace, "Preprocessor/sub", resized / np.float32(255.0), BATCHED)   # bug: [0, 1], not [-1, 1]


@pytest.fixture(scope="module")
def weights():
    return standin_weights(1, "sparse")


@pytest.fixture(scope="module")
def rgb():
    return load_rgb(IMAGE)


@pytest.fixture(scope="module")
def reference(weights, rgb):
    return traced(rgb, weights)


@pytest.fixture(scope="module")
def scaled_weights(weights):
    return dict(weights, **{SCALED: weights[SCALED] * np.float32(1.02)})


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, weights):
    from ssd_np.weights.hdf5 import write_h5

    path = tmp_path_factory.mktemp("weights") / "standin1.h5"
    write_h5(weights, path, "stand-in, seed 1, profile sparse")
    return path


def isolated(reference, candidate, rgb, weights, preset=None):
    """compare --isolate on in-memory traces (the weights and the image given directly)."""
    report = compare_traces(reference, candidate, preset=preset)
    report.extended, report.judge_detections = True, preset is not None
    add_detection_verdicts(report, reference, candidate)
    isolate(report, reference, candidate, rgb, weights)
    return report


def local_failures(report):
    return [t.name for t in report.local_failures]


# ------------------------------------------------------------------------------------------------ unit

def test_substituting_trace_hands_back_the_candidates_tensor():
    theirs = np.full((1, 2, 2, 3), 7.0, np.float32)
    trace = SubstitutingTrace({"a": theirs})
    ours = np.ones((2, 2, 3), np.float32)
    got = record(trace, "a", ours, (1, 2, 2, 3))
    assert got.shape == (2, 2, 3) and (got == 7).all()              # computed on from the candidate's values
    assert (trace.recomputed["a"] == 1).all() and trace.recomputed["a"].shape == (1, 2, 2, 3)
    assert (record(trace, "b", ours) == 1).all()                     # not in the candidate: the reference's own
    trace.update({"c": ours})                                        # dict.update goes through __setitem__ too
    assert "c" in trace.recomputed


# ------------------------------------------------------------------------------------------- planted faults

def test_exact_candidate_has_no_local_failure(reference, rgb, weights):
    report = isolated(reference, fused(reference), rgb, weights)
    assert report.passed and local_failures(report) == []
    assert len(report.local) == len(fused(reference))
    assert all(t.max_abs == 0 for t in report.local.values())        # the same code on the same inputs: same bits


def test_scaled_layer_is_the_only_local_failure(reference, rgb, weights, scaled_weights):
    candidate = traced(rgb, scaled_weights)
    report = isolated(reference, candidate, rgb, weights)
    failed = [t.name for t in report.compared if t.failed]
    print(f"{len(failed)} tensors fail, first {report.first_failure.name}; local: {local_failures(report)}")
    assert report.first_failure.name == FE + "expanded_conv_13/expand/Conv2D"
    assert report.first_failure.hint == "candidate = 1.02 * reference"
    assert len(failed) > 50 and "concat_1" in failed                 # everything after it diverges ...
    assert local_failures(report) == [FE + "expanded_conv_13/expand/Conv2D"]   # ... but only it is wrong itself
    local = report.local[FE + "expanded_conv_13/expand/Conv2D"]
    assert local.max_rel == pytest.approx(0.02 / 1.02, rel=0.05)


def test_scaled_layer_in_a_fused_runtime(reference, rgb, weights, scaled_weights):
    candidate = fused(traced(rgb, scaled_weights))
    relu6 = FE + "expanded_conv_13/expand/Relu6"
    report = isolated(reference, candidate, rgb, weights)
    assert report.first_failure.name == relu6 and local_failures(report) == [relu6]
    fp16 = PRESETS["fp16"]   # a float16 build drifts by more than 2 % in total, but not locally
    report = isolated(reference, candidate, rgb, weights, fp16)
    assert local_failures(report) == [relu6]
    assert fp16.min_sqnr_db < report.local[relu6].sqnr_db < fp16.local_min_sqnr_db


def test_bgr_input_is_a_local_layout_failure_of_the_preprocessing(reference, rgb, weights):
    candidate = fused(traced(rgb[:, :, ::-1].copy(), weights))
    report = isolated(reference, candidate, rgb, weights)
    assert report.layouts["BGR"] == ["Preprocessor/sub"]
    assert report.first_failure.name == FE + "Conv/Relu6"
    assert local_failures(report) == ["Preprocessor/sub"]
    assert report.local["Preprocessor/sub"].layout == "BGR"


def test_divided_by_255_is_the_only_local_failure(reference, rgb, weights):
    candidate = fused(traced(rgb, weights, divided_by_255))
    report = isolated(reference, candidate, rgb, weights)
    assert report.first_failure.name == "Preprocessor/sub"
    assert local_failures(report) == ["Preprocessor/sub"]
    assert report.local["Preprocessor/sub"].hint == "candidate = 0.5 * reference + 0.5"


def test_openvino_format_candidate(reference, rgb, weights):
    from ssd_np.verify.detections import OWN_OUTPUTS, TF_OUTPUTS, postprocessed

    rows = postprocessed(reference, "openvino")["DetectionOutput"]            # (1, 1, 100, 7)
    candidate = {k: v for k, v in fused(reference).items() if k not in TF_OUTPUTS}
    candidate["DetectionOutput"] = rows
    report = isolated(dict(reference, DetectionOutput=rows), candidate, rgb, weights, PRESETS["fp32"])
    assert report.missing_required == [] and report.passed                  # DetectionOutput is its final output
    assert {v.format: v.source == OWN_OUTPUTS for v in report.detections} == {"tf": False, "openvino": True}
    assert report.local["DetectionOutput"].max_abs == 0 and local_failures(report) == []
    assert [v.format for v in report.local_detections] == ["openvino"] and report.local_detections[0].passed


# --------------------------------------------------------------------------------------------------- CLI

def save(path, trace, meta):
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in trace.items()},
             **{"__meta__/json": np.array(json.dumps(meta))})
    return str(path)


@pytest.fixture(scope="module")
def cli_traces(tmp_path_factory, reference, rgb, scaled_weights, weights_file):
    from ssd_np.weights.hdf5 import sha256_file

    folder = tmp_path_factory.mktemp("traces")
    image_meta = {"image": str(IMAGE), "image_sha256": hashlib.sha256(IMAGE.read_bytes()).hexdigest()}
    ref = save(folder / "ref.npz", reference, {**image_meta, "weights_sha256": sha256_file(weights_file)})
    cand = save(folder / "cand.npz", fused(traced(rgb, scaled_weights)), {"runtime": "test", **image_meta})
    return folder, ref, cand


def test_cli_isolate_json_and_html(cli_traces, weights_file, capsys):
    folder, ref, cand = cli_traces
    json_out, html_out = folder / "report.json", folder / "report.html"
    code = main(["compare", ref, cand, "--isolate", "--weights", str(weights_file), "--json", str(json_out),
                 "--html", str(html_out)])
    out = capsys.readouterr().out
    print(out[-2500:])
    relu6 = FE + "expanded_conv_13/expand/Relu6"
    assert code == 1
    assert "!! local failure #" in out and relu6 in out and "the first divergence" in out
    assert "1 local failure(s)" in out
    report = json.loads(json_out.read_text())
    assert report["local_failures"] == [relu6] and report["first_failure"] == relu6
    assert report["preset"]["name"] == "fp32" and report["isolation"]["image"] == str(IMAGE)
    row = {t["name"]: t for t in report["tensors"]}[relu6]
    assert row["local"]["status"] == "fail" and row["sqnr_db"] < 40 and 0.99 < row["cosine"] < 1
    assert report["detections"][0]["format"] == "tf"
    page = html_out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "http://" not in page and "https://" not in page                # nothing fetched from the network
    assert f"divergence starts: #{row['index']} (local failure)" in page
    assert "data:image/png;base64," in page and relu6 in page


def test_cli_isolate_refuses_another_image(cli_traces, weights_file, capsys):
    folder, ref, cand = cli_traces
    other = DATA / "images" / "000000000802.jpg"
    out_html = folder / "never.html"
    code = main(["compare", ref, cand, "--isolate", "--weights", str(weights_file), "--image", str(other),
                 "--html", str(out_html)])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "is not the image the candidate trace was made from" in err and not out_html.exists()


def test_cli_isolate_refuses_other_weights(cli_traces, tmp_path, capsys):
    folder, ref, cand = cli_traces
    other = tmp_path / "other.h5"
    other.write_bytes(b"not the weights the reference was traced with")
    assert main(["compare", ref, cand, "--isolate", "--weights", str(other)]) == 2
    err = capsys.readouterr().err
    assert "is not the weights file the reference trace was made with" in err and len(err.strip().splitlines()) == 1


@needs_chromium
def test_html_renders_in_headless_chromium(cli_traces, weights_file, tmp_path):
    folder, ref, cand = cli_traces
    html_out = tmp_path / "report.html"
    assert main(["compare", ref, cand, "--isolate", "--weights", str(weights_file), "--html", str(html_out)]) == 1
    shot = tmp_path / "shot.png"
    screenshot(html_out, shot, 2400)
    pixels = np.asarray(load_rgb(shot), np.float64)
    assert pixels.shape[:2] == (2400, 1200)
    assert pixels.std() > 20                                          # a page with content, not a blank screen
