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
weight, a missing bias) moves a layer by 1e-2 of its scale or more. Quantized models need a looser
`--atol` (e.g. 0.05).

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

Exit status (`main_compare`): 0 when every common tensor is within tolerance, no layout difference was found and
no final output present in the reference (`FINAL_OUTPUTS`) is missing from the candidate; 1 otherwise; 2 for bad
input (unreadable file, not an npz trace, no common tensors) with a message naming the problem.
"""
from __future__ import annotations

import itertools
import json
import sys
import zipfile
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, TextIO

import numpy as np

from ssd_np.atomic import write_atomic

DEFAULT_ATOL = 5e-4
DEFAULT_RTOL = 1e-4
META_PREFIX = "__meta__/"
FINAL_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
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


def _align(name: str, r: np.ndarray, c: np.ndarray, atol: float, rtol: float):
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
            if fixed is not None and _close(*fixed, atol, rtol).all():
                return "+".join(n for n in (shape_name, value_name) if n), *fixed
    return fallback


def _affine_hint(r: np.ndarray, c: np.ndarray, atol: float, rtol: float) -> str | None:
    """'candidate = a * reference + b' when that explains every element within tolerance, else None."""
    finite = np.isfinite(r) & np.isfinite(c)
    if not finite.all() or r.size < 2 or r.std() == 0:
        return None
    scale = float(r.ravel() @ c.ravel() / (r.ravel() @ r.ravel()))
    if _close(scale * r, c, atol, rtol).all():
        return f"candidate = {scale:.4g} * reference"
    a = float(((r - r.mean()) * (c - c.mean())).mean() / r.var())
    b = float(c.mean() - a * r.mean())
    if _close(a * r + b, c, atol, rtol).all():
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
    mismatch: float | None = None    # fraction of elements outside tolerance

    @property
    def failed(self) -> bool:
        return self.status in ("fail", "shape")


def compare_tensor(index: int, name: str, r: np.ndarray, c: np.ndarray, atol: float, rtol: float) -> TensorResult:
    """Compare one tensor (reference r, candidate c), undoing a layout difference when one explains it."""
    result = TensorResult(index, name, tuple(r.shape), tuple(c.shape))
    aligned = _align(name, r.astype(np.float64), c.astype(np.float64), atol, rtol)
    if aligned is None:
        result.status = "shape"
        return result
    result.layout, r, c = aligned
    close = _close(r, c, atol, rtol)
    same = (c == r) | (np.isnan(c) & np.isnan(r))                  # equal infs and NaN against NaN: 0
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(c - r))
    diff[np.isnan(diff)] = np.inf                                    # NaN against a number
    result.max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.nanmax(np.abs(r))) if r.size and not np.isnan(r).all() else 0.0
    result.max_rel = result.max_abs / max(scale, TINY)
    result.mismatch = float(1.0 - close.mean()) if close.size else 0.0
    if not close.all():
        result.status = "fail"
        result.hint = _affine_hint(r, c, atol, rtol) or ""
    else:
        result.status = "layout" if result.layout else "ok"
    return result


@dataclass
class Report:
    """The comparison of two traces; `format_table()` for people, `to_json()` for machines."""

    atol: float
    rtol: float
    results: list[TensorResult]                 # every reference tensor, in reference (graph) order
    only_candidate: list[str]
    missing_required: list[str]
    meta_reference: dict = field(default_factory=dict)
    meta_candidate: dict = field(default_factory=dict)
    reference_label: str = "reference"
    candidate_label: str = "candidate"

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
    def passed(self) -> bool:
        return not self.missing_required and all(t.status == "ok" for t in self.compared)

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


def compare_traces(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                   atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL,
                   required: Iterable[str] = FINAL_OUTPUTS) -> Report:
    """Compare every tensor of `reference` (in its key order, taken as graph order) with `candidate`.

    `required`: names that must be in the candidate when the reference has them (default: TF's four outputs).
    Raises TraceError when the traces share no tensor name or a tolerance is negative.
    """
    if not (atol >= 0 and rtol >= 0):
        raise TraceError(f"tolerances must be >= 0 (got atol={atol}, rtol={rtol})")
    if not set(reference) & set(candidate):
        raise TraceError("the two traces have no tensor name in common: are they traces of this model, keyed "
                         f"by graph node name? (reference has e.g. {list(reference)[:3]}, "
                         f"candidate has e.g. {list(candidate)[:3]})")
    results = []
    for index, (name, r) in enumerate(reference.items(), start=1):
        if name in candidate:
            results.append(compare_tensor(index, name, np.asarray(r), np.asarray(candidate[name]), atol, rtol))
        else:
            results.append(TensorResult(index, name, tuple(np.shape(r))))
    only_candidate = [name for name in candidate if name not in reference]
    missing = [name for name in required if name in reference and name not in candidate]
    return Report(atol, rtol, results, only_candidate, missing)


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


def _row(t: TensorResult, width: int, marker: str) -> str:
    mismatch = "-" if t.mismatch is None else f"{100 * t.mismatch:.3g}%"
    return (f"{marker} {t.index:>3}  {t.name:<{width}}  {_shape_text(t.shape):>14}  "
            f"{_number(t.max_abs, '9.2e'):>9}  {_number(t.max_rel, '9.2e'):>9}  {mismatch:>8}  {_status_text(t)}")


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
            lines += [_row(t, width, ">>" if t is first else "  ") for t in run]
    return lines


def _meta_line(label: str, meta: dict) -> str:
    flat = _flatten(meta)
    text = ", ".join(f"{k}={v}" for k, v in flat.items() if not _is_hash(k))
    return f"{label}: {text[:160] or '(no metadata)'}"


def _summary(report: Report) -> str:
    compared = report.compared
    failed = [t for t in compared if t.failed]
    layout = [t for t in compared if t.layout]
    if report.passed:
        return (f"PASS: all {len(compared)} common tensors within atol={report.atol:g}, rtol={report.rtol:g}"
                + (f" ({len(report.only_reference)} not in the candidate)" if report.only_reference else ""))
    parts = [f"{len(failed)} of {len(compared)} common tensors outside tolerance"]
    if layout:
        parts.append(f"{len(layout)} with a layout difference")
    if report.missing_required:
        parts.append(f"required output(s) missing from the candidate: {', '.join(report.missing_required)}")
    return "FAIL: " + "; ".join(parts)


def _format_report(report: Report) -> str:
    width = max([len(t.name) for t in report.compared] + [6])
    lines = [f"reference: {report.reference_label}", f"candidate: {report.candidate_label}",
             _meta_line("  reference meta", report.meta_reference),
             _meta_line("  candidate meta", report.meta_candidate),
             f"tolerance: |c - r| <= {report.atol:g} + {report.rtol:g} * |r|;  max rel = max|c - r| / max|r|", "",
             f"   {'#':>3}  {'tensor':<{width}}  {'shape':>14}  {'max abs':>9}  {'max rel':>9}  "
             f"{'mismatch':>8}  status"]
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
    lines.append(_summary(report))
    return "\n".join(lines)


def _json_number(value: float | None) -> float | str | None:
    return value if value is None or np.isfinite(value) else str(value)


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
        "tensors": [{"index": t.index, "name": t.name, "shape": list(t.shape),
                     "candidate_shape": list(t.candidate_shape), "status": t.status, "layout": t.layout,
                     "hint": t.hint, "max_abs": _json_number(t.max_abs), "max_rel": _json_number(t.max_rel),
                     "mismatch_fraction": t.mismatch}
                    for t in report.compared],
        "layouts": report.layouts,
        "only_in_reference": report.only_reference,
        "only_in_candidate": report.only_candidate,
        "missing_required": report.missing_required,
        "metadata_differs": report.meta_differences,
    }


def main_compare(ref_path, cand_path, atol: float = DEFAULT_ATOL, rtol: float = DEFAULT_RTOL, json_out=None,
                 out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`ssd-np compare`: print the report to `out`, write JSON to `json_out` if given; return the exit status
    (0 pass, 1 mismatch, 2 bad input, with the reason on `err`)."""
    try:
        reference, meta_reference = load_trace(ref_path)
        candidate, meta_candidate = load_trace(cand_path)
        report = compare_traces(reference, candidate, atol, rtol)
    except TraceError as e:
        print(f"ssd-np compare: error: {e}", file=err)
        return 2
    report.meta_reference, report.meta_candidate = meta_reference, meta_candidate
    report.reference_label, report.candidate_label = str(ref_path), str(cand_path)
    print(report.format_table(), file=out)
    if json_out is not None:
        try:
            write_atomic(json_out, (report.to_json() + "\n").encode())
        except OSError as e:
            print(f"ssd-np compare: error: cannot write the JSON report {json_out}: {e}", file=err)
            return 2
    return report.exit_code
