"""The two post-processing paths: TF's ``BatchMultiClassNonMaxSuppression`` and OpenVINO's ``DetectionOutput``.

``tf_outputs`` mirrors the 2018 Object Detection API graph (``core/post_processing.py``
``multiclass_non_max_suppression`` + ``batch_multiclass_non_max_suppression``, nodes under
``Postprocessor/BatchMultiClassNonMaxSuppression/``), for one image:

1. boxes = ``box_coder.decode(concat, anchors)``; scores = ``Sigmoid(concat_1)`` without column 0 (background).
2. For each class k = 0..89 (``FilterGreaterThan_k``, ``ClipToWindow_k``, ``non_max_suppression_k``):
   keep anchors with score > float32(0.3) in ascending anchor order; clip each coordinate to the window
   [0, 0, 1, 1] as ``max(min(v, 1), 0)``; drop boxes whose clipped area ``(ymax - ymin) * (xmax - xmin)`` is
   not > 0; ``NonMaxSuppressionV2(clipped boxes, scores, min(100, n), iou_threshold=float32(0.6))``.
3. Concatenate the survivors in class order (``Concatenate``), sort by score with ``TopKV2`` (k = all,
   descending, ties to the lower position), keep the first min(100, n) (``Gather_90``), zero-pad to 100
   (``PadOrClipBoxList``). ``detection_classes`` = k + 1 (added after the padding: padding rows hold class 1.0);
   ``num_detections`` = min(100, n). Boxes are the clipped ``[ymin, xmin, ymax, xmax]``.

``detection_out`` mirrors OpenVINO 2024.6's CPU ``DetectionOutput`` (src/plugins/intel_cpu/src/nodes/
detection_output.cpp, caffe style, ``share_location``) on the IR Model Optimizer makes with ``ssd_v2_support.json``:

1. Confidences = the IR's ``Sigmoid`` of ``concat_1`` (oneDNN, ``elementwise.onednn_logistic``), (1917, 91).
   Locations = ``concat`` with its columns swapped to ``[tx, ty, tw, th]`` (Model Optimizer permutes the box
   predictor's output channels: the IR's ``concat`` is TF's ``concat[..., [1, 0, 3, 2]]``).
2. Decode every prior (``CENTER_SIZE``, variances 0.1 0.1 0.2 0.2, no clipping), in float32::

       pw = pxmax - pxmin, pcx = (pxmin + pxmax) / 2      (same for y)
       cx = 0.1 * tx * pw + pcx;  w = expf(0.2 * tw) * pw  (same for y, h)
       box = [cx - w/2, cy - h/2, cx + w/2, cy + h/2] ([xmin, ymin, xmax, ymax]);  size = (xmax-xmin)*(ymax-ymin)

3. Per class c = 1..90: priors with confidence > float32(0.3); the 100 best by (confidence descending, prior
   ascending) (``top_k`` before NMS); greedy NMS (``nms.nms_openvino``, IoU > float32(0.6) suppresses).
4. If more than ``keep_top_k`` = 100 survive over all classes, keep the 100 best by (confidence descending,
   prior ascending). Two survivors of different classes with equal confidence on the same prior are
   unordered in OpenVINO (``std::sort``): here the lower class wins; the real runtime may differ there.
5. Rows ``[0, c, confidence, xmin, ymin, xmax, ymax]`` ordered by class ascending, then confidence descending
   (prior ascending on ties), coordinates clamped to [0, 1] after NMS; the row after the last detection has
   image_id -1, all other rows are 0. Shape (1, 1, 100, 7).

TF's step 2 and OpenVINO's steps 3-4 are written twice: ``multiclass_nms`` and ``openvino_detections`` in NumPy (the
readable definitions), and their compiled numba twins ``multiclass_nms_fast`` and ``openvino_detections_fast``
(the same float32 operations and orderings, one loop per class), which ``tf_outputs`` and ``detection_out`` use.
tests/test_postprocess.py checks that both give the same arrays, bit for bit.
"""

import numba
import numpy as np

from ssd_np import box_coder
from ssd_np.anchors import NUM_ANCHORS, openvino_priors
from ssd_np.elementwise import glibc_expf_fast, onednn_logistic_fast
from ssd_np.nms import (argsort_by_score, nms_openvino, nms_openvino_fast, non_max_suppression_v2,
                        non_max_suppression_v2_fast)

