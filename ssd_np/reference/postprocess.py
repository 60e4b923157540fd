"""The two post-processing paths: TF's `BatchMultiClassNonMaxSuppression` and OpenVINO's `DetectionOutput`.

`tf_outputs` mirrors the 2018 Object Detection API graph (`core/post_processing.py`
`multiclass_non_max_suppression` + `batch_multiclass_non_max_suppression`, nodes under
`Postprocessor/BatchMultiClassNonMaxSuppression/`), for one image:
1. boxes = `box_coder.decode(concat, anchors)`; scores = `Sigmoid(concat_1)` without column 0 (background).
2. For each class k = 0..89 (`multiclass_nms`): keep anchors with score > float32(0.3) in ascending anchor
   order; clip each coordinate to the window [0, 0, 1, 1] as max(min(v, 1), 0); drop boxes whose clipped area
   is not > 0; `NonMaxSuppressionV2(clipped boxes, scores, min(100, n), iou_threshold=float32(0.6))`.
3. Concatenate the survivors in class order, sort by score (`TopKV2`: descending, ties to the lower position),
   keep the first min(100, n), zero-pad to 100 (`PadOrClipBoxList`). `detection_classes` = k + 1, added after
   the padding (padding rows hold class 1.0); `num_detections` = min(100, n). Boxes are the clipped ones.

`detection_out` mirrors OpenVINO 2024.6's CPU `DetectionOutput` (caffe style, `share_location`) on the IR that
Model Optimizer makes with `ssd_v2_support.json`:
1. Confidences = the IR's `Sigmoid` of `concat_1` (oneDNN's, `tf_math.onednn_logistic`), (1917, 91). Locations =
   `concat` with its columns swapped to `[tx, ty, tw, th]` (Model Optimizer permutes the predictor's channels).
2. Decode every prior (`decode_openvino`: CENTER_SIZE, variances 0.1 0.1 0.2 0.2, no clipping).
3. Per class c = 1..90 (`openvino_detections`): priors with confidence > float32(0.3); the 100 best by
   (confidence descending, prior ascending) *before* NMS; greedy NMS (IoU > float32(0.6) suppresses).
4. If more than 100 survive over all classes, keep the 100 best by (confidence descending, prior ascending).
   (Equal confidences of two classes on one prior are unordered in OpenVINO's `std::sort`: here the lower
   class wins; the real runtime may differ there.)
5. Rows `[0, c, confidence, xmin, ymin, xmax, ymax]` ordered by class, then confidence descending, coordinates
   clamped to [0, 1] after NMS; the row after the last detection has image_id -1. Shape (1, 1, 100, 7).

The element-wise functions and the two per-class loops are passed in `ops`: the NumPy definitions of this
package by default; the fast engine passes compiled twins that give the same bits (`ssd_np.engine.postprocess`).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from ssd_np.reference import box_coder, nms, tf_math
from ssd_np.reference.anchors import NUM_ANCHORS, openvino_priors
from ssd_np.reference.tracing import record

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


def check_inputs(box_encodings, class_logits):
    box_encodings, class_logits = np.asarray(box_encodings, F32), np.asarray(class_logits, F32)
    if box_encodings.shape != (NUM_ANCHORS, 4) or class_logits.shape != (NUM_ANCHORS, NUM_CLASSES + 1):
        raise ValueError(f"post-processing needs box_encodings ({NUM_ANCHORS}, 4) and class_logits "
                         f"({NUM_ANCHORS}, {NUM_CLASSES + 1}) for one image, got {box_encodings.shape} and "
                         f"{class_logits.shape}: squeeze `concat` (1, 1917, 1, 4) and `concat_1` (1, 1917, 91)")
    return box_encodings, class_logits


def clip_to_window(boxes):
    """`ClipToWindow` with the window [0, 0, 1, 1]: (n, 4) -> (clipped boxes, indices of those with area > 0)."""
    clipped = np.maximum(np.minimum(boxes, F32(1.0)), F32(0.0))
    return clipped, np.flatnonzero((clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) > F32(0.0))


def class_nms(boxes, scores, suppressed_by=None):
    """One class of `multiclass_nms`: boxes (N, 4) and the class's scores (N,) -> its NMS candidates' anchor
    indices (n,) (ascending), clipped boxes (n, 4) and scores (n,), and the positions among them NMS selects
    (best first). `suppressed_by`, when given, receives position -> (position of the selected box that
    suppressed it, their IoU) (`nms.greedy`)."""
    above = np.flatnonzero(scores > SCORE_THRESHOLD)  # FilterGreaterThan_k
    clipped, nonzero = clip_to_window(boxes[above])  # ClipToWindow_k
    candidates, clipped = above[nonzero], clipped[nonzero]
    max_output_size = min(MAX_DETECTIONS_PER_CLASS, len(candidates))
    selected = nms.non_max_suppression_v2(clipped, scores[candidates], max_output_size, IOU_THRESHOLD, suppressed_by)
    return candidates, clipped, scores[candidates], selected


def multiclass_nms(boxes, class_scores):
    """Per-class filter, clip and NMS, concatenated in class order.
    boxes (N, 4), class_scores (N, 90) -> boxes (n, 4), scores (n,), 0-based classes (n,) float32."""
    kept_boxes, kept_scores, kept_classes = [], [], []
    for k in range(class_scores.shape[1]):
        _, clipped, scores, selected = class_nms(boxes, class_scores[:, k])
        kept_boxes.append(clipped[selected])
        kept_scores.append(scores[selected])
        kept_classes.append(np.full(len(selected), k, dtype=F32))
    return np.concatenate(kept_boxes), np.concatenate(kept_scores), np.concatenate(kept_classes)


def decode_openvino(box_encodings, priors, expf=tf_math.glibc_expf):
    """DetectionOutput `decodeBBoxes` (CENTER_SIZE): TF-order encodings (N, 4), priors (N, 4) `[xmin, ymin,
    xmax, ymax]` -> boxes (N, 4) `[xmin, ymin, xmax, ymax]` and sizes (N,), float32:
        pw = pxmax - pxmin, pcx = (pxmin + pxmax) / 2  (same for y)
        cx = 0.1 * tx * pw + pcx;  w = expf(0.2 * tw) * pw;  box = [cx - w/2, cy - h/2, cx + w/2, cy + h/2]"""
    loc_x, loc_y, loc_w, loc_h = np.asarray(box_encodings, F32)[:, [1, 0, 3, 2]].T
    var_x, var_y, var_w, var_h = OPENVINO_VARIANCES
    prior_xmin, prior_ymin, prior_xmax, prior_ymax = np.asarray(priors, F32).T
    prior_w, prior_h = prior_xmax - prior_xmin, prior_ymax - prior_ymin
    prior_cx, prior_cy = (prior_xmin + prior_xmax) / F32(2.0), (prior_ymin + prior_ymax) / F32(2.0)
    cx, cy = var_x * loc_x * prior_w + prior_cx, var_y * loc_y * prior_h + prior_cy
    w, h = expf(var_w * loc_w) * prior_w, expf(var_h * loc_h) * prior_h
    boxes = np.stack([cx - w / F32(2.0), cy - h / F32(2.0), cx + w / F32(2.0), cy + h / F32(2.0)], axis=1)
    return boxes, (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def openvino_detections(confidences, boxes, sizes):
    """Steps 3 and 4: (P, 91) confidences, decoded (P, 4) boxes and (P,) sizes -> the detections' classes and
    prior indices (int64), in row order."""
    kept = {}  # class -> prior indices after NMS, in order
    for c in range(1, NUM_CLASSES + 1):
        conf = confidences[:, c]
        above = np.flatnonzero(conf > SCORE_THRESHOLD)
        top = above[np.lexsort((above, -conf[above]))][:OPENVINO_TOP_K]
        kept[c] = nms.nms_openvino(top, boxes, sizes, IOU_THRESHOLD)
    if sum(len(p) for p in kept.values()) > OPENVINO_KEEP_TOP_K:
        classes = np.concatenate([np.full(len(p), c) for c, p in kept.items()])
        prior_ids = np.concatenate(list(kept.values()))
        best = np.lexsort((classes, prior_ids, -confidences[prior_ids, classes]))[:OPENVINO_KEEP_TOP_K]
        kept = {c: prior_ids[best][classes[best] == c] for c in kept}
    classes = np.concatenate([np.full(len(p), c, np.int64) for c, p in kept.items()])
    return classes, np.concatenate(list(kept.values())).astype(np.int64)


def clamp01(v):
    """`std::max(0.0f, std::min(1.0f, v))` (NaN becomes 1, as `std::min` compares `v < 1`)."""
    upper = np.where(v < F32(1.0), v, F32(1.0))
    return np.where(F32(0.0) < upper, upper, F32(0.0)).astype(F32)


class Ops(NamedTuple):
    """The kernels post-processing calls; every implementation must return the same bits."""
    tf_exp: Callable
    tf_sigmoid: Callable
    multiclass_nms: Callable
    glibc_expf: Callable
    onednn_logistic: Callable
    openvino_detections: Callable


NUMPY_OPS = Ops(tf_math.tf_exp, tf_math.tf_sigmoid, multiclass_nms, tf_math.glibc_expf, tf_math.onednn_logistic,
                openvino_detections)


def tf_outputs(box_encodings, class_logits, anchors, trace, ops=NUMPY_OPS):
    """TF's four outputs for one image from (1917, 4) `concat`, (1917, 91) `concat_1` and the (1917, 4) anchors:
    `detection_boxes` (1, 100, 4), `detection_scores` (1, 100), `detection_classes` (1, 100), `num_detections`
    (1,), float32."""
    box_encodings, class_logits = check_inputs(box_encodings, class_logits)
    anchors = np.asarray(anchors, F32)
    boxes = box_coder.decode(box_encodings, anchors, trace, ops.tf_exp)  # (1917, 4)
    scores = box_coder.scores(class_logits, trace, ops.tf_sigmoid)[:, 1:]  # (1917, 90)
    nms_boxes, nms_scores, nms_classes = ops.multiclass_nms(boxes, scores)

    order = np.argsort(-nms_scores, kind="stable")[:MAX_TOTAL_DETECTIONS]  # TopKV2: ties to the lower position
    count = len(order)
    detection_boxes = np.zeros((MAX_TOTAL_DETECTIONS, 4), F32)
    detection_scores = np.zeros(MAX_TOTAL_DETECTIONS, F32)
    detection_classes = np.zeros(MAX_TOTAL_DETECTIONS, F32)
    detection_boxes[:count] = nms_boxes[order]
    detection_scores[:count] = nms_scores[order]
    detection_classes[:count] = nms_classes[order]
    outputs = {"detection_boxes": detection_boxes[None], "detection_scores": detection_scores[None],
               "detection_classes": (detection_classes + F32(1.0))[None], "num_detections": np.array([count], F32)}
    trace["Concatenate/concat"] = anchors
    trace["Postprocessor/Reshape_2"] = boxes[None]
    trace.update(outputs)
    return outputs


def detection_out(box_encodings, class_logits, trace, priors=None, ops=NUMPY_OPS):
    """OpenVINO `detection_out` (1, 1, 100, 7) for one image from TF-order `concat` and `concat_1`.
    `priors` (1917, 4) `[xmin, ymin, xmax, ymax]` default to `anchors.openvino_priors()`."""
    box_encodings, class_logits = check_inputs(box_encodings, class_logits)
    priors = openvino_priors() if priors is None else np.asarray(priors, F32)
    confidences = record(trace, "do_ExpandDims_conf/sigmoid", ops.onednn_logistic(class_logits),  # (P, 91)
                         (1, 1, *class_logits.shape))
    boxes, sizes = decode_openvino(box_encodings, priors, ops.glibc_expf)
    classes, prior_ids = ops.openvino_detections(confidences, boxes, sizes)

    count = len(classes)
    rows = np.zeros((OPENVINO_NUM_ROWS, 7), F32)
    rows[:count, 1] = classes
    rows[:count, 2] = confidences[prior_ids, classes]
    rows[:count, 3:] = clamp01(boxes[prior_ids])
    if count < OPENVINO_NUM_ROWS:
        rows[count, 0] = -1.0
    return record(trace, "DetectionOutput", rows[None, None])
