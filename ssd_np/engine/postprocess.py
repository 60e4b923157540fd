"""Post-processing's per-class loops, compiled: twins of `reference.postprocess.multiclass_nms` and
`openvino_detections` (the same float32 operations and orderings, one loop per class, the same arrays bit for
bit), and `OPS`, which runs the reference's `tf_outputs` and `detection_out` with these and the compiled
element-wise functions."""
from __future__ import annotations

import numpy as np

from ssd_np.engine import elementwise
from ssd_np.engine.nms import argsort_by_score, nms_openvino, non_max_suppression_v2
from ssd_np.jit import njit
from ssd_np.reference.postprocess import (IOU_THRESHOLD, MAX_DETECTIONS_PER_CLASS, OPENVINO_KEEP_TOP_K, OPENVINO_TOP_K,
                                          SCORE_THRESHOLD, Ops)

F32 = np.float32


@njit(numpy_division=True)
def _multiclass_nms(boxes, class_scores, score_threshold, iou_threshold, max_per_class):
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
        selected = non_max_suppression_v2(clipped[:n], scores[:n], min(max_per_class, n), iou_threshold)
        for a in range(len(selected)):  # (index loops: iterating over arrays is slow to compile)
            for j in range(4):
                kept_boxes[count, j] = clipped[selected[a], j]
            kept_scores[count] = scores[selected[a]]
            kept_classes[count] = k
            count += 1
    return kept_boxes[:count], kept_scores[:count], kept_classes[:count]


def multiclass_nms(boxes, class_scores):
    """`reference.postprocess.multiclass_nms`, compiled."""
    return _multiclass_nms(np.asarray(boxes, F32), np.asarray(class_scores, F32), SCORE_THRESHOLD, IOU_THRESHOLD,
                           MAX_DETECTIONS_PER_CLASS)


@njit(numpy_division=True)
def _openvino_detections(confidences, boxes, sizes, score_threshold, iou_threshold, top_k, keep_top_k):
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
        kept = nms_openvino(top, boxes, sizes, iou_threshold)
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


def openvino_detections(confidences, boxes, sizes):
    """`reference.postprocess.openvino_detections`, compiled."""
    return _openvino_detections(np.asarray(confidences, F32), np.asarray(boxes, F32), np.asarray(sizes, F32),
                                SCORE_THRESHOLD, IOU_THRESHOLD, OPENVINO_TOP_K, OPENVINO_KEEP_TOP_K)


OPS = Ops(elementwise.tf_exp, elementwise.tf_sigmoid, multiclass_nms, elementwise.glibc_expf,
          elementwise.onednn_logistic, openvino_detections)
