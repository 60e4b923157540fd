"""`ssd-np capture MODEL IMAGE --out candidate.npz`: run a converted model with its own runtime on one image and
save every intermediate tensor it can expose, under the reference's TF node names, in the trace format
(`ssd_np.verify.trace`), ready for `ssd-np compare`.

One module per runtime (`RUNTIMES`, chosen by the model file's suffix) runs the model with every tensor it can
expose marked as an output and returns them under the runtime's own names (`RuntimeCapture`). This module then
does what is common to every format:

1. the input: the image fed in the model's own convention (`Convention`: pixels or preprocessed values, size,
   RGB/BGR, uint8/float32, NHWC/NCHW), detected by the runtime module from the model and overridable by flags;
2. the names: a runtime name maps to a TF node (`tf_node`) by dropping the tensor suffix `:0`, converter
   suffixes `__12` and, for `;`-joined fused names (TFLite), taking the first part that is a reference node (the
   op the fused tensor ends at); `--map FILE.json` ({runtime name: TF node}) overrides;
3. the layouts: a tensor whose shape is the reference's transposed to NCHW (ONNX, OpenVINO) is transposed back,
   one whose shape differs only by size-1 dimensions is reshaped, and both are recorded in the metadata
   (`layouts_undone`), so an exact conversion compares clean; anything else is left for `ssd-np compare` to judge;
4. the file: tensors in the reference's graph order, `__meta__/json` with the runtime and its version, the
   model's and the image's sha256, the input convention, the layouts undone, the quantization parameters and
   `model_outputs` (the TF nodes of the model's own outputs: TF's four, `DetectionOutput` for an OpenVINO IR
   with `detection_out`, `concat`/`concat_1` for a cut graph),
   written atomically (`trace.write_trace_file`);
5. the coverage: how many reference tensors were captured, and which stages (preprocessing, each feature
   extractor layer, the box predictors, post-processing) have none.
"""
from __future__ import annotations

import functools
import importlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ssd_np.images import load_rgb
from ssd_np.reference import mobilenet_v2, preprocess
from ssd_np.verify.compare import SHAPE_FIXES
from ssd_np.verify.trace import trace_rgb, write_trace_file
from ssd_np.weights.hdf5 import MANIFEST, sha256_file

# Model file suffix -> (runtime module, the pip extra that installs its runtime).
RUNTIMES = {
    ".onnx": ("ssd_np.verify.capture_onnx", "onnx"),
    ".xml": ("ssd_np.verify.capture_openvino", "openvino"),
    ".tflite": ("ssd_np.verify.capture_tflite", "tflite"),
    ".pb": ("ssd_np.verify.capture_tf", None),
}
PREPROCESSED_NODE = "Preprocessor/sub"


class CaptureError(ValueError):
    """A model or option `capture` cannot use: one line naming the problem and the fix."""


@dataclass(frozen=True)
class Convention:
    """How the image is fed to the model's input.

    kind: `pixels` (the image's 0..255 values) or `preprocessed` (`Preprocessor/sub`: TF's resize, then
    (2/255) x - 1); size: (height, width) the pixels are resized to (OpenCV INTER_LINEAR, what OpenVINO users
    do), None for the image's own size; channels `RGB` or `BGR`; dtype `uint8` or `float32`; layout `NHWC` or
    `NCHW` (batch of 1 either way)."""
    kind: str = "pixels"
    size: tuple[int, int] | None = None
    channels: str = "RGB"
    dtype: str = "uint8"
    layout: str = "NHWC"

    def describe(self) -> str:
        size = "image size" if self.size is None else f"{self.size[0]}x{self.size[1]}"
        return f"{self.kind} {size} {self.channels} {self.dtype} {self.layout}"


def convention_from_shape(shape, dtype: str, name: str) -> Convention:
    """A model input's convention from its (1, ., ., .) shape (None or a string for dynamic dimensions), dtype
    and name: 3 in dimension 1 means NCHW; a node named `Preprocessor/sub` takes preprocessed values; RGB."""
    dims = [d if isinstance(d, int) and d > 0 else None for d in shape]
    if len(dims) != 4:
        raise CaptureError(f"model input {name!r} has shape {list(shape)}: expected a 4-D image batch "
                           f"(give the input convention with --layout/--size if the model is still an SSD)")
    layout = "NCHW" if dims[1] == 3 and dims[3] != 3 else "NHWC"
    height, width = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
    kind = "preprocessed" if tf_node_name(name) == PREPROCESSED_NODE else "pixels"
    size = (height, width) if height and width else None
    return Convention(kind=kind, size=size, dtype="uint8" if dtype == "uint8" else "float32", layout=layout)


