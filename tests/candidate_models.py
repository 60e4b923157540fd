"""Candidate models for the capture tests, built from weights with the `onnx` package's helper API: the network
from the uint8 image to `concat` and `concat_1`, as tf2onnx converts the frozen graph (its names and its layout):

- tensors keep the TF node names with `:0` (`FeatureExtractor/MobilenetV2/Conv/Relu6:0`), the graph input is
  `image_tensor:0` (uint8 NHWC);
- convolutions run in NCHW: a Transpose named `Preprocessor/sub__1` turns the preprocessed image to NCHW, the data
  stays NCHW under the TF names, and a Transpose `<node>__2` turns each predictor output back to NHWC before
  its `Reshape`;
- tf2onnx folds the batch norm into the convolutions: one Conv `Conv__<n>` with the weights
  `<scope>/Conv2D/merged_input:0` (weights x scale) and the bias `<scope>/BatchNorm/batchnorm/sub:0`; after a
  depthwise convolution (`<scope>/depthwise`) the batch norm stays two ops, `BatchNorm/batchnorm/mul_1` (Mul by
  `BatchNorm/batchnorm/mul:0`) and `BatchNorm/batchnorm/add_1`, with (1, C, 1, 1) constants; ReLU6 is
  `Clip(0, 6)`; the box predictors are Convs named `BiasAdd` with their bias;
- TF's SAME padding written out as explicit (asymmetric) pads.

Faults for the tests: `scale_layer` multiplies one layer's weights (e.g. by 1.02), `preprocess_scale` replaces
`Preprocessor/mul`'s 2/255 (e.g. by 1/255), `bgr_input` reverses the first convolution's input channels (what
Model Optimizer's --reverse_input_channels does, so the model must be fed BGR).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ssd_np.reference import box_predictor, mobilenet_v2, preprocess

SCOPE = mobilenet_v2.SCOPE


class _Graph:
    """Nodes and initializers under tf2onnx-like names; `tensor(name)` is the TF node's output `name:0`."""

    def __init__(self):
        self.nodes, self.initializers, self.count = [], [], 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value), f"{name}:0"))
        return f"{name}:0"

    def op(self, op_type: str, name: str, inputs: list[str], **attributes) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [f"{name}:0"], name=name, **attributes))
        return f"{name}:0"

    def converter_name(self, prefix: str) -> str:
        """A name tf2onnx makes up: `<prefix>__<n>`."""
        self.count += 1
        return f"{prefix}__{self.count}"

    def converter_op(self, op_type: str, after: str, inputs: list[str], **attributes) -> str:
        """A node tf2onnx inserts, named `<after>__<n>`."""
        return self.op(op_type, self.converter_name(after), inputs, **attributes)


def _pads(size: int, kernel: int, stride: int) -> tuple[int, int, int]:
    out, before = mobilenet_v2.same_padding(size, kernel, stride)
    return out, before, max((out - 1) * stride + kernel - size, 0) - before


def _conv(g: _Graph, x: str, size: int, name: str, w: np.ndarray, stride: int, depthwise: bool,
          weights_name: str, bias: tuple[str, np.ndarray] | None = None) -> tuple[str, int]:
    """TF conv weights (kh, kw, cin, cout) or depthwise (kh, kw, c, 1) as an NCHW ONNX Conv named `name`."""
    kernel = w.shape[0]
    out, before, after = _pads(size, kernel, stride)
    onnx_w = w.transpose(2, 3, 0, 1) if depthwise else w.transpose(3, 2, 0, 1)  # (cout, cin/group, kh, kw)
    inputs = [x, g.const(weights_name, onnx_w.astype(np.float32))]
    if bias is not None:
        inputs.append(g.const(*bias))
    y = g.op("Conv", name, inputs, kernel_shape=[kernel, kernel], strides=[stride, stride],
             pads=[before, before, after, after], group=w.shape[2] if depthwise else 1)
    return y, out