F32 = np.float32

NUM_CLASSES = 90
SCORE_THRESHOLD = F32(0.300000011921)
IOU_THRESHOLD = F32(0.600000023842)
MAX_DETECTIONS_PER_CLASS = 100
MAX_TOTAL_DETECTIONS = 100

OPENVINO_VARIANCES = (F32(0.1), F32(0.1), F32(0.2), F32(0.2))
OPENVINO_TOP_K = 100
OPENVINO_KEEP_TOP_K = 100
OPENVINO_NUM_ROWS = 100


def _check_inputs(box_encodings, class_logits):
    box_encodings = np.asarray(box_encodings, F32)
    class_logits = np.asarray(class_logits, F32)
    if box_encodings.shape != (NUM_ANCHORS, 4) or class_logits.shape != (NUM_ANCHORS, NUM_CLASSES + 1):
        raise ValueError(f"post-processing needs box_encodings ({NUM_ANCHORS}, 4) and class_logits "
                         f"({NUM_ANCHORS}, {NUM_CLASSES + 1}) for one image, got {box_encodings.shape} and "
                         f"{class_logits.shape}: squeeze `concat` (1, 1917, 1, 4) and `concat_1` (1, 1917, 91)")
    return box_encodings, class_logits


def clip_to_window(boxes):
    """``ClipToWindow`` with the window [0, 0, 1, 1]: (n, 4) -> (clipped boxes, kept indices of nonzero area)."""
    clipped = np.maximum(np.minimum(boxes, F32(1.0)), F32(0.0))
    areas = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return clipped, np.flatnonzero(areas > F32(0.0))


def multiclass_nms(boxes, class_scores):
    """Per-class filter, clip and NMS, concatenated in class order.

    boxes (N, 4), class_scores (N, 90) -> boxes (n, 4), scores (n,), 0-based classes (n,) float32.
    """
    kept_boxes, kept_scores, kept_classes = [], [], []
    for k in range(class_scores.shape[1]):
        scores = class_scores[:, k]
        above = np.flatnonzero(scores > SCORE_THRESHOLD)
        clipped, nonzero = clip_to_window(boxes[above])
        clipped, scores = clipped[nonzero], scores[above][nonzero]
        selected = non_max_suppression_v2(clipped, scores, min(MAX_DETECTIONS_PER_CLASS, len(scores)),
                                          IOU_THRESHOLD)
        kept_boxes.append(clipped[selected])
        kept_scores.append(scores[selected])
        kept_classes.append(np.full(len(selected), k, dtype=F32))
    return np.concatenate(kept_boxes), np.concatenate(kept_scores), np.concatenate(kept_classes)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _multiclass_nms_kernel(boxes, class_scores, score_threshold, iou_threshold, max_per_class):
    num_boxes, num_classes = class_scores.shape
    clipped = np.empty((num_boxes, 4), np.float32)  # one class's candidates, reused
    scores = np.empty(num_boxes, np.float32)
    capacity = num_classes * min(max_per_class, num_boxes)
    kept_boxes = np.empty((capacity, 4), np.float32)
    kept_scores = np.empty(capacity, np.float32)
    kept_classes = np.empty(capacity, np.float32)
    count = 0
    for k in range(num_classes):
        n = 0
        for i in range(num_boxes):
            if not class_scores[i, k] > score_threshold:
                continue
            for j in range(4):
                clipped[n, j] = np.maximum(np.minimum(boxes[i, j], np.float32(1.0)), np.float32(0.0))
            if (clipped[n, 2] - clipped[n, 0]) * (clipped[n, 3] - clipped[n, 1]) > np.float32(0.0):
                scores[n] = class_scores[i, k]
                n += 1
        selected = non_max_suppression_v2_fast(clipped[:n], scores[:n], min(max_per_class, n), iou_threshold)
        for a in range(len(selected)):  # (index loops: iterating over arrays is slow to compile)
            for j in range(4):
                kept_boxes[count, j] = clipped[selected[a], j]
            kept_scores[count] = scores[selected[a]]
            kept_classes[count] = k
            count += 1
    return kept_boxes[:count], kept_scores[:count], kept_classes[:count]


def multiclass_nms_fast(boxes, class_scores):
    """``multiclass_nms``, compiled (the same arrays, bit for bit)."""
    return _multiclass_nms_kernel(np.asarray(boxes, F32), np.asarray(class_scores, F32), SCORE_THRESHOLD,
                                  IOU_THRESHOLD, MAX_DETECTIONS_PER_CLASS)


