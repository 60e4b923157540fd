"""Greedy non-maximum suppression of the two reference runtimes, in float32.

Both keep a candidate unless it overlaps an already kept (higher priority) box by IoU strictly above the
threshold; they differ in the IoU arithmetic and in how candidates are ordered.

* ``non_max_suppression_v2``: TensorFlow's ``NonMaxSuppressionV2`` kernel (core/kernels/image/
  non_max_suppression_op.cc, TF 2.17): candidates are popped from a priority queue by score, ties to the lower
  index (the queue's comparator); a candidate is compared with the boxes selected so far and dropped at the
  first ``IOU > iou_threshold``; stop after ``max_output_size`` selections. Boxes are ``[y1, x1, y2, x2]`` in
  any corner order, IoU in float32::

      ymin = min(y1, y2), xmin = min(x1, x2), ymax = max(y1, y2), xmax = max(x1, x2)
      area = (ymax - ymin) * (xmax - xmin);  IOU = 0 if area_i <= 0 or area_j <= 0
      inter = max(min(ymax_i, ymax_j) - max(ymin_i, ymin_j), 0) * max(min(xmax_i, xmax_j) - max(xmin_i, xmin_j), 0)
      IOU = inter / (area_i + area_j - inter)

* ``nms_openvino``: OpenVINO CPU ``DetectionOutput``'s ``NMSCF`` (src/plugins/intel_cpu/src/nodes/
  detection_output.cpp) on candidates already in priority order, with ``JaccardOverlap`` on
  ``[xmin, ymin, xmax, ymax]`` boxes and the box sizes precomputed at decoding::

      0 if xmin_j > xmax_i or xmax_j < xmin_i or ymin_j > ymax_i or ymax_j < ymin_i
      w = min(xmax_i, xmax_j) - max(xmin_i, xmin_j);  h = min(ymax_i, ymax_j) - max(ymin_i, ymin_j)
      0 if w <= 0 or h <= 0, else  w * h / (size_i + size_j - w * h)

Both IoUs are symmetric in (i, j) (float addition commutes), so the "select the best, suppress what overlaps
it" loop below keeps exactly the boxes the runtimes' "compare each candidate with the kept ones" loops keep,
in the same order.

The NumPy functions are the readable definitions; each has a compiled numba twin with the same arithmetic,
``iou_tf_fast``, ``iou_openvino_fast`` (one pair of boxes), ``non_max_suppression_v2_fast`` and
``nms_openvino_fast``, which post-processing uses, plus ``argsort_by_score`` (``np.lexsort((ties, -scores))``,
the candidates' priority order). tests/test_nms.py checks that they select the same boxes.
"""

import numba
import numpy as np

F32 = np.float32


def iou_tf(box, boxes):
    """TF ``NonMaxSuppressionV2`` IOU of one (4,) box against (n, 4) boxes -> (n,) float32."""
    box = np.asarray(box, F32)
    boxes = np.asarray(boxes, F32)
    ymin_i, ymax_i = min(box[0], box[2]), max(box[0], box[2])
    xmin_i, xmax_i = min(box[1], box[3]), max(box[1], box[3])
    ymin_j = np.minimum(boxes[:, 0], boxes[:, 2])
    ymax_j = np.maximum(boxes[:, 0], boxes[:, 2])
    xmin_j = np.minimum(boxes[:, 1], boxes[:, 3])
    xmax_j = np.maximum(boxes[:, 1], boxes[:, 3])
    area_i = (ymax_i - ymin_i) * (xmax_i - xmin_i)
    area_j = (ymax_j - ymin_j) * (xmax_j - xmin_j)
    inter_h = np.maximum(np.minimum(ymax_i, ymax_j) - np.maximum(ymin_i, ymin_j), F32(0.0))
    inter_w = np.maximum(np.minimum(xmax_i, xmax_j) - np.maximum(xmin_i, xmin_j), F32(0.0))
    inter = inter_h * inter_w
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_i + area_j - inter)
    return np.where((area_i <= 0) | (area_j <= 0), F32(0.0), iou).astype(F32)


def iou_openvino(box, size, boxes, sizes):
    """OpenVINO ``JaccardOverlap`` of one (4,) ``[xmin, ymin, xmax, ymax]`` box and its size against (n, 4)."""
    box = np.asarray(box, F32)
    boxes = np.asarray(boxes, F32)
    xmin_1, ymin_1, xmax_1, ymax_1 = box
    xmin_2, ymin_2, xmax_2, ymax_2 = boxes.T
    disjoint = (xmin_2 > xmax_1) | (xmax_2 < xmin_1) | (ymin_2 > ymax_1) | (ymax_2 < ymin_1)
    inter_w = np.minimum(xmax_1, xmax_2) - np.maximum(xmin_1, xmin_2)
    inter_h = np.minimum(ymax_1, ymax_2) - np.maximum(ymin_1, ymin_2)
    inter = inter_w * inter_h
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        iou = inter / (F32(size) + np.asarray(sizes, F32) - inter)
    empty = disjoint | (inter_w <= 0) | (inter_h <= 0)
    return np.where(empty, F32(0.0), iou).astype(F32)


def _greedy(order, overlaps, iou_threshold, max_output_size):
    """Indices kept by greedy NMS over candidates ``order`` (priority first); ``overlaps(i, rest)`` -> IoUs."""
    threshold = F32(iou_threshold)
    remaining = np.asarray(order, np.int64)
    kept = []
    while remaining.size and len(kept) < max_output_size:
        best, remaining = remaining[0], remaining[1:]
        kept.append(best)
        remaining = remaining[~(overlaps(best, remaining) > threshold)]
    return np.array(kept, dtype=np.int64)


