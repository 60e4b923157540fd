"""Layer-by-layer comparison of two traces: `ssd-np compare REFERENCE.npz CANDIDATE.npz`.

For people checking another runtime (a port, an accelerator build, a quantized or converted model) against the
reference: both runtimes dump the same intermediate tensors, this module finds the first one that diverges.

Trace file (`.npz`, written with `np.savez` / `np.savez_compressed`):
- one array per traced tensor, keyed by the **genuine TF graph node name** that computes it, without `:0`
  (e.g. `Preprocessor/sub`, `FeatureExtractor/MobilenetV2/expanded_conv_3/output`, `concat_1`,
  `detection_boxes`); a trailing `:0` is accepted and dropped;
- values as TF has them: float32, batch dimension 1 included, NHWC activations, boxes `[ymin, xmin, ymax, xmax]`
  normalized, `detection_classes` 1-based COCO ids (1..90) stored as float;
- metadata under keys starting with `__meta__/`: `__meta__/json` holds a JSON object (producer and version,
  weights source and sha256, image sha256, ...); any other `__meta__/NAME` is kept as metadata `NAME`;
- the keys of the **reference** are written in graph order (any topological order works: execution order, as a
  Python dict filled while running the network, is one). This module takes its order from the reference file, so
  "the first tensor that fails" is where the divergence starts. Candidate files may use any order.

Comparison rule, for every tensor present in both files (in float64, so float16/int candidates are fine):
- within tolerance elementwise when `|c - r| <= atol + rtol * |r|` (`numpy.isclose`; NaN equals NaN);
- reported: `max abs` = max |c - r|; `max rel` = max |c - r| / max |r|, the error relative to the tensor's
  scale (an elementwise |c - r| / |r| is meaningless on ReLU outputs full of zeros); `mismatch` = fraction of
  elements outside the tolerance.
The first tensor, in the reference's order, outside tolerance (after undoing a layout difference, below) is
marked `>>`: the divergence starts there. Tensors missing from the candidate are listed, and fail the comparison
only for the final outputs (`FINAL_OUTPUTS`), so a partial port can be checked layer by layer.
Defaults `atol = 5e-4`, `rtol = 1e-4`, for float32 runtimes. Measured: TF 2.17 with its default settings
(oneDNN, default threads, Grappler) against the reproducible reference (stand-in seed 1, image 000000037777)
differs by at most 1.65e-4 (a ReLU6 layer of scale 6: 2.8e-5 of its scale); this rule then needs
atol >= 1.6e-4 at rtol = 1e-4, so the defaults leave a 3x margin. A real bug (a wrong constant, a transposed
weight, a missing bias) moves a layer by 1e-2 of its scale or more. Reduced-precision and quantized builds:
`--preset fp16|int8` (`presets.py`: SQNR and cosine per tensor instead of the elementwise rule).

With --preset, --isolate or --html the report is *extended*: per tensor also the cosine similarity
<r, c> / (|r| |c|) and the SQNR 10 log10(sum r^2 / sum (c - r)^2) dB; the detection-level verdict
(`detections.py`: detections matched by class and IoU, score and box deltas) and `concat`, `concat_1` on their
own; with --isolate each tensor's local error (`isolate.py`, `diagnosis.py`). With --preset the final outputs
are judged by the detection verdict instead of element by element (status "detections").

Layout differences. A tensor that fails is first checked against known convention differences; when undoing
one makes it pass, the difference is named and the tensor is judged after undoing it, so later tensors are
still compared meaningfully:
- `NCHW`: a 4-D candidate of shape (N, C, H, W) that is the reference transposed;
- `squeezed`: same values, shapes differ only by size-1 dimensions (e.g. (1917, 4) vs (1, 1917, 4));
- `xy`: boxes (last dim 4) in `[xmin, ymin, xmax, ymax]` order: columns [1, 0, 3, 2];
- `BGR`: a 4-D image-like tensor (3 channels) with the channels reversed;
- `0-based`, `+1`: class tensors (`*classes*`) off by one;
- `scores`, `logits`: candidate = sigmoid(reference), or reference = sigmoid(candidate).
A shape difference (NCHW, squeezed) combines with one value difference (e.g. `NCHW+BGR`). A layout difference
still fails the comparison: the trace format fixes the convention, and a runtime whose outputs use another one is
not a drop-in replacement (0-based classes or xy boxes are real bugs downstream). The fix belongs in whatever
writes the candidate trace, or in the runtime.

Hints. A tensor that still fails is fitted (least squares) with candidate = k * reference, then
candidate = a * reference + b; a fit that explains every element within tolerance is named: e.g. "candidate = 1.5 * reference" for a wrong scale, or
"0.5 * reference + 0.5" for another input normalization. Hints do not change the verdict.

Exit status (`main_compare`): 0 when every common tensor is within tolerance, no layout difference was found,
no final output present in the reference is missing from the candidate (`required_outputs`: TF's four, or
`DetectionOutput` for a candidate in OpenVINO's format) and, with --preset, the detection verdicts pass; 1
otherwise; 2 for bad input (unreadable file, not an npz trace, no common tensors; --isolate without the traced
image or weights) with a message naming the problem.
"""
from __future__ import annotations

