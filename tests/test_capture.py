"""`ssd-np capture`: a converted model's tensors under TF names, compared with the reference.

The candidates are built here from stand-in weights (seed 1): an ONNX model mirroring tf2onnx's names and NCHW
layout (`candidate_models.build`), and OpenVINO IRs converted from it with `openvino.convert_model`. An exact
model compares clean; planted faults (one layer's weights x 1.02, the image fed as BGR, a /255 preprocessing)
are caught at the right tensor. Tests needing onnx/onnxruntime/openvino skip when those are not installed.
The candidates stop at `concat`/`concat_1` (no post-processing), so the comparisons here do not require TF's
final outputs (`required=()`).
"""
import io
import json

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ssd_np.cli.main import main
from ssd_np.verify.capture import (Convention, capture_tensors, coverage_line, model_input,
                                   reference_shapes, tf_node, to_trace)
from ssd_np.verify.compare import compare_traces, load_trace, main_compare
from ssd_np.verify.trace import TraceInputError, trace_image, write_trace_file
from ssd_np.weights.standin import standin_weights

FE = "FeatureExtractor/MobilenetV2/"
SCALED_LAYER = "expanded_conv_3/project"


@pytest.fixture(scope="module")
def weights():
    return standin_weights(1)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="module")
def image(work):
    """A smooth 300x300 RGB image (the models' input size: the resize is the identity)."""
    rng = np.random.default_rng(7)
    small = Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    path = work / "image.png"
    small.resize((300, 300), Image.BILINEAR).save(path)
    return path


@pytest.fixture(scope="module")
def reference(weights, image):
    return trace_image(weights, image, openvino=True)


