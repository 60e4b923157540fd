"""What `ssd-np detect` and `ssd-np eval` write for one image's `Detections`: JSON records, COCO results rows,
text lines. Every float is written as the exact value of its float32 (`float(np.float32)`), so reading a file
back with `np.float32(value)` gives the reference bits."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np

from ssd_np.coco_labels import COCO_LABELS
from ssd_np.detector import Detections
from ssd_np.images import file_name_text

_COCO_NAME = re.compile(r"(?:COCO_[A-Za-z]+[0-9]*_)?([0-9]+)")


def floats(array: np.ndarray) -> list:
    """float32 array -> nested lists of Python floats holding exactly the float32 values."""
    return np.asarray(array, np.float32).astype(np.float64).tolist()


def json_bytes(value: object) -> bytes:
    return (json.dumps(value, allow_nan=False) + "\n").encode()


def at_least(found: Detections, min_score: float) -> Detections:
    """The detections with score >= min_score, in the same order."""
    keep = found.scores >= min_score
    return dataclasses.replace(found, boxes=found.boxes[keep], pixel_boxes=found.pixel_boxes[keep],
                               class_ids=found.class_ids[keep], scores=found.scores[keep],
                               class_names=tuple(n for n, k in zip(found.class_names, keep) if k))


def json_record(found: Detections, fmt: str) -> dict:
    """`--format tf`: TF's outputs (real rows only); `--format openvino`: the `detection_out` rows before the
    first image_id == -1, `[image_id, label, conf, x_min, y_min, x_max, y_max]`."""
    if fmt == "openvino":
        rows = np.column_stack([np.zeros(len(found), np.float32), found.class_ids.astype(np.float32),
                                found.scores, found.boxes[:, [1, 0, 3, 2]]])
        return {"detection_out": floats(rows)}
    return {"detection_boxes": floats(found.boxes), "detection_scores": floats(found.scores),
            "detection_classes": found.class_ids.tolist(), "num_detections": len(found)}


def coco_image_id(path: str) -> int | None:
    """The COCO image id in a file name (`000000000139.jpg` -> 139), or None for a non-COCO name."""
    match = _COCO_NAME.fullmatch(Path(path).stem)
    return int(match.group(1)) if match else None


def coco_rows(image_id: int, found: Detections) -> list[dict]:
    """COCO results rows, as the TF Object Detection API's `coco_tools.ExportSingleImageDetectionBoxesToCoco`:
    bbox [x, y, width, height] in pixels, width = xmax - xmin in float32."""
    ymin, xmin, ymax, xmax = found.pixel_boxes.T  # float32
    bboxes = np.stack([xmin, ymin, xmax - xmin, ymax - ymin], axis=1)  # (n, 4) float32
    return [{"image_id": image_id, "category_id": int(c), "bbox": floats(b), "score": float(s)}
            for c, b, s in zip(found.class_ids, bboxes, found.scores)]


def text_lines(path: str, found: Detections) -> str:
    """Human-readable detections of one image (what stdout shows without --json-dir and --draw)."""
    lines = [f"{file_name_text(path)}: {len(found)} detection{'s' if len(found) != 1 else ''}"]
    for (ymin, xmin, ymax, xmax), c, s in zip(found.pixel_boxes, found.class_ids, found.scores):
        lines.append(f"  {float(s):.3f}  {COCO_LABELS.get(int(c), str(c)):15s}  "
                     f"x {xmin:7.1f} .. {xmax:7.1f}   y {ymin:7.1f} .. {ymax:7.1f}")
    return "\n".join(lines) + "\n"