def tf_outputs(box_encodings, class_logits, anchors, trace=None):
    """TF's four outputs for one image from (1917, 4) ``concat``, (1917, 91) ``concat_1`` and the anchors.

    Returns ``detection_boxes`` (1, 100, 4), ``detection_scores`` (1, 100), ``detection_classes`` (1, 100),
    ``num_detections`` (1,), float32. ``trace`` receives the anchors, decoded boxes, scores and outputs under
    their graph node names.
    """
    box_encodings, class_logits = _check_inputs(box_encodings, class_logits)
    anchors = np.asarray(anchors, F32)
    boxes = box_coder.decode(box_encodings, anchors, trace)
    scores = box_coder.scores(class_logits, trace)[:, 1:]
    nms_boxes, nms_scores, nms_classes = multiclass_nms_fast(boxes, scores)

    order = np.argsort(-nms_scores, kind="stable")[:MAX_TOTAL_DETECTIONS]  # TopKV2: ties to the lower position
    count = len(order)
    detection_boxes = np.zeros((MAX_TOTAL_DETECTIONS, 4), F32)
    detection_scores = np.zeros(MAX_TOTAL_DETECTIONS, F32)
    detection_classes = np.zeros(MAX_TOTAL_DETECTIONS, F32)
    detection_boxes[:count] = nms_boxes[order]
    detection_scores[:count] = nms_scores[order]
    detection_classes[:count] = nms_classes[order]
    outputs = {
        "detection_boxes": detection_boxes[None],
        "detection_scores": detection_scores[None],
        "detection_classes": (detection_classes + F32(1.0))[None],
        "num_detections": np.array([count], F32),
    }
    if trace is not None:
        trace["Concatenate/concat"] = anchors
        trace["Postprocessor/Reshape_2"] = boxes[None]
        trace.update(outputs)
    return outputs


def decode_openvino(box_encodings, priors):
    """DetectionOutput ``decodeBBoxes`` (CENTER_SIZE): TF-order encodings (N, 4), priors (N, 4) ``[xmin, ymin,
    xmax, ymax]`` -> boxes (N, 4) ``[xmin, ymin, xmax, ymax]`` and sizes (N,), float32."""
    loc_x, loc_y, loc_w, loc_h = np.asarray(box_encodings, F32)[:, [1, 0, 3, 2]].T
    var_x, var_y, var_w, var_h = OPENVINO_VARIANCES
    prior_xmin, prior_ymin, prior_xmax, prior_ymax = np.asarray(priors, F32).T
    prior_w = prior_xmax - prior_xmin
    prior_h = prior_ymax - prior_ymin
    prior_cx = (prior_xmin + prior_xmax) / F32(2.0)
    prior_cy = (prior_ymin + prior_ymax) / F32(2.0)
    cx = var_x * loc_x * prior_w + prior_cx
    cy = var_y * loc_y * prior_h + prior_cy
    w = glibc_expf_fast(var_w * loc_w) * prior_w
    h = glibc_expf_fast(var_h * loc_h) * prior_h
    boxes = np.stack([cx - w / F32(2.0), cy - h / F32(2.0), cx + w / F32(2.0), cy + h / F32(2.0)], axis=1)
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return boxes.astype(F32), sizes.astype(F32)


def _clamp01(v):
    """``std::max(0.0f, std::min(1.0f, v))``."""
    upper = np.where(v < F32(1.0), v, F32(1.0))
    return np.where(F32(0.0) < upper, upper, F32(0.0)).astype(F32)


def openvino_detections(confidences, boxes, sizes):
    """Steps 3 and 4: (P, 91) confidences, decoded (P, 4) boxes and (P,) sizes -> the detections' classes and
    prior indices (int64), in row order."""
    kept = {}  # class -> prior indices after NMS, in order
    for c in range(1, NUM_CLASSES + 1):
        conf = confidences[:, c]
        above = np.flatnonzero(conf > SCORE_THRESHOLD)
        top = above[np.lexsort((above, -conf[above]))][:OPENVINO_TOP_K]
        kept[c] = nms_openvino(top, boxes, sizes, IOU_THRESHOLD)

    if sum(len(p) for p in kept.values()) > OPENVINO_KEEP_TOP_K:
        classes = np.concatenate([np.full(len(p), c) for c, p in kept.items()])
        prior_ids = np.concatenate(list(kept.values()))
        conf = confidences[prior_ids, classes]
        best = np.lexsort((classes, prior_ids, -conf))[:OPENVINO_KEEP_TOP_K]
        kept = {c: prior_ids[best][classes[best] == c] for c in kept}
    classes = np.concatenate([np.full(len(p), c, np.int64) for c, p in kept.items()])
    return classes, np.concatenate(list(kept.values())).astype(np.int64)


