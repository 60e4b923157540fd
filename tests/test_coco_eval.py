"""ssd_np.verify.coco_eval against hand-computed values, stored pycocotools numbers and (when installed) live pycocotools."""

import contextlib
import hashlib
import io
import json
import os
import sys

import numpy as np
import pytest

from ssd_np.verify import coco_eval

DATA = os.path.join(os.path.dirname(__file__), "data")
ANNOTATIONS = os.path.join(DATA, "instances_val2017_dev.json")
sys.path.insert(0, os.path.dirname(__file__))
from coco_cases import fingerprint, make_cases, run_pycocotools  # noqa: E402

with open(os.path.join(DATA, "coco_eval_expected.json")) as f:
    EXPECTED = json.load(f)
CASE_NAMES = list(EXPECTED["cases"])
EPS = np.spacing(1)


@pytest.fixture(scope="module")
def dataset():
    with open(ANNOTATIONS, "rb") as f:
        text = f.read()
    assert hashlib.sha256(text).hexdigest() == EXPECTED["annotations"]["sha256"]
    return json.loads(text)


@pytest.fixture(scope="module")
def cases(dataset):
    return make_cases(dataset)


def _dataset(anns, n_images=2, n_cats=2):
    """A tiny COCO dict: images 1..n_images, categories 1..n_cats, annotations (image, cat, bbox[, crowd])."""
    return {
        "images": [{"id": i, "width": 640, "height": 480} for i in range(1, n_images + 1)],
        "categories": [{"id": k, "name": f"c{k}"} for k in range(1, n_cats + 1)],
        "annotations": [{"id": n + 1, "image_id": a[0], "category_id": a[1], "bbox": a[2], "area": a[2][2] * a[2][3],
                         "iscrowd": int(len(a) > 3 and a[3])} for n, a in enumerate(anns)],
    }


def _det(image_id, cat, box, score):
    return {"image_id": image_id, "category_id": cat, "bbox": box, "score": score}


def _assert_stats(metrics, expected):
    np.testing.assert_allclose(metrics.stats, expected, rtol=0, atol=1e-12)


# --- hand-computed cases -------------------------------------------------------------------------------------

def test_bbox_iou_hand_values():
    dt = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [10, 0, 5, 5], [2, 2, 4, 4], [5, 5, 10, 10], [0, 0, 0, 10]], float)
    gt = np.array([[0, 0, 10, 10]] * 3 + [[0, 0, 100, 100]] + [[0, 0, 10, 10]] * 2, float)
    crowd = np.array([False, False, False, True, False, False])
    # identical, half, touching edge, inside a crowd region (i / dt area), quarter overlap 25 / 175, zero width
    np.testing.assert_array_equal(coco_eval.bbox_iou(dt, gt, crowd), [1.0, 0.5, 0.0, 1.0, 25 / 175, 0.0])


def test_two_images_false_positive_and_borderline_match():
    # image 1: gt [0,0,10,10]; image 2: gt [0,0,10,10]; all area 100 (small), category 1.
    gt = _dataset([(1, 1, [0, 0, 10, 10]), (2, 1, [0, 0, 10, 10])])
    results = [_det(1, 1, [50, 50, 10, 10], 0.95),  # false positive
               _det(1, 1, [0, 0, 10, 10], 0.9),  # IoU 1
               _det(2, 1, [0, 0, 10, 5], 0.8)]  # IoU exactly 0.5: a match at t = 0.5 only
    m = coco_eval.evaluate(gt, results)
    # t = .50: tp 0,1,2 fp 1,1,1 -> precision 0, 1/2, 2/3 -> envelope 2/3 at every recall threshold.
    ap50 = 2 / (3 + EPS)
    # t > .50: tp 0,1,1 fp 1,1,2 -> recall 0, 1/2, 1/2, envelope 1/2 up to recall 0.5 (51 thresholds), then 0.
    ap_high = 51 * (1 / (2 + EPS)) / 101
    ap = (ap50 + 9 * ap_high) / 10
    # maxDets 1: image 1 keeps only the false positive; image 2's detection counts at t = .5 only.
    expected = [ap, ap50, ap_high, ap, -1, -1, 0.05, 0.55, 0.55, 0.55, -1, -1]
    _assert_stats(m, expected)
    assert m.per_class_ap() == {"c1": pytest.approx(ap, abs=1e-15), "c2": -1.0}