import itertools
import json
import sys
import zipfile
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping, TextIO

import numpy as np

from ssd_np.atomic import write_atomic
from ssd_np.verify.detections import OPENVINO_OUTPUTS, TF_OUTPUTS, detection_verdicts
from ssd_np.verify.presets import FP32, Preset, elementwise

DEFAULT_ATOL = FP32.atol
DEFAULT_RTOL = FP32.rtol
META_PREFIX = "__meta__/"
FINAL_OUTPUTS = TF_OUTPUTS
OPENVINO_OUTPUT = OPENVINO_OUTPUTS[0]   # OpenVINO's detection_out rows (1, 1, 100, 7)
TINY = float(np.finfo(np.float32).tiny)

LAYOUTS = {
    "NCHW": "candidate is NCHW (the reference transposed)",
    "squeezed": "shapes differ only by size-1 dimensions",
    "xy": "box columns in x, y order ([xmin, ymin, xmax, ymax] instead of TF's [ymin, xmin, ymax, xmax])",
    "BGR": "channels in reversed (BGR) order",
    "0-based": "class ids 0-based (candidate = reference - 1)",
    "+1": "class ids off by one (candidate = reference + 1)",
    "scores": "candidate holds scores, sigmoid(reference logits)",
    "logits": "candidate holds logits where the reference holds sigmoid scores",
}


class TraceError(ValueError):
    """A trace file that cannot be read, or two traces that cannot be compared."""


# ---------------------------------------------------------------------------------------------- loading