def non_max_suppression_v2(boxes, scores, max_output_size, iou_threshold):
    """TF ``NonMaxSuppressionV2``: (n, 4) boxes, (n,) scores -> selected indices (int64), best first."""
    boxes = np.asarray(boxes, F32)
    scores = np.asarray(scores, F32)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or scores.shape != (boxes.shape[0],):
        raise ValueError(f"non_max_suppression_v2 needs boxes (n, 4) and scores (n,), got {boxes.shape}, "
                         f"{scores.shape}")
    order = np.argsort(-scores, kind="stable")  # score descending, ties to the lower index
    return _greedy(order, lambda i, rest: iou_tf(boxes[i], boxes[rest]), iou_threshold, max_output_size)


def nms_openvino(candidates, boxes, sizes, nms_threshold):
    """OpenVINO ``NMSCF``: prior indices ``candidates`` (priority order) -> kept prior indices, in order.

    ``boxes`` (P, 4) ``[xmin, ymin, xmax, ymax]`` and ``sizes`` (P,) are the decoded boxes of all priors.
    """
    boxes = np.asarray(boxes, F32)
    sizes = np.asarray(sizes, F32)
    return _greedy(candidates, lambda i, rest: iou_openvino(boxes[i], sizes[i], boxes[rest], sizes[rest]),
                   nms_threshold, len(candidates))


# --- compiled twins -----------------------------------------------------------------------------------------
# The same float32 operations, one pair of boxes at a time (``np.minimum``/``np.maximum`` keep NumPy's NaN
# semantics in numba; ``min``/``max`` of the single box are Python's). tests/test_nms.py compares them with
# the functions above.

# error_model="numpy": x / 0 gives inf or NaN as in NumPy; nogil: `ssd-np detect --jobs N` threads run at once
_njit = numba.njit(cache=True, error_model="numpy", nogil=True)


@_njit
def _py_min(a, b):
    """Python's ``min(a, b)``."""
    return b if b < a else a


@_njit
def _py_max(a, b):
    """Python's ``max(a, b)``."""
    return b if b > a else a


@_njit
def iou_tf_fast(box, other):
    """``iou_tf`` of two (4,) float32 boxes."""
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


@_njit
def iou_openvino_fast(box, size, other, other_size):
    """``iou_openvino`` of two (4,) float32 ``[xmin, ymin, xmax, ymax]`` boxes and their sizes."""
    xmin_1, ymin_1, xmax_1, ymax_1 = box[0], box[1], box[2], box[3]
    xmin_2, ymin_2, xmax_2, ymax_2 = other[0], other[1], other[2], other[3]
    if xmin_2 > xmax_1 or xmax_2 < xmin_1 or ymin_2 > ymax_1 or ymax_2 < ymin_1:
        return F32(0.0)
    inter_w = np.minimum(xmax_1, xmax_2) - np.maximum(xmin_1, xmin_2)
    inter_h = np.minimum(ymax_1, ymax_2) - np.maximum(ymin_1, ymin_2)
    if inter_w <= F32(0.0) or inter_h <= F32(0.0):
        return F32(0.0)
    inter = inter_w * inter_h
    return inter / (size + other_size - inter)


@_njit
def _before(score_a, tie_a, score_b, tie_b):
    """Whether a comes before b in ``np.lexsort((ties, -scores))`` order (NaN scores last)."""
    a_nan, b_nan = score_a != score_a, score_b != score_b
    if a_nan or b_nan:
        return tie_a < tie_b if a_nan and b_nan else b_nan
    if score_a != score_b:
        return score_a > score_b
    return tie_a < tie_b


@_njit
def argsort_by_score(scores, ties):
    """``np.lexsort((ties, -scores))``: indices by score descending, then tie ascending (a merge sort).

    ``np.argsort(-scores, kind="stable")`` is ``argsort_by_score(scores, np.arange(n))``. (numba's own
    ``np.argsort`` would do, but takes over a second to compile.)
    """
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


@_njit
def non_max_suppression_v2_fast(boxes, scores, max_output_size, iou_threshold):
    """``non_max_suppression_v2`` on float32 arrays (no input checks)."""
    threshold = np.float32(iou_threshold)
    order = argsort_by_score(scores, np.arange(len(scores)))  # score descending, ties to the lower index
    suppressed = np.zeros(len(order), np.bool_)
    kept = np.empty(min(max_output_size, len(order)), np.int64)
    count = 0
    for a in range(len(order)):
        if count == len(kept):
            break
        if suppressed[a]:
            continue
        best = order[a]
        kept[count] = best
        count += 1
        for b in range(a + 1, len(order)):
            if not suppressed[b] and iou_tf_fast(boxes[best], boxes[order[b]]) > threshold:
                suppressed[b] = True
    return kept[:count]


@_njit
def nms_openvino_fast(candidates, boxes, sizes, nms_threshold):
    """``nms_openvino`` on float32 ``boxes``, ``sizes`` and int64 ``candidates``."""
    threshold = np.float32(nms_threshold)
    suppressed = np.zeros(len(candidates), np.bool_)
    kept = np.empty(len(candidates), np.int64)
    count = 0
    for a in range(len(candidates)):
        if suppressed[a]:
            continue
        best = candidates[a]
        kept[count] = best
        count += 1
        for b in range(a + 1, len(candidates)):
            other = candidates[b]
            if not suppressed[b] and iou_openvino_fast(boxes[best], sizes[best], boxes[other],
                                                       sizes[other]) > threshold:
                suppressed[b] = True
    return kept[:count]