def test_crowd_region_absorbs_repeated_detections():
    # crowd gt [0,0,100,100] and a regular gt [200,200,10,10]; two detections inside the crowd region have crowd
    # IoU 1 (intersection / detection area), both match the crowd gt and are ignored, so AP = AR = 1.
    gt = _dataset([(1, 1, [0, 0, 100, 100], True), (1, 1, [200, 200, 10, 10])], n_images=1, n_cats=1)
    results = [_det(1, 1, [10, 10, 20, 20], 0.9), _det(1, 1, [50, 50, 20, 20], 0.8),
               _det(1, 1, [200, 200, 10, 10], 0.7)]
    _assert_stats(coco_eval.evaluate(gt, results), [1, 1, 1, 1, -1, -1, 0, 1, 1, 1, -1, -1])  # maxDets 1: ignored det
    # Without the crowd flag both are false positives ahead of the true positive: precision 1/3 up to recall 1/2.
    gt["annotations"][0]["iscrowd"] = 0
    ap = 51 * (1 / (3 + EPS)) / 101
    ap_small = 1 / (3 + EPS)  # the large gt is out of range; the detections (area 400) are not
    _assert_stats(coco_eval.evaluate(gt, results), [ap, ap, ap, ap_small, -1, 0, 0, 0.5, 0.5, 1, -1, 0])


def test_area_ranges_ignore_gts_and_unmatched_detections():
    # small gt (area 100) and large gt (area 40000); a large false positive scores highest.
    gt = _dataset([(1, 1, [0, 0, 10, 10]), (1, 1, [100, 100, 200, 200])], n_images=1, n_cats=1)
    results = [_det(1, 1, [400, 0, 150, 150], 0.95), _det(1, 1, [0, 0, 10, 10], 0.9),
               _det(1, 1, [100, 100, 200, 200], 0.5)]
    m = coco_eval.evaluate(gt, results)
    ap_all = 2 / (3 + EPS)  # fp, tp, tp
    ap_small = 1 / (1 + EPS)  # the large gt is ignored, so is its detection; the large false positive is out of range
    ap_large = 1 / (2 + EPS)  # the small detection matches the ignored small gt: fp, tp
    _assert_stats(m, [ap_all, ap_all, ap_all, ap_small, -1, ap_large, 0, 1, 1, 1, -1, 1])


def test_format_summary_and_as_dict():
    gt = _dataset([(1, 1, [0, 0, 10, 10]), (2, 1, [0, 0, 10, 10])])
    m = coco_eval.evaluate(gt, [_det(1, 1, [0, 0, 10, 10], 0.9)])
    lines = m.format_summary().splitlines()
    assert len(lines) == 12
    assert lines[0] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.505"  # 51 / 101
    assert lines[4] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = -1.000"
    assert lines[6] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.500"
    assert list(m.as_dict()) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    assert m.as_dict()["AR1"] == 0.5


def test_empty_results_give_zero(dataset):
    m = coco_eval.evaluate(dataset, [])
    assert np.all(m.stats == 0.0)
    gt = _dataset([(1, 1, [0, 0, 10, 10])])
    np.testing.assert_array_equal(coco_eval.evaluate(gt, []).stats, [0, 0, 0, 0, -1, -1, 0, 0, 0, 0, -1, -1])


def test_paths_and_image_subset(tmp_path):
    gt = _dataset([(1, 1, [0, 0, 10, 10]), (2, 1, [0, 0, 10, 10])])
    results = [_det(1, 1, [0, 0, 10, 10], 0.9), _det(2, 1, [50, 50, 10, 10], 0.95)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(results))
    m = coco_eval.evaluate(tmp_path / "gt.json", str(tmp_path / "dt.json"))
    np.testing.assert_array_equal(m.stats, coco_eval.evaluate(gt, results).stats)
    reused = coco_eval.evaluate(coco_eval.load_annotations(gt), results)
    np.testing.assert_array_equal(reused.stats, m.stats)
    sub = coco_eval.evaluate(gt, results, image_ids=[1])  # image 2's false positive is not evaluated
    assert sub.image_ids == (1,) and sub.stats[0] == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("results, message", [
    ([_det(99, 1, [0, 0, 1, 1], 0.5)], "image ids"),
    ([_det(1, 7, [0, 0, 1, 1], 0.5)], "category ids"),
    ([_det(1, 1, [0, 0, 1], 0.5)], "result 0: bbox"),
    ([_det(1, 1, [0, 0, 1, 1], 0.5), _det(1, 1, [0, 0, float("nan"), 1], 0.5)], "result 1: bbox"),
    ([_det(1, 1, [0, 0, -1, 1], 0.5)], "width, height >= 0"),
    ([_det(1, 1, [0, 0, "a", 1], 0.5)], "result 0: bbox"),
    ([_det(1, 1, [0, 0, "2", "1"], 0.5)], "result 0: bbox .* must be 4 finite numbers"),
    ([_det(1, 1, [0, 0, 1, 1], None)], "result 0: score"),
    ([_det(1, 1, [0, 0, 1, 1], 0.5), {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}], "result 1: .* 'score'"),
    ({"image_id": 1}, "must be a list"),
])
def test_bad_results_raise(results, message):
    with pytest.raises(ValueError, match=message):
        coco_eval.evaluate(_dataset([(1, 1, [0, 0, 10, 10])]), results)