def _meta_value(array: np.ndarray) -> object:
    value = array.tolist()
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _read_npz(path) -> dict[str, np.ndarray]:
    arrays, head = None, b""
    try:
        if zipfile.is_zipfile(path):
            with np.load(path, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
        else:
            with open(path, "rb") as f:
                head = f.read(6)
    except Exception as e:   # a damaged member fails anywhere in numpy's parser (zlib, CRC, header syntax)
        raise TraceError(f"{path}: cannot read as an .npz trace ({type(e).__name__}: {e})") from e
    if arrays is None:
        what = "a single .npy array" if head == b"\x93NUMPY" else "not a (complete) zip archive"
        raise TraceError(f"{path}: not an .npz trace: {what} (write traces with np.savez)")
    bad = [key for key, array in arrays.items() if not isinstance(array, np.ndarray)]
    if bad:
        raise TraceError(f"{path}: member {bad[0]!r} is not a .npy array: not an .npz trace")
    return arrays


def load_trace(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read a trace `.npz`: (tensors keyed by node name in file order, metadata dict). Raises TraceError."""
    arrays = _read_npz(path)
    tensors, meta = {}, {}
    for key, array in arrays.items():
        if key == META_PREFIX + "json":
            meta.update(_parse_meta_json(path, array))
        elif key.startswith(META_PREFIX):
            meta[key[len(META_PREFIX):]] = _meta_value(array)
        elif array.dtype.kind not in "biuf":
            raise TraceError(f"{path}: tensor {key!r} has dtype {array.dtype}; traces hold numbers only "
                             f"(put text under a '{META_PREFIX}' key)")
        else:
            name = key.removesuffix(":0")
            if name in tensors:
                raise TraceError(f"{path}: both {name!r} and {name + ':0'!r} present")
            tensors[name] = array
    if not tensors:
        raise TraceError(f"{path}: no tensors in this trace (only metadata)")
    return tensors, meta


def _parse_meta_json(path, array: np.ndarray) -> dict:
    try:
        meta = json.loads(_meta_value(array))
    except (TypeError, json.JSONDecodeError) as e:
        raise TraceError(f"{path}: {META_PREFIX}json is not a JSON string ({e})") from e
    if not isinstance(meta, dict):
        raise TraceError(f"{path}: {META_PREFIX}json must hold a JSON object, not {type(meta).__name__}")
    return meta


# ------------------------------------------------------------------------------------ layout differences
# A shape fix maps (ref, cand) to arrays of equal shape; a value fix maps equal-shape arrays to the pair to
# compare. Each returns None when it does not apply to these tensors.

def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _same_shape(name, r, c):
    return (r, c) if c.shape == r.shape else None


def _from_nchw(name, r, c):
    if r.ndim == 4 and c.shape == (r.shape[0], r.shape[3], r.shape[1], r.shape[2]):
        return r, c.transpose(0, 2, 3, 1)
    return None


def _from_squeezed(name, r, c):
    squeeze = [d for d in r.shape if d != 1] == [d for d in c.shape if d != 1]
    return (r, c.reshape(r.shape)) if c.shape != r.shape and squeeze else None


def _from_xy(name, r, c):
    return (r, c[..., [1, 0, 3, 2]]) if r.ndim >= 2 and r.shape[-1] == 4 else None


def _from_bgr(name, r, c):
    return (r, c[..., ::-1]) if r.ndim == 4 and r.shape[-1] == 3 else None


def _from_zero_based(name, r, c):
    return (r, c + 1) if "classes" in name else None


def _from_plus_one(name, r, c):
    return (r, c - 1) if "classes" in name else None


def _in_unit_interval(x: np.ndarray) -> bool:
    return x.size > 0 and bool(x.min() >= 0) and bool(x.max() <= 1)


def _from_scores(name, r, c):
    return (_sigmoid(r), c) if _in_unit_interval(c) else None


def _from_logits(name, r, c):
    return (r, _sigmoid(c)) if _in_unit_interval(r) else None


Fix = Callable[[str, np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray] | None"]
SHAPE_FIXES: list[tuple[str, Fix]] = [("", _same_shape), ("NCHW", _from_nchw), ("squeezed", _from_squeezed)]
VALUE_FIXES: list[tuple[str, Fix]] = [("", lambda name, r, c: (r, c)), ("xy", _from_xy), ("BGR", _from_bgr),
                                      ("0-based", _from_zero_based), ("+1", _from_plus_one),
                                      ("scores", _from_scores), ("logits", _from_logits)]


def _close(r: np.ndarray, c: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    return np.isclose(c, r, rtol=rtol, atol=atol, equal_nan=True)


def _differences(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """|c - r| elementwise, 0 where both are equal (infs, NaN against NaN), inf for NaN against a number."""
    same = (c == r) | (np.isnan(c) & np.isnan(r))
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(c - r))
    diff[np.isnan(diff)] = np.inf
    return diff


def sqnr_db(r: np.ndarray, c: np.ndarray, diff: np.ndarray | None = None) -> float:
    """Signal-to-quantization-noise ratio 10 log10(sum r^2 / sum (c - r)^2) in dB (float64; non-finite reference
    values count as zero signal; `diff`: `_differences(r, c)` if already computed): inf for identical tensors,
    -inf when the reference is zero and c is not."""
    diff = _differences(r, c) if diff is None else diff
    noise = float(np.sum(diff * diff))
    finite_r = r if np.isfinite(r).all() else np.where(np.isfinite(r), r, 0.0)
    signal = float(np.sum(finite_r * finite_r))
    if noise == 0:
        return np.inf
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(signal / noise))


def cosine(r: np.ndarray, c: np.ndarray) -> float:
    """Cosine similarity <r, c> / (|r| |c|) over the elements finite in both (float64): 1 for equal
    directions; 1 when both are zero, 0 when only one is. (Sums of products, not BLAS: no thread pool.)"""
    finite = np.isfinite(r) & np.isfinite(c)
    rf, cf = (r, c) if finite.all() else (r[finite], c[finite])
    norms = float(np.sqrt(np.sum(rf * rf)) * np.sqrt(np.sum(cf * cf)))
    if norms == 0:
        return 1.0 if not rf.any() and not cf.any() else 0.0
    return float(np.clip(np.sum(rf * cf) / norms, -1.0, 1.0))


def _meets(preset: Preset, r: np.ndarray, c: np.ndarray, close: np.ndarray, sqnr: float | None = None) -> bool:
    if preset.min_sqnr_db is None:
        return bool(close.all())
    sqnr = sqnr_db(r, c) if sqnr is None else sqnr
    return sqnr >= preset.min_sqnr_db and cosine(r, c) >= preset.min_cosine


def within(r: np.ndarray, c: np.ndarray, preset: Preset) -> bool:
    """Whether c is close enough to r under `preset`: the elementwise rule, or SQNR and cosine."""
    return _meets(preset, r, c, _close(r, c, preset.atol, preset.rtol))


def _align(name: str, r: np.ndarray, c: np.ndarray, preset: Preset):
    """The layout under which c matches r: (layout name, r', c'). When none matches, the plain shape fix
    (identity, else NCHW, else squeezed) with its name; None when the shapes cannot be reconciled."""
    fallback = None
    for shape_name, shape_fix in SHAPE_FIXES:
        pair = shape_fix(name, r, c)
        if pair is None:
            continue
        fallback = fallback or (shape_name, *pair)
        for value_name, value_fix in VALUE_FIXES:
            fixed = value_fix(name, *pair)
            if fixed is not None and within(*fixed, preset):
                return "+".join(n for n in (shape_name, value_name) if n), *fixed
    return fallback


def in_reference_shape(name: str, r: np.ndarray, c: np.ndarray) -> np.ndarray | None:
    """The candidate's tensor in the reference's shape, with only the shape conventions undone (NCHW,
    size-1 dimensions): the values the candidate's next node consumed. None when the shapes do not reconcile."""
    for _, shape_fix in SHAPE_FIXES:
        pair = shape_fix(name, r, c)
        if pair is not None:
            return pair[1]
    return None


def _affine_hint(r: np.ndarray, c: np.ndarray, preset: Preset) -> str | None:
    """'candidate = a * reference + b' when that explains the tensor within tolerance, else None."""
    finite = np.isfinite(r) & np.isfinite(c)
    if not finite.all() or r.size < 2 or r.std() == 0:
        return None
    scale = float(r.ravel() @ c.ravel() / (r.ravel() @ r.ravel()))
    if within(scale * r, c, preset):
        return f"candidate = {scale:.4g} * reference"
    a = float(((r - r.mean()) * (c - c.mean())).mean() / r.var())
    b = float(c.mean() - a * r.mean())
    if within(a * r + b, c, preset):
        return f"candidate = {a:.4g} * reference {'+-'[b < 0]} {abs(b):.4g}"
    return None


# ------------------------------------------------------------------------------------------ comparison

@dataclass
class TensorResult:
    """One tensor of the reference: its comparison with the candidate's tensor of the same name."""

    index: int                       # 1-based position in the reference (graph order)
    name: str
    shape: tuple[int, ...]           # reference shape
    candidate_shape: tuple[int, ...] | None = None   # None: not in the candidate
    status: str = "missing"          # "ok" | "layout" | "fail" | "shape" | "missing"
    layout: str = ""                 # layout difference undone before measuring, e.g. "NCHW" or "NCHW+BGR"
    hint: str = ""                   # a diagnosis of a failure, e.g. "candidate = 1.5 * reference"
    max_abs: float | None = None
    max_rel: float | None = None
    mismatch: float | None = None    # fraction of elements outside the elementwise rule
    cosine: float | None = None
    sqnr_db: float | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "shape")


def compare_tensor(index: int, name: str, r: np.ndarray, c: np.ndarray, preset: Preset) -> TensorResult:
    """Compare one tensor (reference r, candidate c), undoing a layout difference when one explains it."""
    result = TensorResult(index, name, tuple(r.shape), tuple(c.shape))
    aligned = _align(name, r.astype(np.float64), c.astype(np.float64), preset)
    if aligned is None:
        result.status = "shape"
        return result
    result.layout, r, c = aligned
    close = _close(r, c, preset.atol, preset.rtol)
    diff = _differences(r, c)
    result.max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.nanmax(np.abs(r))) if r.size and not np.isnan(r).all() else 0.0
    result.max_rel = result.max_abs / max(scale, TINY)
    result.mismatch = float(1.0 - close.mean()) if close.size else 0.0
    result.cosine, result.sqnr_db = cosine(r, c), sqnr_db(r, c, diff)
    if not _meets(preset, r, c, close, result.sqnr_db):
        result.status = "fail"
        result.hint = _affine_hint(r, c, preset) or ""
    else:
        result.status = "layout" if result.layout else "ok"
    return result