def model_input(rgb: np.ndarray, convention: Convention) -> np.ndarray:
    """The image (H, W, 3) uint8 RGB as the model's input batch (1, ...) in `convention`."""
    if convention.kind == "preprocessed":
        if convention.size not in (None, (preprocess.INPUT_SIZE, preprocess.INPUT_SIZE)):
            raise CaptureError(f"a preprocessed input is {preprocess.INPUT_SIZE}x{preprocess.INPUT_SIZE}, "
                               f"not {convention.size}")
        x = preprocess.preprocess(rgb, {})  # (300, 300, 3) float32 in [-1, 1]
    elif convention.size is not None and convention.size != rgb.shape[:2]:
        x = preprocess.resize_bilinear_cv2(rgb, *convention.size)  # (h, w, 3) uint8
    else:
        x = rgb
    if convention.channels == "BGR":
        x = x[:, :, ::-1]
    if convention.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None], dtype=np.dtype(convention.dtype))


@dataclass
class RuntimeCapture:
    """What a runtime module returns: every tensor it exposed, by its runtime name, and how it ran."""
    tensors: dict[str, np.ndarray]
    convention: Convention
    runtime: str
    version: str
    notes: list[str] = field(default_factory=list)          # conventions of the format undone by the module
    quantization: dict[str, dict] = field(default_factory=dict)  # runtime name -> {"scale": .., "zero_point": ..}
    names: dict[str, str | None] = field(default_factory=dict)  # runtime name -> TF node, where not `tf_node`'s
    undo: list[str] = field(default_factory=list)  # keys of FORMAT_CONVENTIONS the model's tensors follow
    outputs: list[str] = field(default_factory=list)  # runtime names of the model's own outputs


# ------------------------------------------------------------------------------------------------ reference

def _zero_weights() -> dict[str, np.ndarray]:
    """The release's variables (`MANIFEST`), all zero: enough to run the reference for its node names and shapes."""
    return {name: np.zeros(shape, np.float32) for name, shape in MANIFEST.shapes.items()}


@functools.cache
def reference_shapes() -> dict[str, tuple[int, ...]]:
    """Every node of the reference trace (TF's outputs and OpenVINO's `DetectionOutput`) -> its shape, in graph
    order, for a 300x300 image."""
    size = preprocess.INPUT_SIZE
    trace = trace_rgb(_zero_weights(), np.zeros((size, size, 3), np.uint8), openvino=True)
    return {name: value.shape for name, value in trace.items()}


def stage(node: str) -> str:
    """The stage a reference node belongs to: `preprocessing`, a feature extractor layer (`Conv`,
    `expanded_conv_3`, `layer_19_2_Conv2d_2_3x3_s2_512_depthwise`, ...), `BoxPredictor_i`, `concat` or
    `post-processing`."""
    parts = node.split("/")
    if parts[0] == "Preprocessor":
        return "preprocessing"
    if node.startswith(mobilenet_v2.SCOPE + "/"):
        return parts[2]
    if parts[0].startswith("BoxPredictor_") or node in ("concat", "concat_1"):
        return parts[0] if parts[0].startswith("BoxPredictor_") else "concat"
    return "post-processing"


def coverage_line(captured) -> str:
    """`captured N of M reference tensors; stages with none: ...`."""
    shapes = reference_shapes()
    stages = list(dict.fromkeys(stage(name) for name in shapes))
    covered = {stage(name) for name in captured if name in shapes}
    empty = [s for s in stages if s not in covered]
    count = sum(name in shapes for name in captured)
    return (f"captured {count} of {len(shapes)} reference tensors; "
            + (f"stages with none: {', '.join(empty)}" if empty else "every stage has some"))


# ------------------------------------------------------------------------------------------------ names and layouts

def tf_node_name(name: str) -> str:
    """A runtime tensor name without the output suffix `:0` and a converter suffix `__12` (tf2onnx)."""
    name = name.rsplit(":", 1)[0] if name.rsplit(":", 1)[-1].isdigit() else name
    head, sep, tail = name.rpartition("__")
    return head if sep and tail.isdigit() else name