def test_bad_annotations_and_image_ids_raise():
    gt = _dataset([(1, 1, [0, 0, 10, 10]), (1, 1, [5, 5, 10, 10])])
    gt["annotations"][1]["id"] = 1
    with pytest.raises(ValueError, match="unique and nonzero"):
        coco_eval.evaluate(gt, [])
    gt = _dataset([(1, 1, [0, 0, 10, 10])])
    with pytest.raises(ValueError, match="image_ids not in"):
        coco_eval.evaluate(gt, [], image_ids=[1, 5])
    with pytest.raises(ValueError, match="image_ids is empty"):
        coco_eval.evaluate(gt, [], image_ids=[])
    with pytest.raises(ValueError, match="COCO instances dict"):
        coco_eval.evaluate({"images": []}, [])


# --- numba kernel against its plain twin -----------------------------------------------------------------------

def _random_match_problem(rng, n_groups):
    """Groups of 0..7 gts and 0..13 detections, IoUs drawn partly from the thresholds themselves (exact ties)."""
    n_gt, n_dt = rng.integers(0, 8, n_groups), rng.integers(0, 14, n_groups)
    gt_start = np.concatenate([[0], np.cumsum(n_gt)])
    dt_start = np.concatenate([[0], np.cumsum(n_dt)])
    iou_start = np.concatenate([[0], np.cumsum(n_gt * n_dt)])
    pool = np.concatenate([coco_eval.IOU_THRESHOLDS, [0.0, 0.3, 0.62, 0.97, 1.0]])
    iou = np.where(rng.random(iou_start[-1]) < 0.6, rng.choice(pool, iou_start[-1]), rng.random(iou_start[-1]))
    gt_crowd = rng.random(gt_start[-1]) < 0.2
    gt_ignore = gt_crowd | (rng.random((4, gt_start[-1])) < 0.25)  # (A, N)
    key = np.repeat(np.arange(n_groups), n_gt)
    gt_order = np.stack([np.argsort(2 * key + ig, kind="stable") for ig in gt_ignore])
    return iou, iou_start, gt_start, dt_start, gt_order, gt_ignore, gt_crowd, coco_eval.IOU_THRESHOLDS


def test_match_kernel_equals_numpy_twin():
    rng = np.random.default_rng(0)
    for n_groups in (1, 7, 33, 101):
        args = _random_match_problem(rng, n_groups)
        matched, ignore = coco_eval._match_kernel(*args)
        matched_np, ignore_np = coco_eval._match_numpy(*args)
        n_diff = int(np.sum(matched != matched_np) + np.sum(ignore != ignore_np))
        print(f"groups={n_groups} detections={args[3][-1]} gts={args[2][-1]} differing flags: {n_diff}")
        assert n_diff == 0
        assert matched.any() and ignore.any()


def test_evaluate_with_numpy_twin_matches_kernel(dataset, cases, monkeypatch):
    case = cases["crowd_dets"]
    kernel = coco_eval.evaluate(dataset, case["results"])
    monkeypatch.setattr(coco_eval, "_match_kernel", coco_eval._match_numpy)
    twin = coco_eval.evaluate(dataset, case["results"])
    np.testing.assert_array_equal(twin.precision, kernel.precision)
    np.testing.assert_array_equal(twin.stats, kernel.stats)


# --- synthetic result sets against stored pycocotools numbers --------------------------------------------------

@pytest.mark.parametrize("name", CASE_NAMES)
def test_against_stored_pycocotools(name, dataset, cases):
    case, expected = cases[name], EXPECTED["cases"][name]
    assert fingerprint(case) == expected["fingerprint"], "tests/coco_cases.py no longer makes the stored case"
    m = coco_eval.evaluate(dataset, case["results"], case["image_ids"])
    diff = np.max(np.abs(m.stats - np.array(expected["stats"])))
    ours, theirs = m.per_class_ap(), expected["per_class_ap"]
    class_diff = max(abs(ours[k] - theirs[k]) for k in theirs)
    print(f"{name}: max |stats diff| {diff:.3g}, max |per-class AP diff| {class_diff:.3g}")
    assert diff <= 1e-12 and class_diff <= 1e-12 and ours.keys() == theirs.keys()
    assert hashlib.sha256(m.precision.tobytes()).hexdigest() == expected["precision_sha256"]
    assert hashlib.sha256(m.recall.tobytes()).hexdigest() == expected["recall_sha256"]
    assert m.format_summary() == expected["summary"]


def test_stored_cases_cover_the_brief():
    assert {"gt_as_dets_score1", "gt_as_dets_varied", "jitter_0.02", "jitter_0.2", "dropped_duplicated",
            "false_positives", "shuffled_scores", "score_ties", "crowd_dets", "image_subset",
            "over_100_per_image", "empty"} <= set(CASE_NAMES)


