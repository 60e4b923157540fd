"""Capture an ONNX model (e.g. tf2onnx's conversion of the frozen graph) with ONNX Runtime.

Every tensor of the main graph becomes a graph output (the model is edited in memory with the `onnx` package;
tensors inside Loop/If bodies cannot be), and the session runs with graph optimizations off
(`ORT_DISABLE_ALL`), so no node is fused away and each output is the value the original node computes.
Initializers (constants such as the folded batch norm `.../batchnorm/mul`) are captured too.

tf2onnx keeps TF's names (`FeatureExtractor/MobilenetV2/Conv/Conv2D:0`) but converts NHWC convolutions by wrapping
them in Transpose nodes (`..__12`) that its optimizer mostly cancels, leaving NCHW data under TF names:
`capture.to_trace` transposes those back and records it. tf2onnx also folds slim's batch norm into the
convolutions it follows: such a Conv (`Conv__123`, weights `<scope>/Conv2D/merged_input:0`) computes TF's
`<scope>/BatchNorm/batchnorm/add_1` and is captured under that name. The input convention comes from the first
graph input: `image_tensor:0` (uint8 NHWC pixels of any size, the whole graph) or `Preprocessor/sub:0`
(preprocessed float).
"""
from __future__ import annotations

from pathlib import Path

from ssd_np.verify.capture import (CaptureError, RuntimeCapture, convention_from_shape, folded_bn_node,
                                   missing_runtime, runtime_failure)


def run(model_path: Path, feed, precision: str | None = None) -> RuntimeCapture:
    """Run the model on `feed(convention)` (the image in the convention given, possibly overridden)."""
    try:
        import onnx
        import onnx.numpy_helper
        import onnxruntime as ort
    except ImportError as e:
        raise missing_runtime(".onnx", e.name or "onnxruntime") from e
    try:
        proto = onnx.load(str(model_path))
    except Exception as e:  # protobuf's DecodeError and friends
        raise CaptureError(f"{model_path}: not a readable ONNX model ({type(e).__name__}: {e})") from e
    graph = proto.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise CaptureError(f"{model_path}: expected one image input, the model has {len(inputs)}: "
                           f"{[i.name for i in inputs]}")
    tensor_type = inputs[0].type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tensor_type.shape.dim]
    dtype = "uint8" if tensor_type.elem_type == onnx.TensorProto.UINT8 else "float32"
    x, convention = feed(convention_from_shape(shape, dtype, inputs[0].name))

    outputs = [o.name for o in graph.output]
    existing = set(outputs)
    for node in graph.node:
        graph.output.extend(onnx.ValueInfoProto(name=name) for name in node.output
                            if name and name not in existing)
        existing.update(node.output)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {inputs[0].name: x})
    except Exception as e:  # onnxruntime's own exception types
        raise runtime_failure(model_path, x, convention, "onnxruntime", e) from e
    tensors = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    tensors.update({inputs[0].name: x})
    tensors.update(zip(names, values))
    folded = {node.output[0]: folded_bn_node(node.input[1]) for node in graph.node
              if node.op_type == "Conv" and folded_bn_node(node.input[1])}
    notes = [f"batch norm folded into {len(folded)} convolutions (tf2onnx): their outputs are captured as "
             f"<scope>/BatchNorm/batchnorm/add_1"] if folded else []
    return RuntimeCapture(tensors, convention, "onnxruntime", ort.__version__, notes, names=folded,
                          outputs=outputs)