ACCEPTED = ("ok", "detections")   # "detections": judged by the detection verdict (with --preset), which passed


def judge_at_detection_level(results: Iterable[TensorResult], verdicts: list) -> None:
    """With --preset: the final outputs of each format that got a detection verdict are judged by it (matched
    by class and IoU, so NMS tie order or a borderline detection does not fail them): their numeric failures
    become status "detections". Layout and shape differences stay failures."""
    judged = {name for verdict in verdicts for name in verdict.tensors}
    for t in results:
        if t.name in judged and t.status == "fail":
            t.status = "detections"


def add_detection_verdicts(report: "Report", reference: Mapping[str, np.ndarray],
                           candidate: Mapping[str, np.ndarray]) -> None:
    """`report.detections` for every output format both traces allow; with `judge_detections` the final
    outputs are judged by them."""
    report.detections = detection_verdicts(reference, candidate, report.preset)
    if report.judge_detections:
        judge_at_detection_level(report.results, report.detections)


@dataclass
class Report:
    """The comparison of two traces; `format_table()` for people, `to_json()` for machines.

    The fields after `candidate_label` come with the newer options: `extended` (cosine and SQNR columns and the
    sections below, set by any of --preset, --isolate, --html), `judge_detections` (--preset: the final outputs
    are judged by the detection verdicts instead of element by element), `detections` (DetectionVerdict per
    output format), `local` and `local_detections` (--isolate: each candidate tensor against the reference
    node recomputed from the candidate's own inputs), `isolation` (what --isolate ran on)."""

    preset: Preset
    results: list[TensorResult]                 # every reference tensor, in reference (graph) order
    only_candidate: list[str]
    missing_required: list[str]
    meta_reference: dict = field(default_factory=dict)
    meta_candidate: dict = field(default_factory=dict)
    reference_label: str = "reference"
    candidate_label: str = "candidate"
    extended: bool = False
    judge_detections: bool = False
    detections: list = field(default_factory=list)
    local: dict[str, TensorResult] = field(default_factory=dict)
    local_detections: list = field(default_factory=list)
    isolation: dict = field(default_factory=dict)

    @property
    def atol(self) -> float:
        return self.preset.atol

    @property
    def rtol(self) -> float:
        return self.preset.rtol

    @property
    def compared(self) -> list[TensorResult]:
        return [t for t in self.results if t.status != "missing"]

    @property
    def only_reference(self) -> list[str]:
        return [t.name for t in self.results if t.status == "missing"]

    @property
    def first_failure(self) -> TensorResult | None:
        """The first tensor, in graph order, outside tolerance (after undoing layouts): where divergence starts."""
        return next((t for t in self.results if t.failed), None)

    @property
    def layouts(self) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for t in self.results:
            if t.layout:
                found.setdefault(t.layout, []).append(t.name)
        return found

    @property
    def meta_differences(self) -> list[str]:
        """Metadata hashes (keys containing sha256 or hash) present in both files with different values."""
        ref, cand = _flatten(self.meta_reference), _flatten(self.meta_candidate)
        return [k for k in ref if k in cand and _is_hash(k) and ref[k] != cand[k]]

    @property
    def local_failures(self) -> list[TensorResult]:
        """--isolate: the tensors whose own node is wrong (not only its inputs), in graph order."""
        return [t for t in self.local.values() if t.status not in ACCEPTED]

    @property
    def passed(self) -> bool:
        return (not self.missing_required and all(t.status in ACCEPTED for t in self.compared)
                and all(verdict.passed for verdict in self.detections if self.judge_detections))

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def format_table(self) -> str:
        return _format_report(self)

    def to_dict(self) -> dict:
        return _report_dict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _is_hash(key: str) -> bool:
    return "sha256" in key or "hash" in key


