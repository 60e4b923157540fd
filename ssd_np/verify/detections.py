"""The detection-level verdict of `ssd-np compare`: do the candidate's detections agree with the reference's?

Comparing `detection_boxes` row by row fails on differences that do not matter: two detections of equal score
may come out of NMS in either order, and a detection whose score sits on the 0.3 threshold may be kept by one
runtime and dropped by another. Here detections are matched as sets:

1. Each side's detections (`Detections`) are read from its final outputs: TF's four (`detection_boxes`
   `[ymin, xmin, ymax, xmax]`, `detection_scores`, `detection_classes` 1..90, the first `num_detections` rows),
   or OpenVINO's `DetectionOutput` rows `[image_id, label, conf, xmin, ymin, xmax, ymax]` up to the first
   image_id -1. A candidate without final outputs but with `concat` and `concat_1` (a model cut before
   post-processing, e.g. a TFLite build) gets ssd_np's post-processing of its own `concat`, `concat_1`.
2. Matching: every (reference, candidate) pair of the same class with IoU >= `preset.match_iou`, taken in order
   of decreasing IoU, pairs the two if both are still free (greedy maximum-IoU matching; not list order).
3. A pair agrees when |score delta| <= `preset.score_atol` and every box coordinate moved by at most
   `preset.box_atol`. A detection left without a partner (unmatched in the reference, extra in the candidate)
   is tolerated when it is *borderline*: its score is within `score_atol` of the 0.3 threshold, or, when its
   list is full (100 detections), of that list's lowest score.
The verdict passes when every pair agrees and every unpaired detection is borderline.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ssd_np.reference.postprocess import MAX_TOTAL_DETECTIONS, SCORE_THRESHOLD
from ssd_np.verify.presets import Preset

TF_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
OPENVINO_OUTPUTS = ("DetectionOutput",)
FORMATS = {"tf": TF_OUTPUTS, "openvino": OPENVINO_OUTPUTS}
OWN_OUTPUTS = "its own outputs"


@dataclass
class Detections:
    """One image's detections: boxes (n, 4) `[ymin, xmin, ymax, xmax]` normalized, scores (n,), classes (n,)
    COCO ids."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def from_tf_outputs(trace: Mapping[str, np.ndarray]) -> Detections:
    """TF's four outputs (batch of 1) -> the first num_detections detections."""
    n = int(np.asarray(trace["num_detections"]).ravel()[0])
    return Detections(np.asarray(trace["detection_boxes"], np.float64).reshape(-1, 4)[:n],
                      np.asarray(trace["detection_scores"], np.float64).ravel()[:n],
                      np.rint(np.asarray(trace["detection_classes"]).ravel()[:n]).astype(np.int64))


def from_detection_output(rows: np.ndarray) -> Detections:
    """OpenVINO `DetectionOutput` rows (..., 7) `[image_id, label, conf, xmin, ymin, xmax, ymax]` -> detections
    up to the first row with image_id -1."""
    rows = np.asarray(rows, np.float64).reshape(-1, 7)
    end = np.flatnonzero(rows[:, 0] == -1)
    rows = rows[:end[0] if end.size else len(rows)]
    return Detections(rows[:, [4, 3, 6, 5]], rows[:, 2], np.rint(rows[:, 1]).astype(np.int64))


def postprocessed(trace: Mapping[str, np.ndarray], fmt: str) -> dict[str, np.ndarray]:
    """ssd_np's post-processing (the reference's) of a trace's own `concat` and `concat_1`."""
    from ssd_np.reference import anchors, postprocess

    box_encodings = np.asarray(trace["concat"], np.float32).reshape(-1, 4)
    class_logits = np.asarray(trace["concat_1"], np.float32).reshape(box_encodings.shape[0], -1)
    outputs: dict[str, np.ndarray] = {}
    if fmt == "tf":
        postprocess.tf_outputs(box_encodings, class_logits, anchors.ssd_anchors(), outputs)
    else:
        postprocess.detection_out(box_encodings, class_logits, outputs)
    return outputs


