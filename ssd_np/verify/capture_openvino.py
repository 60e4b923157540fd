"""Capture an OpenVINO IR (`.xml` + `.bin`, e.g. the Open Model Zoo conversion by Model Optimizer) with
OpenVINO Runtime on the CPU.

Every node whose friendly name stands for a reference node (`capture.tf_node`, after dropping the suffixes
Model Optimizer gives the ops it splits: `BiasAdd/Add` -> `BiasAdd`) becomes a model output
(`Model.add_outputs`); the IR's `DetectionOutput` node (the `detection_out` result) is captured under that name.
The model is compiled with `INFERENCE_PRECISION_HINT=f32` (the CPU plugin otherwise runs bf16 or f16 where the
CPU supports it); `precision=None` keeps the plugin's default.

Conventions of the Open Model Zoo IR, undone here and recorded:
- BGR input: Model Optimizer's `--reverse_input_channels` (read from the IR's `conversion_parameters`) folds
  the channel swap into the first convolution's weights, so the model is fed BGR and its preprocessing
  tensors hold BGR values: those are reversed back to RGB;
- batch norm folded: a convolution whose output goes straight into `.../BatchNorm/batchnorm/add_1` has the batch
  norm scale folded into its weights, so its output is not TF's `Conv2D`: it is not captured;
- NCHW tensors: transposed back by `capture.to_trace`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ssd_np.verify.capture import (CaptureError, RuntimeCapture, convention_from_shape, folded_bn_node,
                                   missing_runtime, reference_shapes, runtime_failure, tf_node)

SPLIT_SUFFIXES = ("/Add/Transpose", "/Add", "/Reshape")  # Model Optimizer's names for the parts of BiasAdd
BN_ADD = "/BatchNorm/batchnorm/add_1"
SKIPPED_TYPES = {"Parameter", "Result", "Constant"}


def ir_node(name: str, known) -> str | None:
    """The reference node an IR friendly name stands for, or None."""
    for suffix in ("",) + SPLIT_SUFFIXES:
        if name.endswith(suffix):
            node = tf_node(name[:len(name) - len(suffix)] if suffix else name, known)
            if node is not None:
                return node
    return None


def _folded_by_tf2onnx(op) -> str | None:
    """An IR converted from tf2onnx's ONNX: the bias Add after a Convolution whose weights are tf2onnx's
    `<scope>/Conv2D/merged_input` computes `<scope>/BatchNorm/batchnorm/add_1` (`capture.folded_bn_node`)."""
    if op.get_type_name() != "Add":
        return None
    conv = op.input_value(0).get_node()
    if conv.get_type_name() not in ("Convolution", "GroupConvolution"):
        return None
    return folded_bn_node(conv.input_value(1).get_node().get_friendly_name())


def _bn_folded(op) -> bool:
    """A convolution feeding the batch norm's `add_1` directly: the scale is folded into its weights."""
    consumers = [target.get_node().get_friendly_name() for target in op.output(0).get_target_inputs()]
    return op.get_type_name() in ("Convolution", "GroupConvolution") and any(c.endswith(BN_ADD) for c in consumers)


def _reverse_input_channels(model) -> bool:
    key = ["conversion_parameters", "reverse_input_channels"]
    return model.has_rt_info(key) and model.get_rt_info(key).astype(str).strip().lower() == "true"


def run(model_path: Path, feed, precision: str | None = "f32") -> RuntimeCapture:
    """Run the IR on `feed(convention)` with every node that has a TF counterpart as an output."""
    try:
        import openvino as ov
    except ImportError as e:
        raise missing_runtime(".xml", e.name or "openvino") from e
    core = ov.Core()
    try:
        model = core.read_model(str(model_path))
    except RuntimeError as e:
        raise CaptureError(f"{model_path}: not a readable OpenVINO IR ({str(e).splitlines()[0]})") from e
    if len(model.inputs) != 1:
        raise CaptureError(f"{model_path}: expected one image input, the model has {len(model.inputs)}")
    parameter = model.inputs[0]
    dtype = "uint8" if parameter.get_element_type() == ov.Type.u8 else "float32"
    detected = convention_from_shape(list(parameter.get_partial_shape().to_shape()), dtype,
                                     parameter.get_any_name())
    bgr = _reverse_input_channels(model)
    x, convention = feed(replace(detected, channels="BGR" if bgr else "RGB"))

    known = reference_shapes()
    detection_out = any(op.get_type_name() == "DetectionOutput" for op in model.get_ops())
    notes, ports, folded = [], [], 0
    names = {}
    for op in model.get_ordered_ops():
        node = ir_node(op.get_friendly_name(), known) or _folded_by_tf2onnx(op)
        if op.get_type_name() in SKIPPED_TYPES or node is None:
            continue
        names[op.get_friendly_name()] = node
        if _bn_folded(op):
            folded += 1
            continue
        ports.append(op.output(0))
    if folded:
        notes.append(f"batch norm folded into {folded} convolutions (Model Optimizer): their outputs are not "
                     f"TF's Conv2D/depthwise and are not captured")
    if bgr:
        notes.append("BGR input (Model Optimizer --reverse_input_channels): fed BGR, preprocessing tensors "
                     "reversed back to RGB")
    outputs = [result.input_value(0).get_node().get_friendly_name() for result in model.get_results()]
    model.add_outputs(ports)
    config = {"INFERENCE_PRECISION_HINT": precision} if precision else {}
    try:
        compiled = core.compile_model(model, "CPU", config)
        request = compiled.create_infer_request()
        request.infer({0: x})
    except RuntimeError as e:
        raise runtime_failure(model_path, x, convention, "OpenVINO", e) from e
    tensors = {}
    for index, result in enumerate(model.get_results()):  # the model's own outputs, then those added
        producer = result.input_value(0).get_node()
        if producer.get_friendly_name() in names and not _bn_folded(producer):
            tensors[producer.get_friendly_name()] = request.get_output_tensor(index).data.copy()
    version = ov.get_version()
    undo = ["BGR"] if bgr else []
    if detection_out:
        undo.append("xy")
        notes.append("box codes in [tx, ty, tw, th] order (the Open Model Zoo recipe, for DetectionOutput): "
                     "reordered to TF's [ty, tx, th, tw]")
    return RuntimeCapture(tensors, convention, "openvino", version, notes, names=names, undo=undo,
                          outputs=outputs)
