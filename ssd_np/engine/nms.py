"""TF's and OpenVINO's greedy non-maximum suppression, compiled: twins of `reference.nms` (the same selections).

The same float32 operations, one pair of boxes at a time. `argsort_by_score` gives the candidates' priority
order (`np.lexsort((ties, -scores))`). tests/test_nms.py compares every function with its reference twin.
"""
from __future__ import annotations

import numpy as np

from ssd_np.jit import njit

F32 = np.float32
_NO_SIZES = np.zeros(0, F32)


@njit(numpy_division=True)
def _py_min(a, b):
    """Python's `min(a, b)` (the reference's `min` of two numbers)."""
    return b if b < a else a


@njit(numpy_division=True)
def _py_max(a, b):
    """Python's `max(a, b)`."""
    return b if b > a else a


@njit(numpy_division=True)
def iou_tf(box, other):
    """`reference.nms.iou_tf` of two (4,) float32 boxes."""
    ymin_i, ymax_i = _py_min(box[0], box[2]), _py_max(box[0], box[2])
    xmin_i, xmax_i = _py_min(box[1], box[3]), _py_max(box[1], box[3])
    ymin_j, ymax_j = np.minimum(other[0], other[2]), np.maximum(other[0], other[2])
    xmin_j, xmax_j = np.minimum(other[1], other[3]), np.maximum(other[1], other[3])
    area_i = (ymax_i - ymin_i) * (xmax_i - xmin_i)
    area_j = (ymax_j - ymin_j) * (xmax_j - xmin_j)
    inter_h = np.maximum(np.minimum(ymax_i, ymax_j) - np.maximum(ymin_i, ymin_j), F32(0.0))
    inter_w = np.maximum(np.minimum(xmax_i, xmax_j) - np.maximum(xmin_i, xmin_j), F32(0.0))
    inter = inter_h * inter_w
    if area_i <= F32(0.0) or area_j <= F32(0.0):
        return F32(0.0)
    return inter / (area_i + area_j - inter)


@njit(numpy_division=True)
def iou_openvino(box, size, other, other_size):
    """`reference.nms.iou_openvino` of two (4,) float32 `[xmin, ymin, xmax, ymax]` boxes and their sizes."""
    if other[0] > box[2] or other[2] < box[0] or other[1] > box[3] or other[3] < box[1]:
        return F32(0.0)
    inter_w = np.minimum(box[2], other[2]) - np.maximum(box[0], other[0])
    inter_h = np.minimum(box[3], other[3]) - np.maximum(box[1], other[1])
    if inter_w <= F32(0.0) or inter_h <= F32(0.0):
        return F32(0.0)
    inter = inter_w * inter_h
    return inter / (size + other_size - inter)


@njit(numpy_division=True)
def _before(score_a, tie_a, score_b, tie_b):
    """Whether a comes before b in `np.lexsort((ties, -scores))` order (NaN scores last)."""
    a_nan, b_nan = score_a != score_a, score_b != score_b
    if a_nan or b_nan:
        return tie_a < tie_b if a_nan and b_nan else b_nan
    if score_a != score_b:
        return score_a > score_b
    return tie_a < tie_b


@njit(numpy_division=True)
def argsort_by_score(scores, ties):
    """`np.lexsort((ties, -scores))`: indices by score descending, then tie ascending (a merge sort; numba's own
    `np.argsort` would do, but takes over a second to compile)."""
    n = len(scores)
    order = np.arange(n)
    merged = np.empty(n, np.int64)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid, hi = min(lo + width, n), min(lo + 2 * width, n)
            i, j = lo, mid
            for k in range(lo, hi):
                if i < mid and (j == hi or not _before(scores[order[j]], ties[order[j]], scores[order[i]],
                                                      ties[order[i]])):
                    merged[k] = order[i]
                    i += 1
                else:
                    merged[k] = order[j]
                    j += 1
        order, merged = merged, order
        width *= 2
    return order


@njit(numpy_division=True)
def greedy(candidates, boxes, sizes, iou_threshold, max_output_size, openvino):
    """`reference.nms.greedy` over `candidates` (priority first) with TF's IoU, or OpenVINO's when `openvino`."""
    threshold = np.float32(iou_threshold)
    suppressed = np.zeros(len(candidates), np.bool_)
    kept = np.empty(min(max_output_size, len(candidates)), np.int64)
    count = 0
    for a in range(len(candidates)):
        if count == len(kept):
            break
        if suppressed[a]:
            continue
        best = candidates[a]
        kept[count] = best
        count += 1
        for b in range(a + 1, len(candidates)):
            other = candidates[b]
            if not suppressed[b] and (iou_openvino(boxes[best], sizes[best], boxes[other], sizes[other]) if openvino
                                      else iou_tf(boxes[best], boxes[other])) > threshold:
                suppressed[b] = True
    return kept[:count]


@njit(numpy_division=True)
def non_max_suppression_v2(boxes, scores, max_output_size, iou_threshold):
    """`reference.nms.non_max_suppression_v2` on float32 arrays (no input checks)."""
    order = argsort_by_score(scores, np.arange(len(scores)))  # score descending, ties to the lower index
    return greedy(order, boxes, _NO_SIZES, iou_threshold, max_output_size, False)


@njit(numpy_division=True)
def nms_openvino(candidates, boxes, sizes, nms_threshold):
    """`reference.nms.nms_openvino` on float32 `boxes`, `sizes` and int64 `candidates`."""
    return greedy(candidates, boxes, sizes, nms_threshold, len(candidates), True)