def tf_node(name: str, known) -> str | None:
    """The reference node a runtime tensor name stands for, or None: each `;`-joined part (TFLite's fused
    names list the op the tensor ends at first) without its suffixes, the first that is in `known`."""
    for part in name.split(";"):
        node = tf_node_name(part)
        if node in known:
            return node
    return None


def undo_layout(value: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, str | None, int]:
    """`value` in the reference's `shape` if it can be: (value, layout undone or None, rank), rank 0 for the
    reference's shape as is, 1 after undoing `NCHW` (a 4-D tensor transposed) or `squeezed` (shapes differing
    only by size-1 dimensions), 2 for another shape (left unchanged). The conventions are `compare`'s own
    (`compare.SHAPE_FIXES`), so a capture undoes exactly what a comparison would."""
    stand_in = np.broadcast_to(np.float32(0.0), shape)  # a shape fix reads only the reference's shape
    for rank, (layout, fix) in enumerate(SHAPE_FIXES):
        pair = fix("", stand_in, value)
        if pair is not None:
            return pair[1], layout or None, min(rank, 1)
    return value, None, 2


def to_trace(raw: dict[str, np.ndarray], name_map: dict[str, str | None], outputs=()) -> tuple[dict, dict, dict]:
    """Runtime tensors -> (trace tensors by TF node in graph order, {layout: [nodes]} undone, {node: runtime name}).
    The model's own `outputs` (runtime names) are kept as they are and win: their layout is what the model's users
    get, so a difference there is for `compare` to report. A tensor with another number of elements than its
    node's is not that node's value (a converter names constants after the op that uses them) and is skipped. When
    several runtime tensors map to one node (tf2onnx's `X:0` in NCHW, and Transposes `X__12:0` next to it), the
    one in the reference's shape wins, then one whose layout could be undone, then the first."""
    shapes = reference_shapes()
    chosen: dict[str, tuple[np.ndarray, str | None, int, str]] = {}
    for name, value in raw.items():
        node = name_map[name] if name in name_map else tf_node(name, shapes)
        if node is None or node not in shapes or np.size(value) != int(np.prod(shapes[node])):
            continue
        if name in outputs:
            candidate = (np.asarray(value), None, -1, name)
        else:
            candidate = undo_layout(np.asarray(value), shapes[node]) + (name,)
        if node not in chosen or candidate[2] < chosen[node][2]:
            chosen[node] = candidate
    tensors = {node: np.asarray(chosen[node][0], np.float32) for node in shapes if node in chosen}
    undone: dict[str, list[str]] = {}
    for node in tensors:
        if chosen[node][1]:
            undone.setdefault(chosen[node][1], []).append(node)
    return tensors, undone, {node: chosen[node][3] for node in tensors}


def _xy_to_yx(codes: np.ndarray) -> np.ndarray:
    """Box codes (..., A * 4) in [tx, ty, tw, th] order per anchor -> TF's [ty, tx, th, tw]."""
    per_anchor = codes.reshape(codes.shape[:-1] + (-1, 4))
    return per_anchor[..., [1, 0, 3, 2]].reshape(codes.shape)


# Conventions a model format may follow in its intermediate tensors (NHWC by now), undone after `to_trace`:
# name -> (which nodes it applies to: node, shape -> bool, how to undo it).
FORMAT_CONVENTIONS = {
    # OpenVINO IR with --reverse_input_channels: the preprocessing before the first convolution sees BGR.
    "BGR": (lambda node, shape: stage(node) == "preprocessing" and shape[-1] == 3, lambda x: x[..., ::-1]),
    # The Open Model Zoo recipe (ssd_v2_support.json) swaps the box predictors' outputs to [tx, ty, tw, th], the
    # order OpenVINO's DetectionOutput reads.
    "xy": (lambda node, shape: "BoxEncodingPredictor" in node or node == "concat" or
           (node.startswith("BoxPredictor_") and node.endswith("/Reshape")), _xy_to_yx),
}
FOLDED_WEIGHTS = "/Conv2D/merged_input"  # tf2onnx's weights of a convolution with the batch norm folded in


def folded_bn_node(weights_name: str) -> str | None:
    """tf2onnx folds slim's batch norm into the convolution before it: the Conv with the weights
    `<scope>/Conv2D/merged_input:0` (and bias `<scope>/BatchNorm/batchnorm/sub:0`) computes TF's
    `<scope>/BatchNorm/batchnorm/add_1`. That node for a weights tensor name, or None."""
    name = tf_node_name(weights_name)
    return name[:-len(FOLDED_WEIGHTS)] + "/BatchNorm/batchnorm/add_1" if name.endswith(FOLDED_WEIGHTS) else None