@numba.njit(cache=True, error_model="numpy", nogil=True)
def _openvino_detections_kernel(confidences, boxes, sizes, score_threshold, iou_threshold, top_k, keep_top_k):
    num_priors, num_labels = confidences.shape
    above = np.empty(num_priors, np.int64)  # one class's candidates, reused
    conf = np.empty(num_priors, np.float32)
    classes = np.empty((num_labels - 1) * top_k, np.int64)
    prior_ids = np.empty(len(classes), np.int64)
    count = 0
    for c in range(1, num_labels):
        n = 0
        for p in range(num_priors):
            if confidences[p, c] > score_threshold:
                above[n] = p
                conf[n] = confidences[p, c]
                n += 1
        order = argsort_by_score(conf[:n], above[:n])[:top_k]  # confidence descending, prior ascending
        top = np.empty(len(order), np.int64)
        for i in range(len(order)):
            top[i] = above[order[i]]
        kept = nms_openvino_fast(top, boxes, sizes, iou_threshold)
        for i in range(len(kept)):  # (index loops: iterating over arrays is slow to compile)
            classes[count] = c
            prior_ids[count] = kept[i]
            count += 1
    if count <= keep_top_k:
        return classes[:count], prior_ids[:count]
    classes, prior_ids = classes[:count], prior_ids[:count]
    kept_conf = np.empty(count, np.float32)
    for i in range(count):
        kept_conf[i] = confidences[prior_ids[i], classes[i]]
    best = argsort_by_score(kept_conf, prior_ids * num_labels + classes)[:keep_top_k]  # then prior, class
    kept_classes = np.empty(len(best), np.int64)  # grouped by class, in that order
    kept_prior_ids = np.empty(len(best), np.int64)
    r = 0
    for c in range(1, num_labels):
        for i in range(len(best)):
            if classes[best[i]] == c:
                kept_classes[r] = c
                kept_prior_ids[r] = prior_ids[best[i]]
                r += 1
    return kept_classes, kept_prior_ids


def openvino_detections_fast(confidences, boxes, sizes):
    """``openvino_detections``, compiled (the same arrays)."""
    return _openvino_detections_kernel(np.asarray(confidences, F32), np.asarray(boxes, F32), np.asarray(sizes, F32),
                                       SCORE_THRESHOLD, IOU_THRESHOLD, OPENVINO_TOP_K, OPENVINO_KEEP_TOP_K)


def detection_out(box_encodings, class_logits, priors=None, trace=None):
    """OpenVINO ``detection_out`` (1, 1, 100, 7) for one image from TF-order ``concat`` and ``concat_1``.

    ``priors`` (1917, 4) ``[xmin, ymin, xmax, ymax]`` default to ``anchors.openvino_priors()``.
    ``trace`` receives the confidences ``do_ExpandDims_conf/sigmoid`` (1, 1, 1917, 91) and ``DetectionOutput``.
    """
    box_encodings, class_logits = _check_inputs(box_encodings, class_logits)
    priors = openvino_priors() if priors is None else np.asarray(priors, F32)
    confidences = onednn_logistic_fast(class_logits)  # (P, 91)
    boxes, sizes = decode_openvino(box_encodings, priors)
    classes, prior_ids = openvino_detections_fast(confidences, boxes, sizes)

    count = len(classes)
    rows = np.zeros((OPENVINO_NUM_ROWS, 7), F32)
    rows[:count, 1] = classes
    rows[:count, 2] = confidences[prior_ids, classes]
    rows[:count, 3:] = _clamp01(boxes[prior_ids])
    if count < OPENVINO_NUM_ROWS:
        rows[count, 0] = -1.0
    out = rows[None, None]
    if trace is not None:
        trace["do_ExpandDims_conf/sigmoid"] = confidences[None, None]
        trace["DetectionOutput"] = out
    return out
