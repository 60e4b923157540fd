"""Greedy NMS of TF (NonMaxSuppressionV2) and OpenVINO (DetectionOutput NMSCF): hand-computed cases (for the
reference's NumPy functions and the engine's compiled twins of the same names), then the twins against each other on random scenes built
for exact ties (equal scores, IoU exactly at the threshold).

The real runtimes' decisions at IoU exactly 0.6 are covered by the iou_tf / iou_openvino fixtures in
test_postprocess.py.
"""

import numpy as np
import pytest

from ssd_np.engine import nms as engine_nms
from ssd_np.reference import nms

F32 = np.float32
THRESHOLD = F32(0.600000023842)
V2 = pytest.mark.parametrize("v2", [nms.non_max_suppression_v2, engine_nms.non_max_suppression_v2],
                             ids=["numpy", "fast"])
OPENVINO = pytest.mark.parametrize("nms_openvino", [nms.nms_openvino, engine_nms.nms_openvino], ids=["numpy", "fast"])


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


@V2
def test_v2_keeps_iou_exactly_at_threshold_and_suppresses_above(v2):
    # IoU([0,0,1,1], [0,0,1,w]) = w / (1 + w - w) = w exactly in float32
    w_at = THRESHOLD
    w_above = np.nextafter(THRESHOLD, F32(1))
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, w_at]], F32)
    assert nms.iou_tf(boxes[0], boxes[1:])[0] == THRESHOLD
    np.testing.assert_array_equal(v2(boxes, F32([0.9, 0.8]), 100, THRESHOLD), [0, 1])
    boxes[1, 3] = w_above
    np.testing.assert_array_equal(v2(boxes, F32([0.9, 0.8]), 100, THRESHOLD), [0])


@V2
def test_v2_orders_by_score_and_breaks_ties_by_lower_index(v2):
    boxes = np.array([[0, 0, 1, 1], [2, 2, 3, 3], [4, 4, 5, 5], [0, 0, 1, 1.01], [6, 6, 7, 7]], F32)
    scores = F32([0.5, 0.7, 0.5, 0.5, 0.9])
    # 4 (0.9), 1 (0.7), then the 0.5 ties in index order 0, 2; 3 overlaps 0 and goes.
    np.testing.assert_array_equal(v2(boxes, scores, 100, THRESHOLD), [4, 1, 0, 2])


@V2
def test_v2_equal_scores_overlapping_keeps_the_lower_index(v2):
    boxes = np.array([[0, 0, 1, 1.01], [0, 0, 1, 1]], F32)
    np.testing.assert_array_equal(v2(boxes, F32([0.5, 0.5]), 100, THRESHOLD), [0])


@V2
def test_v2_stops_at_max_output_size(v2):
    boxes = np.array([[i, 0, i + 1, 1] for i in range(0, 20, 2)], F32)
    scores = np.linspace(0.1, 0.9, 10).astype(F32)
    np.testing.assert_array_equal(v2(boxes, scores, 3, THRESHOLD), [9, 8, 7])


@V2
def test_v2_suppression_is_by_kept_boxes_only(v2):
    """A box suppressed by the best one cannot suppress others (chain A > B > C: A kills B, C survives)."""
    # IoU(A, B) = IoU(B, C) = 0.8 / 1.2 > 0.6, IoU(A, C) = 0.6 / 1.4
    boxes = np.array([[0, 0, 1, 1], [0, 0.2, 1, 1.2], [0, 0.4, 1, 1.4]], F32)
    np.testing.assert_array_equal(v2(boxes, F32([0.9, 0.8, 0.7]), 100, THRESHOLD), [0, 2])


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


@OPENVINO
def test_nms_openvino_keeps_candidate_order(nms_openvino):
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1.01, 1], [3, 3, 4, 4], [5, 5, 6, 6]], F32)
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    # candidates in priority order 3, 1, 0, 2: 0 overlaps the kept 1
    np.testing.assert_array_equal(nms_openvino(np.array([3, 1, 0, 2]), boxes, sizes, THRESHOLD), [3, 1, 2])


@OPENVINO
def test_nms_openvino_iou_at_threshold_is_kept(nms_openvino):
    boxes = np.array([[0, 0, 1, 1], [0, 0, THRESHOLD, 1]], F32)
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.testing.assert_array_equal(nms_openvino(np.array([0, 1]), boxes, sizes, THRESHOLD), [0, 1])
    boxes[1, 2] = np.nextafter(THRESHOLD, F32(1))
    sizes = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    np.testing.assert_array_equal(nms_openvino(np.array([0, 1]), boxes, sizes, THRESHOLD), [0])


# --- compiled twins against the NumPy functions ---------------------------------------------------------------