# ------------------------------------------------------------------------------------------------ the command

def load_runtime(model_path: Path):
    """The runtime module for the model file's suffix. Raises CaptureError naming the extra to install."""
    suffix = model_path.suffix.lower()
    if suffix not in RUNTIMES:
        raise CaptureError(f"{model_path}: unknown model format {suffix!r}: capture reads "
                           f"{', '.join(RUNTIMES)} files")
    module_name, _ = RUNTIMES[suffix]
    return importlib.import_module(module_name)


def runtime_failure(model_path, x: np.ndarray, convention: Convention, runtime: str,
                    error: Exception) -> CaptureError:
    """The one-line error for a runtime that rejects the input fed: its own reason (the last line of its message,
    where OpenVINO and onnxruntime put it) and the convention fed."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return CaptureError(f"{model_path}: {runtime} failed on input {x.dtype} {list(x.shape)} "
                        f"({convention.describe()}): {lines[-1] if lines else type(error).__name__}; check the "
                        f"input convention options")


def missing_runtime(suffix: str, package: str) -> CaptureError:
    """The one-line error for a runtime that is not installed."""
    extra = RUNTIMES[suffix][1]
    fix = f"pip install 'ssd_np[{extra}]'" if extra else f"pip install {package}"
    return CaptureError(f"{package} is not installed: it runs {suffix} models; install it with: {fix}")


def read_map(path) -> dict[str, str]:
    """`--map FILE.json`: {runtime tensor name: TF node name}."""
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CaptureError(f"--map {path}: cannot read a JSON name map ({e})") from e
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise CaptureError(f"--map {path}: expected a JSON object {{runtime tensor name: TF node name}}")
    return mapping


def capture_tensors(model_path, image_path, name_map: dict[str, str] | None = None, overrides: dict | None = None,
                    precision: str | None = "f32") -> tuple[dict[str, np.ndarray], dict]:
    """Run `model_path` on `image_path`: (trace tensors by TF node in graph order, metadata). `overrides`:
    Convention fields to force (e.g. {"channels": "BGR"}); `precision`: OpenVINO's inference precision (None:
    the plugin's default); `name_map`: {runtime tensor name: TF node}, before the automatic mapping."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise CaptureError(f"{model_path}: no such model file")
    runtime = load_runtime(model_path)
    rgb = load_rgb(image_path)
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}

    def feed(convention: Convention) -> tuple[np.ndarray, Convention]:
        convention = replace(convention, **overrides)
        return model_input(rgb, convention), convention

    result = runtime.run(model_path, feed, precision=precision)
    names = {**result.names, **(name_map or {})}
    tensors, undone, sources = to_trace(result.tensors, names, set(result.outputs))
    outputs = [names[n] if n in names else tf_node(n, reference_shapes()) for n in result.outputs]
    for convention in result.undo:
        applies, undo = FORMAT_CONVENTIONS[convention]
        for node in [n for n in tensors if applies(n, tensors[n].shape)]:
            tensors[node] = undo(tensors[node])
            undone.setdefault(convention, []).append(node)
    if not tensors:
        raise CaptureError(f"{model_path}: none of the model's tensors has a name of the reference graph: give "
                           f"a name map with --map FILE.json ({{runtime tensor name: TF node name}})")
    meta = {
        "producer": "ssd-np capture", "runtime": result.runtime, "version": result.version,
        "model": str(model_path), "model_sha256": sha256_file(model_path),
        "image": str(image_path), "image_sha256": sha256_file(image_path),
        "input_convention": asdict(result.convention), "format_conventions_undone": result.notes,
        "layouts_undone": undone, "model_outputs": [node for node in outputs if node in tensors],
        "quantization": {node: result.quantization[source] for node, source in sources.items()
                         if source in result.quantization},
    }
    return tensors, meta


def capture(model_path, image_path, out, name_map: dict[str, str] | None = None, overrides: dict | None = None,
            precision: str | None = "f32") -> tuple[int, str]:
    """`capture_tensors`, written to the trace file `out`. Returns (number of tensors, coverage line)."""
    tensors, meta = capture_tensors(model_path, image_path, name_map, overrides, precision)
    write_trace_file(out, tensors, meta)
    return len(tensors), coverage_line(tensors)