def _flatten(meta: Mapping, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in meta.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def required_outputs(candidate: Mapping[str, np.ndarray], meta: Mapping | None = None) -> tuple[str, ...]:
    """The final outputs a candidate must have when the reference has them: its model's own outputs when its
    metadata lists them (`model_outputs`, written by `ssd-np capture`: e.g. `concat`, `concat_1` for a model cut
    before post-processing); otherwise TF's four, or OpenVINO's `DetectionOutput` for a candidate in that format
    (one with DetectionOutput and none of TF's four)."""
    listed = (meta or {}).get("model_outputs")
    if isinstance(listed, list) and listed and all(isinstance(name, str) for name in listed):
        return tuple(listed)
    if OPENVINO_OUTPUT in candidate and not any(name in candidate for name in FINAL_OUTPUTS):
        return (OPENVINO_OUTPUT,)
    return FINAL_OUTPUTS


def compare_traces(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                   atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                   required: Iterable[str] | None = None, preset: Preset | None = None) -> Report:
    """Compare every tensor of `reference` (in its key order, taken as graph order) with `candidate`.

    `preset`: the tolerance (default: the elementwise rule with `atol`, `rtol`). `required`: names that must be
    in the candidate when the reference has them (default: `required_outputs(candidate)`).
    Raises TraceError when the traces share no tensor name or a tolerance is negative.
    """
    preset = preset or elementwise(atol, rtol)
    required = required_outputs(candidate) if required is None else required
    if not (preset.atol >= 0 and preset.rtol >= 0):
        raise TraceError(f"tolerances must be >= 0 (got atol={preset.atol}, rtol={preset.rtol})")
    if not set(reference) & set(candidate):
        raise TraceError("the two traces have no tensor name in common: are they traces of this model, keyed "
                         f"by graph node name? (reference has e.g. {list(reference)[:3]}, "
                         f"candidate has e.g. {list(candidate)[:3]})")
    results = []
    for index, (name, r) in enumerate(reference.items(), start=1):
        if name in candidate:
            results.append(compare_tensor(index, name, np.asarray(r), np.asarray(candidate[name]), preset))
        else:
            results.append(TensorResult(index, name, tuple(np.shape(r))))
    only_candidate = [name for name in candidate if name not in reference]
    missing = [name for name in required if name in reference and name not in candidate]
    return Report(preset, results, only_candidate, missing)


# ---------------------------------------------------------------------------------------------- output

def _shape_text(shape) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _status_text(t: TensorResult) -> str:
    status = {"ok": "ok", "layout": t.layout, "fail": "FAIL", "shape": "SHAPE"}[t.status]
    if t.status == "fail" and t.layout:
        status += f" [{t.layout}]"
    if t.status == "shape":
        status += f" candidate {_shape_text(t.candidate_shape)}"
    return status + (f"  ({t.hint})" if t.hint else "")


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _local_text(local: TensorResult | None) -> str:
    if local is None:
        return "-"
    if local.status in ACCEPTED:
        return "ok"
    return "LOCAL " + {"layout": local.layout, "fail": "FAIL", "shape": "SHAPE"}[local.status]


def _row(t: TensorResult, width: int, marker: str, report: Report) -> str:
    mismatch = "-" if t.mismatch is None else f"{100 * t.mismatch:.3g}%"
    row = (f"{marker} {t.index:>3}  {t.name:<{width}}  {_shape_text(t.shape):>14}  "
           f"{_number(t.max_abs, '9.2e'):>9}  {_number(t.max_rel, '9.2e'):>9}  ")
    if not report.extended:
        return row + f"{mismatch:>8}  {_status_text(t)}"
    row += f"{_number(t.cosine, '.6f'):>8}  {_number(t.sqnr_db, '7.1f'):>7}  {mismatch:>8}  "
    if report.local:
        local = report.local.get(t.name)
        row += f"{_number(local and local.sqnr_db, '7.1f'):>7}  {_local_text(local):<10}  "
    status = "detections" if t.status == "detections" else _status_text(t)
    return row + status


def _marker(report: Report, t: TensorResult, first: TensorResult | None) -> str:
    """`>>` where divergence starts; `!!` a local failure (--isolate); `>!` both."""
    local = report.local.get(t.name)
    local_failure = local is not None and local.status not in ACCEPTED
    return {(True, False): ">>", (False, True): "!!", (True, True): ">!"}.get((t is first, local_failure), "  ")


def _table_rows(report: Report, width: int) -> list[str]:
    """One row per compared tensor; a run of tensors missing from the candidate becomes one line."""
    first = report.first_failure
    lines = []
    for missing, run in itertools.groupby(report.results, key=lambda t: t.status == "missing"):
        run = list(run)
        if missing:
            span = f"#{run[0].index}" + (f"-{run[-1].index}" if len(run) > 1 else "")
            lines.append(f"{'':8}... {len(run)} tensor(s) not in the candidate ({span})")
        else:
            lines += [_row(t, width, _marker(report, t, first), report) for t in run]
    return lines


def _table_header(report: Report, width: int) -> str:
    head = f"   {'#':>3}  {'tensor':<{width}}  {'shape':>14}  {'max abs':>9}  {'max rel':>9}  "
    if report.extended:
        head += f"{'cosine':>8}  {'SQNR dB':>7}  "
    head += f"{'mismatch':>8}  "
    if report.local:
        head += f"{'local dB':>7}  {'local':<10}  "
    return head + "status"


def _extended_lines(report: Report) -> list[str]:
    """The sections of the newer options: isolation, detection verdicts, the pre-NMS tensors."""
    lines: list[str] = []
    if not report.extended:
        return lines
    if report.local:
        first = report.first_failure
        lines.append(f"isolation (--isolate): each candidate tensor against the reference node recomputed from the "
                     f"candidate's own inputs ({report.isolation.get('image')}, {report.isolation.get('weights')})")
        failures = report.local_failures
        index = {r.name: r.index for r in report.results}
        for t in failures:
            lines.append(f"!! local failure #{index[t.name]} {t.name}: local max rel {_number(t.max_rel, '.3g')}, "
                         f"SQNR {_number(t.sqnr_db, '.1f')} dB" + (f" [{t.layout}]" if t.layout else "")
                         + (f"; {t.hint}" if t.hint else ""))
        if not failures:
            lines.append("   no local failure: every difference from the reference is inherited from the inputs")
        if first is not None and first.name in report.local:
            own = report.local[first.name].status not in ACCEPTED
            lines.append(f"   the first divergence ({first.name}) is {'local' if own else 'inherited'}; "
                         f"{len(failures)} local failure(s) in {len(report.local)} isolated tensors")
    for verdict in report.detections:
        lines.append(f"detections ({verdict.format} format; the candidate's from {verdict.source}): "
                     + verdict.summary())
        for m in verdict.disagreeing[:10]:
            lines.append(f"   class {m.label}: reference #{m.reference} / candidate #{m.candidate}: IoU {m.iou:.4f}, "
                         f"score delta {m.score_delta:+.3g}, box delta {m.box_delta:.3g}")
        for kind, indices, side in (("unmatched", verdict.unmatched, verdict.reference),
                                    ("extra", verdict.extra, verdict.candidate)):
            for i in indices[:10]:
                lines.append(f"   {kind}: class {side.classes[i]} score {side.scores[i]:.4f}"
                             + (" (borderline)" if verdict.borderline(side, i) else ""))
    for verdict in report.local_detections:
        lines.append("post-processing alone (the candidate's outputs against ssd_np's post-processing of the "
                     "candidate's own concat, concat_1): " + verdict.summary())
    pre_nms = [t for t in report.compared if t.name in ("concat", "concat_1")]
    for t in pre_nms:
        lines.append(f"pre-NMS {t.name}: {_status_text(t)}, max rel {_number(t.max_rel, '.3g')}, "
                     f"cosine {_number(t.cosine, '.6f')}, SQNR {_number(t.sqnr_db, '.1f')} dB")
    return lines


def _meta_line(label: str, meta: dict) -> str:
    flat = _flatten(meta)
    text = ", ".join(f"{k}={v}" for k, v in flat.items() if not _is_hash(k))
    return f"{label}: {text[:160] or '(no metadata)'}"


def _summary(report: Report) -> str:
    compared = report.compared
    failed = [t for t in compared if t.failed]
    layout = [t for t in compared if t.layout]
    within_text = (f"atol={report.atol:g}, rtol={report.rtol:g}" if not report.extended else
                   f"the {report.preset.name} preset ({report.preset.rule})")
    if report.passed:
        return (f"PASS: all {len(compared)} common tensors within {within_text}"
                + (f" ({len(report.only_reference)} not in the candidate)" if report.only_reference else ""))
    parts = [f"{len(failed)} of {len(compared)} common tensors outside tolerance"]
    if layout:
        parts.append(f"{len(layout)} with a layout difference")
    if report.missing_required:
        parts.append(f"required output(s) missing from the candidate: {', '.join(report.missing_required)}")
    if report.judge_detections:
        parts += [f"{v.format} detections disagree" for v in report.detections if not v.passed]
    if report.local:
        names = [t.name for t in report.local_failures]
        parts.append(f"{len(names)} local failure(s)" + (f": {', '.join(names[:5])}" if names else ""))
    return "FAIL: " + "; ".join(parts)


def _format_report(report: Report) -> str:
    width = max([len(t.name) for t in report.compared] + [6])
    lines = [f"reference: {report.reference_label}", f"candidate: {report.candidate_label}",
             _meta_line("  reference meta", report.meta_reference),
             _meta_line("  candidate meta", report.meta_candidate),
             f"tolerance: |c - r| <= {report.atol:g} + {report.rtol:g} * |r|;  max rel = max|c - r| / max|r|", "",
             _table_header(report, width)]
    if report.extended:
        lines[4] = (f"tolerance: preset {report.preset.name}: {report.preset.rule};  max rel = max|c - r| / max|r|; "
                    f"SQNR = 10 log10(sum r^2 / sum (c - r)^2)")
    lines += _table_rows(report, width)
    lines.append("")
    first = report.first_failure
    if first is not None:
        detail = (f"max abs {first.max_abs:.3g}, {100 * first.mismatch:.3g}% of elements outside tolerance"
                  if first.status == "fail" else
                  f"shape {_shape_text(first.candidate_shape)}, reference {_shape_text(first.shape)}")
        lines.append(f">> divergence starts at #{first.index} {first.name} ({detail})"
                     + (f"; {first.hint}" if first.hint else ""))
    elif report.layouts:
        lines.append("no numeric divergence once the layout differences are undone")
    if report.layouts:
        lines.append("layout differences (each tensor compared after undoing its own):")
    for layout, names in report.layouts.items():
        described = "; ".join(LAYOUTS[part] for part in layout.split("+"))
        lines.append(f"  {layout}: {described} ({len(names)} tensor(s), first {names[0]})")
    if report.only_candidate:
        lines.append(f"only in the candidate ({len(report.only_candidate)}): {', '.join(report.only_candidate)}")
    if report.meta_differences:
        lines.append("note: the traces come from different inputs or weights? metadata differs: "
                     + ", ".join(report.meta_differences))
    lines += _extended_lines(report)
    lines.append(_summary(report))
    return "\n".join(lines)


def _json_number(value: float | None) -> float | str | None:
    return value if value is None or np.isfinite(value) else str(value)


def _tensor_dict(t: TensorResult) -> dict:
    return {"index": t.index, "name": t.name, "shape": list(t.shape), "candidate_shape": list(t.candidate_shape),
            "status": t.status, "layout": t.layout, "hint": t.hint, "max_abs": _json_number(t.max_abs),
            "max_rel": _json_number(t.max_rel), "mismatch_fraction": t.mismatch}


def _extended_tensor_dict(t: TensorResult, report: Report) -> dict:
    row = {**_tensor_dict(t), "cosine": t.cosine, "sqnr_db": _json_number(t.sqnr_db)}
    if report.local:
        local = report.local.get(t.name)
        row["local"] = None if local is None else {
            key: value for key, value in {**_tensor_dict(local), "cosine": local.cosine,
                                          "sqnr_db": _json_number(local.sqnr_db)}.items()
            if key not in ("index", "name", "shape", "candidate_shape")}
    return row


def _extended_dict(report: Report) -> dict:
    """The JSON fields of the newer options (--preset, --isolate, --html)."""
    preset = report.preset
    return {
        "preset": {"name": preset.name, "rule": preset.rule, "atol": preset.atol, "rtol": preset.rtol,
                   "min_sqnr_db": preset.min_sqnr_db, "min_cosine": preset.min_cosine,
                   "score_atol": preset.score_atol, "box_atol": preset.box_atol, "match_iou": preset.match_iou},
        "judge_detections": report.judge_detections,
        "tensors": [_extended_tensor_dict(t, report) for t in report.compared],
        "detections": [v.to_dict() for v in report.detections],
        "isolation": report.isolation or None,
        "local_failures": [t.name for t in report.local_failures],
        "local_detections": [v.to_dict() for v in report.local_detections],
    }


def _report_dict(report: Report) -> dict:
    first = report.first_failure
    return {
        "format": "ssd_np-compare", "format_version": 1,
        "reference": {"label": report.reference_label, "meta": report.meta_reference},
        "candidate": {"label": report.candidate_label, "meta": report.meta_candidate},
        "atol": report.atol, "rtol": report.rtol,
        "rule": "|c - r| <= atol + rtol * |r|; max_rel = max|c - r| / max|r|",
        "passed": report.passed, "exit_code": report.exit_code,
        "first_failure": None if first is None else first.name,
        "tensors": [_tensor_dict(t) for t in report.compared],
        "layouts": report.layouts,
        "only_in_reference": report.only_reference,
        "only_in_candidate": report.only_candidate,
        "missing_required": report.missing_required,
        "metadata_differs": report.meta_differences,
        **(_extended_dict(report) if report.extended else {}),
    }


Extend = Callable[[Report, dict, dict], None]


def main_compare(ref_path, cand_path, atol: float | None = None, rtol: float | None = None, json_out=None,
                 out: TextIO | None = None, err: TextIO | None = None, preset: Preset | None = None,
                 extend: Extend | None = None, html: tuple[str, Callable[[Report], str]] | None = None) -> int:
    """`ssd-np compare`: print the report to `out`, write JSON to `json_out` if given; return the exit status
    (0 pass, 1 mismatch, 2 bad input, with the reason on `err`).

    The newer options: `preset` (--preset; `atol`, `rtol` override its elementwise rule), `extend(report,
    reference, candidate)` (adds detection verdicts and isolation: `ssd_np.verify.diagnosis`), `html` = (path,
    render(report) -> text) for --html. Any of them makes the report `extended`."""
    out, err = out or sys.stdout, err or sys.stderr   # looked up at call time (pytest swaps them)
    tolerance = preset or FP32
    given = {key: value for key, value in (("atol", atol), ("rtol", rtol)) if value is not None}
    if given:
        tolerance = replace(tolerance, name=f"{tolerance.name} with {', '.join(given)} given", **given)
    try:
        reference, meta_reference = load_trace(ref_path)
        candidate, meta_candidate = load_trace(cand_path)
        report = compare_traces(reference, candidate, preset=tolerance,
                                required=required_outputs(candidate, meta_candidate))
        report.meta_reference, report.meta_candidate = meta_reference, meta_candidate
        report.reference_label, report.candidate_label = str(ref_path), str(cand_path)
        report.extended = bool(preset or extend or html)
        report.judge_detections = preset is not None
        if report.extended:
            add_detection_verdicts(report, reference, candidate)
        if extend is not None:
            extend(report, reference, candidate)
        pages = {json_out: lambda: report.to_json() + "\n"} if json_out is not None else {}
        if html is not None:
            pages[html[0]] = lambda: html[1](report)
        texts = {path: render() for path, render in pages.items()}
    except TraceError as e:
        print(f"ssd-np compare: error: {e}", file=err)
        return 2
    print(report.format_table(), file=out)
    for path, text in texts.items():
        try:
            write_atomic(path, text.encode("utf-8"))
        except OSError as e:
            what = "JSON report" if path == json_out else "report"
            print(f"ssd-np compare: error: cannot write the {what} {path}: {e}", file=err)
            return 2
    return report.exit_code