def tie_prone_scene(rng, n):
    """n boxes on a 1/8 grid (many IoUs exactly equal, some exactly 0.6: [0,0,1,1] vs [0,0,1,0.6] is not on the grid,
    so a few such pairs are planted), corners sometimes swapped, some with zero area, scores on 5 levels."""
    boxes = np.sort(rng.integers(0, 9, (n, 2, 2)), axis=1).reshape(n, 4)[:, [0, 2, 1, 3]].astype(F32) / F32(8)
    swap = rng.random(n) < 0.2
    boxes[swap] = boxes[swap][:, [2, 3, 0, 1]]
    planted = rng.choice(n, size=min(n, 6), replace=False)
    boxes[planted[::2]] = [0, 0, 1, 1]
    boxes[planted[1::2]] = [0, 0, 1, THRESHOLD]
    scores = rng.integers(1, 6, n).astype(F32) / F32(5)
    return boxes, scores


def test_iou_fast_equal_twins():
    rng = np.random.default_rng(1)
    boxes, _ = tie_prone_scene(rng, 61)
    boxes[5] = np.nan
    sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(F32)
    worst_tf = worst_ov = 0.0
    for i in range(len(boxes)):
        tf_twin = nms.iou_tf(boxes[i], boxes)
        tf_fast = np.array([engine_nms.iou_tf(boxes[i], other) for other in boxes], F32)
        ov_twin = nms.iou_openvino(boxes[i], sizes[i], boxes, sizes)
        ov_fast = np.array([engine_nms.iou_openvino(boxes[i], sizes[i], boxes[j], sizes[j]) for j in range(len(boxes))],
                           F32)
        np.testing.assert_array_equal(tf_fast, tf_twin)  # NaN where NaN
        np.testing.assert_array_equal(ov_fast, ov_twin)
        worst_tf = max(worst_tf, np.abs(tf_fast - tf_twin).max(where=~np.isnan(tf_twin), initial=0.0))
        worst_ov = max(worst_ov, np.abs(ov_fast - ov_twin).max(where=~np.isnan(ov_twin), initial=0.0))
    print(f"IoU of 61 x 61 boxes: max difference TF {worst_tf}, OpenVINO {worst_ov}")


def test_argsort_by_score_is_lexsort():
    rng = np.random.default_rng(2)
    for n in [0, 1, 2, 3, 7, 64, 101, 1917]:
        scores = rng.integers(-3, 4, n).astype(F32) / F32(2)  # many ties, +0 and -0
        scores[rng.random(n) < 0.1] = np.nan
        scores[rng.random(n) < 0.1] = -0.0
        ties = rng.permutation(n).astype(np.int64)
        np.testing.assert_array_equal(engine_nms.argsort_by_score(scores, ties), np.lexsort((ties, -scores)))
        np.testing.assert_array_equal(engine_nms.argsort_by_score(scores, np.arange(n)),
                                      np.argsort(-scores, kind="stable"))
        np.testing.assert_array_equal(engine_nms.argsort_by_score(scores[::2], ties[::2]),  # stride 2
                                      np.lexsort((ties[::2], -scores[::2])))


def test_v2_fast_equals_twin_on_random_scenes():
    rng = np.random.default_rng(3)
    selected = 0
    for trial in range(150):
        n = int(rng.integers(0, 160)) | 1  # odd sizes
        boxes, scores = tie_prone_scene(rng, n)
        max_output = int(rng.choice([1, 3, 100, n]))
        twin = nms.non_max_suppression_v2(boxes, scores, max_output, THRESHOLD)
        fast = engine_nms.non_max_suppression_v2(boxes, scores, max_output, THRESHOLD)
        np.testing.assert_array_equal(fast, twin, err_msg=f"trial {trial}")
        strided = engine_nms.non_max_suppression_v2(np.repeat(boxes, 2, axis=0)[::2], np.repeat(scores, 2)[::2],
                                                  max_output, THRESHOLD)
        np.testing.assert_array_equal(strided, twin, err_msg=f"trial {trial}, stride 2")
        selected += len(twin)
    print(f"150 scenes, {selected} selections, all identical (max difference 0)")


def test_nms_openvino_fast_equals_twin_on_random_scenes():
    rng = np.random.default_rng(4)
    selected = 0
    for trial in range(150):
        n = int(rng.integers(0, 160)) | 1
        boxes, _ = tie_prone_scene(rng, n)
        boxes = boxes[:, [1, 0, 3, 2]]  # [xmin, ymin, xmax, ymax]
        sizes = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(F32)
        candidates = rng.permutation(n)[: int(rng.integers(0, n + 1))].astype(np.int64)
        twin = nms.nms_openvino(candidates, boxes, sizes, THRESHOLD)
        fast = engine_nms.nms_openvino(candidates, boxes, sizes, THRESHOLD)
        np.testing.assert_array_equal(fast, twin, err_msg=f"trial {trial}")
        selected += len(twin)
    print(f"150 scenes, {selected} selections, all identical (max difference 0)")
