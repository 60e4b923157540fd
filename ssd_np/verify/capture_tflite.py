"""Capture a TFLite model (float, or int8/uint8 quantized) with the LiteRT interpreter (`ai-edge-litert`, or the
older `tflite-runtime`).

The interpreter runs with `experimental_preserve_all_tensors=True`, so every intermediate tensor keeps its value
after `invoke()`, and with the built-in kernels only (no XNNPACK delegate, whose fused partitions do not keep
their intermediates). TF's converter fuses ops and names the fused tensor with the `;`-joined names of the TF nodes it
replaces, the node it ends at first (`.../expand/Relu6;.../expand/BatchNorm/batchnorm/add_1;.../expand/Conv2D`):
`capture.tf_node` takes the first part that is a reference node.

Quantized tensors are dequantized with their own parameters, `real = scale * (q - zero_point)` (per channel along
`quantized_dimension` for per-axis parameters), and the parameters of each captured tensor are recorded. A
quantized model input is fed quantized the same way: `q = round(real / scale) + zero_point`, clipped.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ssd_np.verify.capture import (CaptureError, RuntimeCapture, convention_from_shape, missing_runtime,
                                   runtime_failure)


def _interpreter_module():
    """(the interpreter module, its package name, version): LiteRT, else the older tflite-runtime."""
    try:
        import ai_edge_litert as package
        from ai_edge_litert import interpreter
        return interpreter, "ai-edge-litert", getattr(package, "__version__", "?")
    except ImportError:
        pass
    try:
        import tflite_runtime as package
        from tflite_runtime import interpreter
        return interpreter, "tflite-runtime", getattr(package, "__version__", "?")
    except ImportError as e:
        raise missing_runtime(".tflite", "ai-edge-litert") from e


def dequantize(q: np.ndarray, parameters: dict) -> np.ndarray:
    """Integer tensor -> float32 with the tensor's scales and zero points (per tensor or per axis)."""
    scales, zero_points = parameters["scales"], parameters["zero_points"]
    if q.dtype.kind not in "iu" or len(scales) == 0:
        return q
    shape = [1] * q.ndim
    if len(scales) > 1:
        shape[parameters["quantized_dimension"]] = len(scales)
    return ((q.astype(np.float32) - zero_points.reshape(shape).astype(np.float32))
            * scales.reshape(shape).astype(np.float32))


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(detail["dtype"])


def run(model_path: Path, feed, precision: str | None = None) -> RuntimeCapture:
    """Run the model on `feed(convention)`, every tensor preserved; dequantize what is quantized."""
    module, runtime, version = _interpreter_module()
    try:
        with warnings.catch_warnings():  # "intended for debugging purposes only": that is the purpose
            warnings.simplefilter("ignore", UserWarning)
            interpreter = module.Interpreter(
                model_path=str(model_path), experimental_preserve_all_tensors=True,
                experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise CaptureError(f"{model_path}: not a usable TFLite model ({str(e).splitlines()[0]})") from e
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise CaptureError(f"{model_path}: expected one image input, the model has {len(inputs)}")
    detail = inputs[0]
    quantized_input = detail["dtype"] in (np.int8, np.uint8) and detail["quantization"][0] != 0
    dtype = "float32" if quantized_input or detail["dtype"] != np.uint8 else "uint8"
    x, convention = feed(convention_from_shape([int(d) for d in detail["shape"]], dtype, detail["name"]))
    notes = []
    if quantized_input:
        x = _quantize(x, detail)
        notes.append(f"input quantized: q = round(x / {detail['quantization'][0]:g}) + {detail['quantization'][1]}")
    try:
        interpreter.set_tensor(detail["index"], x)
        interpreter.invoke()
    except (ValueError, RuntimeError) as e:
        raise runtime_failure(model_path, x, convention, "the TFLite interpreter", e) from e

    tensors, quantization = {}, {}
    for tensor in interpreter.get_tensor_details():
        try:
            value = interpreter.get_tensor(tensor["index"])
        except ValueError:  # a tensor without data (e.g. a scratch buffer)
            continue
        parameters = tensor["quantization_parameters"]
        if value.dtype.kind in "iu" and len(parameters["scales"]):
            value = dequantize(value, parameters)
            quantization[tensor["name"]] = {
                "scale": parameters["scales"].tolist(), "zero_point": parameters["zero_points"].tolist(),
                "dtype": str(tensor["dtype"].__name__)}
        tensors[tensor["name"]] = value
    if quantization:
        notes.append(f"{len(quantization)} quantized tensors dequantized: real = scale * (q - zero_point)")
    outputs = [detail["name"] for detail in interpreter.get_output_details()]
    return RuntimeCapture(tensors, convention, runtime, version, notes, quantization, outputs=outputs)
