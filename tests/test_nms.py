"""Greedy NMS of TF (NonMaxSuppressionV2) and OpenVINO (DetectionOutput NMSCF): hand-computed cases.

The real runtimes' decisions at IoU exactly 0.6 are covered by the iou_tf / iou_openvino fixtures in
test_postprocess.py.
"""

import numpy as np
import pytest

from ssd_np import nms

F32 = np.float32
THRESHOLD = F32(0.600000023842)


def test_iou_tf_hand_computed():
    unit = np.array([0, 0, 1, 1], F32)
    boxes = np.array([[0, 0.5, 1, 1.5],  # half overlap: 0.5 / 1.5
                      [1, 1.5, 0, 0.5],  # same box, corners swapped
                      [0, 0, 1, 1],  # identical
                      [2, 2, 3, 3],  # disjoint
                      [0, 0, 0, 1]], F32)  # zero area -> 0
    np.testing.assert_array_equal(nms.iou_tf(unit, boxes), F32([F32(0.5) / F32(1.5), F32(0.5) / F32(1.5), 1, 0, 0]))


def test_iou_tf_is_symmetric():
    rng = np.random.default_rng(0)
    boxes = rng.uniform(0, 1, (300, 4)).astype(F32)
    forward = np.array([nms.iou_tf(boxes[i], boxes[[i + 1]])[0] for i in range(299)])
    backward = np.array([nms.iou_tf(boxes[i + 1], boxes[[i]])[0] for i in range(299)])
    np.testing.assert_array_equal(forward, backward)


def test_v2_keeps_iou_exactly_at_threshold_and_suppresses_above():
    # IoU([0,0,1,1], [0,0,1,w]) = w / (1 + w - w) = w exactly in float32
    w_at = THRESHOLD
    w_above = np.nextafter(THRESHOLD, F32(1))
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, w_at]], F32)
    assert nms.iou_tf(boxes[0], boxes[1:])[0] == THRESHOLD
    np.testing.assert_array_equal(nms.non_max_suppression_v2(boxes, F32([0.9, 0.8]), 100, THRESHOLD), [0, 1])
    boxes[1, 3] = w_above
    np.testing.assert_array_equal(nms.non_max_suppression_v2(boxes, F32([0.9, 0.8]), 100, THRESHOLD), [0])


def test_v2_orders_by_score_and_breaks_ties_by_lower_index():
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [0, 0, 1, 1.01], [6, 6, 7, 7]], F32)
    scores = F32([0.5, 0.7, 0.5, 0.5, 0.9])
    # 4 (0.9), 1 (0.7), then the 0.5 ties in index order 0, 2; 3 overlaps 0 and goes.
    np.testing.assert_array_equal(nms.non_max_suppression_v2(boxes, scores, 100, THRESHOLD), [4, 1, 0, 2])


def test_v2_equal_scores_overlapping_keeps_the_lower_index():
    boxes = np.array([[0, 0, 1, 1.01], [0, 0, 1, 1]], F32)
    np.testing.assert_array_equal(nms.non_max_suppression_v2(boxes, F32([0.5, 0.5]), 100, THRESHOLD), [0])


def test_v2_stops_at_max_output_size():
    boxes = np.array([[i, 0, i + 1, 1] for i in range(0, 20, 2)], F32)
    scores = np.linspace(0.1, 0.9, 10).astype(F32)
    np.testing.assert_array_equal(nms.non_max_suppression_v2(boxes, scores, 3, THRESHOLD), [9, 8, 7])


def test_v2_suppression_is_by_kept_boxes_only():
    """A box suppressed by the best one cannot suppress others (chain A > B > C: A kills B, C survives)."""
    # IoU(A, B) = IoU(B, C) = 0.8 / 1.2 > 0.6, IoU(A, C) = 0.6 / 1.4
    boxes = np.array([[0, 0, 1, 1], [0, 0.2, 1, 1.2], [0, 0.4, 1, 1.4]], F32)
    np.testing.assert_array_equal(nms.non_max_suppression_v2(boxes, F32([0.9, 0.8, 0.7]), 100, THRESHOLD), [0, 2])


def test_v2_rejects_bad_shapes():
    with pytest.raises(ValueError, match="boxes"):
        nms.non_max_suppression_v2(np.zeros((3, 5), F32), np.zeros(3, F32), 10, THRESHOLD)


def test_iou_openvino_hand_computed():
    box = np.array([0, 0, 1, 1], F32)  # [xmin, ymin, xmax, ymax]
    boxes = np.array([[0.5, 0, 1.5, 1],  # half overlap
                      [1, 0, 2, 1],  # touching: intersection width 0 -> 0
                      [1.5, 0, 2.5, 1],  # disjoint (early exit)
                      [0, 0, 1, 1]], F32)
    sizes = F32([1, 1, 1, 1])
    np.testing.assert_array_equal(nms.iou_openvino(box, F32(1), boxes, sizes), F32([0.5 / 1.5, 0, 0, 1]))


def test_iou_openvino_uses_the_precomputed_sizes():
    """OpenVINO divides by the sizes computed at decoding, not by areas recomputed from the coordinates."""
    box = np.array([0, 0, 1, 1], F32)
    other = np.array([[0, 0, 1, 1]], F32)
    assert nms.iou_openvino(box, F32(2.0), other, F32([2.0]))[0] == F32(1.0 / 3.0)


def test_nms_openvino_keeps_candidate_order():
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1.01, 1], [3, 3, 4, 4], [5, 5, 6, 6]], F32)
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # candidates in priority order 3, 1, 0, 2: 0 overlaps the kept 1
    np.testing.assert_array_equal(nms.nms_openvino(np.array([3, 1, 0, 2]), boxes, sizes, THRESHOLD), [3, 1, 2])


def test_nms_openvino_iou_at_threshold_is_kept():
    boxes = np.array([[0, 0, 1, 1], [0, 0, THRESHOLD, 1]], F32)
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.testing.assert_array_equal(nms.nms_openvino(np.array([0, 1]), boxes, sizes, THRESHOLD), [0, 1])
    boxes[1, 2] = np.nextafter(THRESHOLD, F32(1))
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.testing.assert_array_equal(nms.nms_openvino(np.array([0, 1]), boxes, sizes, THRESHOLD), [0])