def build(weights: dict[str, np.ndarray], scale_layer: str | None = None, factor: float = 1.02,
          preprocess_scale: float = 2.0 / 255.0, bgr_input: bool = False) -> onnx.ModelProto:
    """The network as an ONNX model (opset 13): image_tensor:0 (1, 300, 300, 3) uint8 -> concat:0, concat_1:0."""
    g = _Graph()
    x = g.op("Cast", "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3", ["image_tensor:0"],
             to=TensorProto.FLOAT)  # the resize is the identity on a 300x300 image
    x = g.op("Mul", "Preprocessor/mul", [x, g.const("Preprocessor/mul/x", np.float32(preprocess_scale))])
    x = g.op("Sub", "Preprocessor/sub", [x, g.const("Preprocessor/sub/y", preprocess.OFFSET)])
    x = g.converter_op("Transpose", "Preprocessor/sub", [x], perm=[0, 3, 1, 2])
    size, first = preprocess.INPUT_SIZE, True

    def conv_bn(x: str, size: int, scope: str, stride: int, depthwise: bool = False, relu: bool = True):
        nonlocal first
        leaf = "depthwise_weights" if depthwise else "weights"
        w = weights[f"{SCOPE}/{scope}/{leaf}"] * np.float32(factor if scope == scale_layer else 1.0)
        if first and bgr_input:
            w = w[:, :, ::-1]
        first = False
        scale, shift = mobilenet_v2.batch_norm_params(weights, scope, {})
        bn = f"{SCOPE}/{scope}/BatchNorm/batchnorm"
        if depthwise:
            y, size = _conv(g, x, size, f"{SCOPE}/{scope}/depthwise", w, stride, True,
                            g.converter_name("const_fold_opt"))
            y = g.op("Mul", f"{bn}/mul_1", [y, g.const(f"{bn}/mul", scale.reshape(1, -1, 1, 1))])
            y = g.op("Add", f"{bn}/add_1", [y, g.const(g.converter_name("const_fold_opt"),
                                                       shift.reshape(1, -1, 1, 1))])
        else:
            y, size = _conv(g, x, size, g.converter_name("Conv"), w * scale, stride, False,
                            f"{SCOPE}/{scope}/Conv2D/merged_input", (f"{bn}/sub", shift))
        if relu:
            y = g.op("Clip", f"{SCOPE}/{scope}/Relu6", [y, g.const(f"{SCOPE}/{scope}/Relu6/min", np.float32(0)),
                                                        g.const(f"{SCOPE}/{scope}/Relu6/max", np.float32(6))])
        return y, size

    features, channels = {}, 3
    for name, kind, stride, expansion, out in mobilenet_v2.ARCHITECTURE:
        if kind == "expanded_conv":
            block_in = x
            if expansion != 1:
                x, size = conv_bn(x, size, f"{name}/expand", 1)
                features[f"{SCOPE}/{name}/expansion_output"] = x, size
            x, size = conv_bn(x, size, f"{name}/depthwise", stride, depthwise=True)
            x, size = conv_bn(x, size, f"{name}/project", 1, relu=False)
            if mobilenet_v2.has_residual(stride, channels, out):
                x = g.op("Add", f"{SCOPE}/{name}/add", [x, block_in])
        elif kind == "separable":
            x, size = conv_bn(x, size, f"{name}_depthwise", stride, depthwise=True)
            x, size = conv_bn(x, size, name, 1)
        else:  # conv, pointwise
            x, size = conv_bn(x, size, name, stride)
        features[f"{SCOPE}/{name}/Relu6"] = x, size
        channels = out

    boxes, logits = [], []
    for i, node in enumerate(mobilenet_v2.FEATURE_MAP_NODES):
        feature, map_size = features[node]
        for (head, depth), outputs, reshape in zip(box_predictor.HEADS, (boxes, logits), ("Reshape", "Reshape_1")):
            scope = f"BoxPredictor_{i}/{head}"
            y, _ = _conv(g, feature, map_size, f"{scope}/BiasAdd", weights[f"{scope}/weights"], 1, False,
                         f"{scope}/weights/read", (f"{scope}/biases/read", weights[f"{scope}/biases"]))
            y = g.converter_op("Transpose", f"{scope}/BiasAdd", [y], perm=[0, 2, 3, 1])
            shape = [1, -1, 1, depth] if depth == box_predictor.BOX_CODE_SIZE else [1, -1, depth]
            outputs.append(g.op("Reshape", f"BoxPredictor_{i}/{reshape}",
                                [y, g.const(f"BoxPredictor_{i}/{reshape}/shape", np.array(shape, np.int64))]))
    g.op("Concat", "concat", boxes, axis=1)
    g.op("Concat", "concat_1", logits, axis=1)

    graph = helper.make_graph(
        g.nodes, "ssd_mobilenet_v2_coco",
        [helper.make_tensor_value_info("image_tensor:0", TensorProto.UINT8, [1, 300, 300, 3])],
        [helper.make_tensor_value_info("concat:0", TensorProto.FLOAT, [1, 1917, 1, 4]),
         helper.make_tensor_value_info("concat_1:0", TensorProto.FLOAT, [1, 1917, 91])],
        g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="tests")
    model.ir_version = 8
    return model