@pytest.fixture(scope="module")
def onnx_models(weights, work):
    """name -> path of the candidate ONNX models: exact and with planted faults."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import onnx

    from candidate_models import build

    variants = {"exact": {}, "scaled": {"scale_layer": SCALED_LAYER}, "div255": {"preprocess_scale": 1 / 255},
                "bgr": {"bgr_input": True}}
    paths = {}
    for name, faults in variants.items():
        paths[name] = work / f"{name}.onnx"
        onnx.save(build(weights, **faults), paths[name])
    return paths


def _capture(model, image, work, name, **kwargs):
    """Capture in memory (writing the compressed file takes seconds: `test_cli_capture_and_compare` does)."""
    tensors, meta = capture_tensors(model, image, **kwargs)
    return tensors, meta, coverage_line(tensors)


def _first_failure(reference, candidate):
    report = compare_traces(reference, candidate, required=())
    return report, report.first_failure


# --------------------------------------------------------------------------------------------- names

def test_tf_node_strips_converter_suffixes_and_splits_fused_names():
    known = reference_shapes()
    assert tf_node(FE + "Conv/Relu6:0", known) == FE + "Conv/Relu6"
    assert tf_node("BoxPredictor_0/ClassPredictor/BiasAdd__768:0", known) == "BoxPredictor_0/ClassPredictor/BiasAdd"
    fused = (f"{FE}expanded_conv_1/expand/Relu6;{FE}expanded_conv_1/expand/BatchNorm/batchnorm/add_1;"
             f"{FE}expanded_conv_1/expand/Conv2D")
    assert tf_node(fused, known) == FE + "expanded_conv_1/expand/Relu6"
    assert tf_node("Conv__6204:0", known) is None


def test_to_trace_undoes_nchw_except_on_the_models_own_outputs():
    nchw = np.arange(32 * 150 * 150, dtype=np.float32).reshape(1, 32, 150, 150)
    name = FE + "Conv/Relu6:0"
    tensors, undone, sources = to_trace({name: nchw, "Conv__1:0": nchw}, {})
    np.testing.assert_array_equal(tensors[FE + "Conv/Relu6"], nchw.transpose(0, 2, 3, 1))
    assert undone == {"NCHW": [FE + "Conv/Relu6"]} and sources == {FE + "Conv/Relu6": name}
    tensors, undone, _ = to_trace({name: nchw}, {}, outputs={name})
    assert tensors[FE + "Conv/Relu6"].shape == nchw.shape and not undone   # for compare to report
    tensors, _, _ = to_trace({name: nchw[:, :, :10]}, {})
    assert not tensors   # another number of elements: not this node's value


def test_reference_shapes_list_the_trace_in_graph_order(reference):
    shapes = reference_shapes()
    assert list(shapes) == list(reference)
    assert all(shapes[name] == reference[name].shape for name in shapes)
    assert list(shapes)[-1] == "DetectionOutput"


def test_model_input_conventions():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    x = model_input(rgb, Convention(channels="BGR", layout="NCHW", dtype="float32"))
    assert x.shape == (1, 3, 2, 3) and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, 0], rgb[:, :, 2])
    pre = model_input(rgb, Convention(kind="preprocessed", dtype="float32"))
    assert pre.shape == (1, 300, 300, 3) and -1 <= pre.min() and pre.max() <= 1


# --------------------------------------------------------------------------------------------- ONNX

def test_exact_onnx_compares_clean(onnx_models, image, reference, work):
    tensors, meta, coverage = _capture(onnx_models["exact"], image, work, "exact")
    report, first = _first_failure(reference, tensors)
    assert first is None and report.passed, report.format_table()
    assert len(report.compared) == len(tensors) > 200
    assert meta["runtime"] == "onnxruntime" and meta["input_convention"]["channels"] == "RGB"
    assert FE + "Conv/Relu6" in meta["layouts_undone"]["NCHW"]
    assert meta["model_outputs"] == ["concat", "concat_1"]
    assert FE + "expanded_conv_3/project/BatchNorm/batchnorm/add_1" in tensors  # tf2onnx's folded Conv__n
    assert coverage.startswith(f"captured {len(tensors)} of {len(reference)} reference tensors")
    assert coverage.endswith("stages with none: post-processing")


def test_scaled_layer_is_the_first_divergence(onnx_models, image, reference, work):
    tensors, _, _ = _capture(onnx_models["scaled"], image, work, "scaled")
    report, first = _first_failure(reference, tensors)
    assert first.name == f"{FE}{SCALED_LAYER}/BatchNorm/batchnorm/add_1"
    assert all(t.status == "ok" for t in report.compared if t.index < first.index)
    assert report.results[-1].status == "missing"  # DetectionOutput: not in an ONNX model cut at concat


def test_input_fed_as_bgr_is_caught_at_the_input(onnx_models, image, reference, work):
    tensors, meta, _ = _capture(onnx_models["exact"], image, work, "fed_bgr", overrides={"channels": "BGR"})
    report, first = _first_failure(reference, tensors)
    assert meta["input_convention"]["channels"] == "BGR"
    assert report.layouts["BGR"][0] == "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3"
    assert first.name == FE + "Conv/BatchNorm/batchnorm/add_1"   # the first tensor the swap cannot explain


def test_div255_preprocessing_is_caught_at_preprocessor_mul(onnx_models, image, reference, work):
    tensors, _, _ = _capture(onnx_models["div255"], image, work, "div255")
    report, first = _first_failure(reference, tensors)
    assert first.name == "Preprocessor/mul"
    assert "0.5" in first.hint   # candidate = 0.5 * reference


def test_model_that_wants_bgr_fed_rgb_diverges_at_the_first_convolution(onnx_models, image, reference, work):
    tensors, _, _ = _capture(onnx_models["bgr"], image, work, "bgr_model")
    _, first = _first_failure(reference, tensors)
    assert first.name == FE + "Conv/BatchNorm/batchnorm/add_1"
    tensors, _, _ = _capture(onnx_models["bgr"], image, work, "bgr_model_bgr", overrides={"channels": "BGR"})
    report, first = _first_failure(reference, tensors)
    assert list(report.layouts) == ["BGR"] and first is None  # only the fed image itself is BGR


def test_name_map_renames(onnx_models, image, work):
    tensors, _, _ = _capture(onnx_models["exact"], image, work, "mapped",
                             name_map={f"{FE}Conv/Relu6:0": FE + "expanded_conv/depthwise_output"})
    assert FE + "expanded_conv/depthwise_output" in tensors and FE + "Conv/Relu6" not in tensors


def test_cli_capture_writes_a_trace(onnx_models, image, reference, work, capfd):
    out = work / "cli.npz"
    assert main(["capture", str(onnx_models["exact"]), str(image), "--out", str(out)]) == 0
    printed = capfd.readouterr().out
    tensors, meta = load_trace(out)
    assert printed.startswith(f"wrote {out}: {len(tensors)} tensors; captured {len(tensors)} of ")
    assert list(tensors) == [name for name in reference if name in tensors]   # graph order
    assert meta["layouts_undone"]["NCHW"] and meta["input_convention"]["kind"] == "pixels"
    ref = work / "reference.npz"
    write_trace_file(ref, reference, {"producer": "test"})
    # The model stops at concat, concat_1 (its `model_outputs`): those are the final outputs it must have
    assert meta["model_outputs"] == ["concat", "concat_1"]
    report = io.StringIO()
    assert main_compare(ref, out, out=report) == 0, report.getvalue()
    assert f"PASS: all {len(tensors)} common tensors within" in report.getvalue()
    without = work / "cli_without_concat_1.npz"
    write_trace_file(without, {k: v for k, v in tensors.items() if k != "concat_1"}, meta)
    report = io.StringIO()
    assert main_compare(ref, without, out=report) == 1
    assert "required output(s) missing" in report.getvalue()


def test_missing_runtime_names_the_extra(onnx_models, image, work, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    assert main(["capture", str(onnx_models["exact"]), str(image), "--out", str(work / "none.npz")]) == 2
    assert "pip install 'ssd_np[onnx]'" in capsys.readouterr().err
    assert not (work / "none.npz").exists()


def test_bad_inputs_are_one_line_errors(image, work, capsys):
    bad = work / "model.h5"
    bad.write_bytes(b"x")
    assert main(["capture", str(bad), str(image), "--out", str(work / "x.npz")]) == 2
    assert main(["capture", str(work / "absent.onnx"), str(image), "--out", str(work / "x.npz")]) == 2
    garbage = work / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    pytest.importorskip("onnx")
    assert main(["capture", str(garbage), str(image), "--out", str(work / "x.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("ssd-np: error: ") for line in err)
    assert not (work / "x.npz").exists()


def test_trace_openvino_needs_300x300(weights, work):
    path = work / "small.png"
    Image.new("RGB", (20, 10)).save(path)
    with pytest.raises(TraceInputError, match="300x300"):
        trace_image(weights, path, openvino=True)


# --------------------------------------------------------------------------------------------- OpenVINO

@pytest.fixture(scope="module")
def ir_models(onnx_models, work):
    """OpenVINO IRs converted from the ONNX candidates; `bgr` marked as Model Optimizer's
    --reverse_input_channels conversion (the IR expects BGR)."""
    ov = pytest.importorskip("openvino")
    paths = {}
    for name in ("exact", "scaled", "bgr"):
        model = ov.convert_model(str(onnx_models[name]))
        if name == "bgr":
            model.set_rt_info("True", ["conversion_parameters", "reverse_input_channels"])
        paths[name] = work / f"{name}.xml"
        ov.save_model(model, str(paths[name]), compress_to_fp16=False)
    return paths


def test_exact_ir_compares_clean(ir_models, image, reference, work):
    tensors, meta, coverage = _capture(ir_models["exact"], image, work, "ir_exact")
    report, first = _first_failure(reference, tensors)
    assert first is None and report.passed, report.format_table()
    assert meta["runtime"] == "openvino" and coverage.endswith("stages with none: post-processing")
    assert meta["model_outputs"] == ["concat", "concat_1"]
    assert f"{FE}expanded_conv_3/project/BatchNorm/batchnorm/add_1" in tensors  # the bias Add of a folded Conv


def test_bgr_ir_is_fed_bgr_and_compares_clean(ir_models, image, reference, work):
    tensors, meta, _ = _capture(ir_models["bgr"], image, work, "ir_bgr")
    report, first = _first_failure(reference, tensors)
    assert meta["input_convention"]["channels"] == "BGR"
    assert first is None and report.passed, report.format_table()


def test_scaled_layer_in_ir_is_the_first_divergence(ir_models, image, reference, work):
    tensors, _, _ = _capture(ir_models["scaled"], image, work, "ir_scaled")
    _, first = _first_failure(reference, tensors)
    assert first.name == f"{FE}{SCALED_LAYER}/BatchNorm/batchnorm/add_1"


def test_capture_metadata_records_hashes(ir_models, image, work):
    import hashlib

    _, meta, _ = _capture(ir_models["exact"], image, work, "ir_meta")
    assert meta["image_sha256"] == hashlib.sha256(image.read_bytes()).hexdigest()
    assert meta["model_sha256"] == hashlib.sha256(ir_models["exact"].read_bytes()).hexdigest()
    assert json.dumps(meta)  # plain JSON


# --------------------------------------------------------------------------------------------- TFLite

INT8_MODEL = Path(__file__).parent / "data" / "capture" / "standin_seed1_int8.tflite"


def test_int8_tflite_is_dequantized_with_its_own_parameters(image, reference):
    """`tools/make_tflite.py` on the frozen graph with stand-in seed 1 weights (cut at Preprocessor/sub ->
    concat, concat_1; int8 weights and activations calibrated on 16 COCO images, float input and output)."""
    pytest.importorskip("ai_edge_litert", reason="no TFLite interpreter (pip install 'ssd_np[tflite]')")
    tensors, meta = capture_tensors(INT8_MODEL, image)
    coverage = coverage_line(tensors)
    assert meta["input_convention"]["kind"] == "preprocessed" and meta["model_outputs"] == ["concat", "concat_1"]
    np.testing.assert_array_equal(tensors["Preprocessor/sub"], reference["Preprocessor/sub"])
    assert coverage.endswith("stages with none: post-processing")
    relu6 = FE + "Conv/Relu6"
    assert relu6 in meta["quantization"] and relu6 in tensors  # a fused name `.../Relu6;.../add_1;.../Conv2D`
    for name, parameters in meta["quantization"].items():
        step = max(parameters["scale"])
        # dequantized values lie on the tensor's own grid, scale * (q - zero_point)
        q = tensors[name] / step + parameters["zero_point"][0]
        assert np.abs(q - np.round(q)).max() < 1e-2, name
    assert np.abs(tensors[relu6] - reference[relu6]).max() <= 3 * meta["quantization"][relu6]["scale"][0]
    _, first = _first_failure(reference, tensors)
    assert first.name.startswith(FE)  # quantization error at the default float32 tolerance, in the backbone
