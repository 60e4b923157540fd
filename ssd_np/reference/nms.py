"""Greedy non-maximum suppression of the two reference runtimes, in float32.

Both keep a candidate unless it overlaps an already kept (higher priority) box by IoU strictly above the
threshold; they differ in the IoU arithmetic and in how candidates are ordered.

* `non_max_suppression_v2`: TensorFlow's `NonMaxSuppressionV2` (core/kernels/image/non_max_suppression_op.cc):
  candidates by score, ties to the lower index; stop after `max_output_size` selections. Boxes are
  `[y1, x1, y2, x2]` in any corner order; IoU in float32:
      ymin = min(y1, y2), xmin = min(x1, x2), ymax = max(y1, y2), xmax = max(x1, x2)
      area = (ymax - ymin) * (xmax - xmin);  IOU = 0 if area_i <= 0 or area_j <= 0
      inter = max(min(ymax_i, ymax_j) - max(ymin_i, ymin_j), 0) * max(min(xmax_i, xmax_j) - max(xmin_i, xmin_j), 0)
      IOU = inter / (area_i + area_j - inter)
* `nms_openvino`: OpenVINO CPU `DetectionOutput`'s `NMSCF` on candidates already in priority order, with
  `JaccardOverlap` on `[xmin, ymin, xmax, ymax]` boxes and sizes precomputed at decoding:
      0 if xmin_j > xmax_i or xmax_j < xmin_i or ymin_j > ymax_i or ymax_j < ymin_i
      w = min(xmax_i, xmax_j) - max(xmin_i, xmin_j);  h = min(ymax_i, ymax_j) - max(ymin_i, ymin_j)
      0 if w <= 0 or h <= 0, else  w * h / (size_i + size_j - w * h)
Both IoUs are symmetric in (i, j), so "select the best, suppress what overlaps it" (`greedy`) keeps exactly
the boxes the runtimes' "compare each candidate with the kept ones" loops keep, in the same order.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def iou_tf(box, boxes):
    """TF `NonMaxSuppressionV2` IOU of one (4,) box against (n, 4) boxes -> (n,) float32."""
    box, boxes = np.asarray(box, F32), np.asarray(boxes, F32)
    ymin_i, ymax_i = min(box[0], box[2]), max(box[0], box[2])
    xmin_i, xmax_i = min(box[1], box[3]), max(box[1], box[3])
    ymin_j, ymax_j = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    xmin_j, xmax_j = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    area_i = (ymax_i - ymin_i) * (xmax_i - xmin_i)
    area_j = (ymax_j - ymin_j) * (xmax_j - xmin_j)
    inter_h = np.maximum(np.minimum(ymax_i, ymax_j) - np.maximum(ymin_i, ymin_j), F32(0.0))
    inter_w = np.maximum(np.minimum(xmax_i, xmax_j) - np.maximum(xmin_i, xmin_j), F32(0.0))
    inter = inter_h * inter_w
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_i + area_j - inter)
    return np.where((area_i <= 0) | (area_j <= 0), F32(0.0), iou).astype(F32)


def iou_openvino(box, size, boxes, sizes):
    """OpenVINO `JaccardOverlap` of one (4,) `[xmin, ymin, xmax, ymax]` box and its size against (n, 4) boxes."""
    box, boxes = np.asarray(box, F32), np.asarray(boxes, F32)
    xmin_1, ymin_1, xmax_1, ymax_1 = box
    xmin_2, ymin_2, xmax_2, ymax_2 = boxes.T
    disjoint = (xmin_2 > xmax_1) | (xmax_2 < xmin_1) | (ymin_2 > ymax_1) | (ymax_2 < ymin_1)
    inter_w = np.minimum(xmax_1, xmax_2) - np.maximum(xmin_1, xmin_2)
    inter_h = np.minimum(ymax_1, ymax_2) - np.maximum(ymin_1, ymin_2)
    inter = inter_w * inter_h
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iou = inter / (F32(size) + np.asarray(sizes, F32) - inter)
    return np.where(disjoint | (inter_w <= 0) | (inter_h <= 0), F32(0.0), iou).astype(F32)


def greedy(order, overlaps, iou_threshold, max_output_size, suppressed_by=None):
    """Indices kept by greedy NMS over candidates `order` (priority first); `overlaps(i, rest)` -> IoUs.
    `suppressed_by`, when given, receives candidate -> (the kept candidate that suppressed it, their IoU);
    candidates neither kept nor in it were not reached (`max_output_size` selections made)."""
    remaining = np.asarray(order, np.int64)
    kept = []
    while remaining.size and len(kept) < max_output_size:
        best, remaining = remaining[0], remaining[1:]
        kept.append(best)
        ious = overlaps(best, remaining)
        suppressed = ious > F32(iou_threshold)
        if suppressed_by is not None:
            suppressed_by.update((int(i), (int(best), float(iou))) for i, iou in zip(remaining[suppressed],
                                                                                   ious[suppressed]))
        remaining = remaining[~suppressed]
    return np.array(kept, dtype=np.int64)


def non_max_suppression_v2(boxes, scores, max_output_size, iou_threshold, suppressed_by=None):
    """TF `NonMaxSuppressionV2`: (n, 4) boxes, (n,) scores -> selected indices (int64), best first.
    `suppressed_by`: see `greedy`."""
    boxes, scores = np.asarray(boxes, F32), np.asarray(scores, F32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (boxes.shape[0],):
        raise ValueError(f"non_max_suppression_v2 needs boxes (n, 4) and scores (n,), got {boxes.shape}, "
                         f"{scores.shape}")
    order = np.argsort(-scores, kind="stable")  # score descending, ties to the lower index
    return greedy(order, lambda i, rest: iou_tf(boxes[i], boxes[rest]), iou_threshold, max_output_size,
                  suppressed_by)


def nms_openvino(candidates, boxes, sizes, nms_threshold):
    """OpenVINO `NMSCF`: prior indices `candidates` (priority order) -> kept prior indices, in order.
    `boxes` (P, 4) `[xmin, ymin, xmax, ymax]` and `sizes` (P,) are the decoded boxes of all priors."""
    boxes, sizes = np.asarray(boxes, F32), np.asarray(sizes, F32)
    return greedy(candidates, lambda i, rest: iou_openvino(boxes[i], sizes[i], boxes[rest], sizes[rest]),
                  nms_threshold, len(candidates))