def read_detections(trace: Mapping[str, np.ndarray], fmt: str) -> tuple[Detections, str] | None:
    """The detections of `trace` in format "tf" or "openvino", and where they come from; None when the trace has
    neither the format's outputs nor `concat`, `concat_1`."""
    parse = from_tf_outputs if fmt == "tf" else (lambda t: from_detection_output(t["DetectionOutput"]))
    if all(name in trace for name in FORMATS[fmt]):
        return parse(trace), OWN_OUTPUTS
    if "concat" in trace and "concat_1" in trace:
        try:
            return parse(postprocessed(trace, fmt)), "ssd_np's post-processing of its concat, concat_1"
        except ValueError:   # concat / concat_1 of another shape: the per-tensor table reports it
            return None
    return None


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes a (n, 4) and b (m, 4) `[ymin, xmin, ymax, xmax]` -> (n, m)."""
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(bottom - top, 0, None) * np.clip(right - left, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


@dataclass
class Match:
    """A reference detection and its candidate partner."""

    reference: int                   # index in the reference's detections
    candidate: int
    label: int
    iou: float
    score_delta: float               # candidate - reference
    box_delta: float                 # max |coordinate difference|


@dataclass
class DetectionVerdict:
    """Detections of one format matched by class and IoU, and whether they agree within the preset."""

    format: str                      # "tf" or "openvino"
    source: str                      # where the candidate's detections come from
    reference: Detections
    candidate: Detections
    preset: Preset
    matches: list[Match] = field(default_factory=list)
    unmatched: list[int] = field(default_factory=list)   # reference detections without a partner
    extra: list[int] = field(default_factory=list)       # candidate detections without a partner

    @property
    def tensors(self) -> tuple[str, ...]:
        return FORMATS[self.format]

    def agrees(self, m: Match) -> bool:
        return bool(abs(m.score_delta) <= self.preset.score_atol and m.box_delta <= self.preset.box_atol)

    def borderline(self, detections: Detections, i: int) -> bool:
        """Whether a correct build may keep or drop detection i: its score is within score_atol of the 0.3
        threshold, or of the lowest score of a full (100-detection) list."""
        score, tol = detections.scores[i], self.preset.score_atol
        full = len(detections) >= MAX_TOTAL_DETECTIONS and score - detections.scores.min() <= tol
        return bool(abs(score - float(SCORE_THRESHOLD)) <= tol or full)

    @property
    def disagreeing(self) -> list[Match]:
        return [m for m in self.matches if not self.agrees(m)]

    @property
    def passed(self) -> bool:
        return (not self.disagreeing and all(self.borderline(self.reference, i) for i in self.unmatched)
                and all(self.borderline(self.candidate, i) for i in self.extra))

    def summary(self) -> str:
        worst_score = max((abs(m.score_delta) for m in self.matches), default=0.0)
        worst_box = max((m.box_delta for m in self.matches), default=0.0)
        return (f"{'PASS' if self.passed else 'FAIL'}: {len(self.matches)} of {len(self.reference)} reference "
                f"detections matched ({len(self.disagreeing)} outside the preset), {len(self.unmatched)} unmatched, "
                f"{len(self.extra)} extra; max |score delta| {worst_score:.3g} (<= {self.preset.score_atol:g}), "
                f"max box delta {worst_box:.3g} (<= {self.preset.box_atol:g})")

    def to_dict(self) -> dict:
        def detection(d: Detections, i: int) -> dict:
            return {"index": i, "class": int(d.classes[i]), "score": float(d.scores[i]),
                    "box": [float(v) for v in d.boxes[i]], "borderline": self.borderline(d, i)}

        return {"format": self.format, "source": self.source, "passed": self.passed,
                "reference_count": len(self.reference), "candidate_count": len(self.candidate),
                "matches": [{"reference": m.reference, "candidate": m.candidate, "class": m.label, "iou": m.iou,
                             "score_delta": m.score_delta, "box_delta": m.box_delta, "agrees": self.agrees(m)}
                            for m in self.matches],
                "unmatched": [detection(self.reference, i) for i in self.unmatched],
                "extra": [detection(self.candidate, i) for i in self.extra]}


def match(reference: Detections, candidate: Detections, preset: Preset) -> tuple[list[Match], list[int], list[int]]:
    """Greedy maximum-IoU matching within each class: (matches, unmatched reference, extra candidate)."""
    overlaps = iou(reference.boxes, candidate.boxes)
    same_class = reference.classes[:, None] == candidate.classes[None, :]
    pairs = np.argwhere(same_class & (overlaps >= preset.match_iou))
    pairs = pairs[np.argsort(-overlaps[pairs[:, 0], pairs[:, 1]], kind="stable")]
    matches, used_r, used_c = [], set(), set()
    for i, j in pairs:
        if i in used_r or j in used_c:
            continue
        used_r.add(i)
        used_c.add(j)
        matches.append(Match(int(i), int(j), int(reference.classes[i]), float(overlaps[i, j]),
                             float(candidate.scores[j] - reference.scores[i]),
                             float(np.abs(candidate.boxes[j] - reference.boxes[i]).max())))
    matches.sort(key=lambda m: m.reference)
    return (matches, [i for i in range(len(reference)) if i not in used_r],
            [j for j in range(len(candidate)) if j not in used_c])


def detection_verdict(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], preset: Preset,
                      fmt: str) -> DetectionVerdict | None:
    """The verdict for format "tf" or "openvino"; None when the reference lacks that format's outputs or the
    candidate has neither them nor `concat`, `concat_1`."""
    if not all(name in reference for name in FORMATS[fmt]):
        return None
    read = read_detections(candidate, fmt)
    if read is None:
        return None
    ref = read_detections(reference, fmt)[0]
    verdict = DetectionVerdict(fmt, read[1], ref, read[0], preset)
    verdict.matches, verdict.unmatched, verdict.extra = match(ref, read[0], preset)
    return verdict


def detection_verdicts(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                       preset: Preset) -> list[DetectionVerdict]:
    """The verdicts of every format the reference and the candidate allow."""
    verdicts = (detection_verdict(reference, candidate, preset, fmt) for fmt in FORMATS)
    return [v for v in verdicts if v is not None]