# --- live pycocotools ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coco_gt():
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(ANNOTATIONS)


def test_parameters_equal_pycocotools():
    pytest.importorskip("pycocotools")
    from pycocotools.cocoeval import Params

    p = Params(iouType="bbox")
    np.testing.assert_array_equal(p.iouThrs, coco_eval.IOU_THRESHOLDS)
    np.testing.assert_array_equal(p.recThrs, coco_eval.RECALL_THRESHOLDS)
    assert p.maxDets == list(coco_eval.MAX_DETS) and p.areaRngLbl == list(coco_eval.AREA_LABELS)
    assert [tuple(r) for r in p.areaRng] == list(coco_eval.AREA_RANGES)


def test_bbox_iou_equals_pycocotools_mask_iou():
    pytest.importorskip("pycocotools")
    from pycocotools import mask

    rng = np.random.default_rng(3)
    dt = np.concatenate([np.round(rng.uniform(0, 50, (12, 4)), n) for n in (0, 1, 2)] + [rng.uniform(0, 50, (1, 4))])
    gt = np.round(rng.uniform(0, 50, (23, 4)), 1)
    crowd = rng.random(23) < 0.3
    theirs = mask.iou(dt.tolist(), gt.tolist(), crowd.astype(np.uint8).tolist())  # (37, 23)
    d, g = np.meshgrid(np.arange(37), np.arange(23), indexing="ij")
    ours = coco_eval.bbox_iou(dt[d.ravel()], gt[g.ravel()], crowd[g.ravel()]).reshape(37, 23)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_against_live_pycocotools(name, dataset, cases, coco_gt):
    case = cases[name]
    E, printed = run_pycocotools(coco_gt, case)
    m = coco_eval.evaluate(dataset, case["results"], case["image_ids"])
    diffs = {key: float(np.max(np.abs(ours - np.asarray(theirs))))
             for key, ours, theirs in [("stats", m.stats, E.stats), ("precision", m.precision, E.eval["precision"]),
                                       ("recall", m.recall, E.eval["recall"])]}
    print(f"{name}: max |diff| vs pycocotools {diffs}")
    assert max(diffs.values()) <= 1e-12
    assert printed.rstrip("\n").endswith(m.format_summary())


def test_hand_cases_against_live_pycocotools(tmp_path):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    gt = _dataset([(1, 1, [0, 0, 100, 100], True), (1, 1, [200, 200, 10, 10]), (1, 1, [0, 0, 10, 10]),
                   (2, 1, [100, 100, 200, 200]), (2, 2, [0, 0, 10, 10])])
    results = [_det(1, 1, [10, 10, 20, 20], 0.9), _det(1, 1, [50, 50, 20, 20], 0.8),
               _det(1, 1, [200, 200, 10, 10], 0.7), _det(1, 1, [0, 0, 10, 5], 0.9),
               _det(2, 1, [400, 0, 150, 150], 0.95), _det(2, 1, [100, 100, 200, 200], 0.5),
               _det(2, 2, [0, 0, 10, 10], 0.5)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
    E, _ = run_pycocotools(coco_gt, {"results": results, "image_ids": None})
    np.testing.assert_array_equal(coco_eval.evaluate(gt, results).stats, E.stats)
    # No annotations at all: every stat undefined (-1).
    gt["annotations"] = []
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
    E, _ = run_pycocotools(coco_gt, {"results": results, "image_ids": None})
    np.testing.assert_array_equal(coco_eval.evaluate(gt, results).stats, E.stats)
    assert np.all(E.stats == -1)


def test_float32_boxes_area_like_pycocotools(tmp_path):
    # w*h of float32 values is a float32 product in loadRes: (32 + 2**-18) * (32 - 2**-19) is 1024 + 2**-14 - 2**-37
    # in float64 (medium only) but rounds to 1024.0 in float32 (small and medium), which decides whether the
    # unmatched detection counts as a false positive for APs.
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO

    gt = _dataset([(1, 1, [0, 0, 10, 10])], n_images=1, n_cats=1)
    w, h = np.float32(32 + 2**-18), np.float32(32 - 2**-19)
    assert float(w) * float(h) > 1024 and w * h == np.float32(1024)
    results = [_det(1, 1, [np.float32(100), np.float32(100), w, h], np.float32(0.9)), _det(1, 1, [0, 0, 10, 10], 0.8)]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
    E, _ = run_pycocotools(coco_gt, {"results": results, "image_ids": None})
    m = coco_eval.evaluate(gt, results)
    np.testing.assert_array_equal(m.stats, E.stats)
    assert m.stats[3] == pytest.approx(0.5, abs=1e-12)  # the 1024-area false positive counts for small
