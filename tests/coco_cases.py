"""Deterministic synthetic COCO bbox result sets for checking ssd_np.verify.coco_eval against pycocotools.

Shared by tests/test_coco_eval.py and tools/make_coco_eval_expected.py (which stores pycocotools' numbers for
every case in tests/data/coco_eval_expected.json), as is `run_pycocotools`, the one way both run pycocotools.
Each case is built from its own seeded np.random.default_rng and uses only its uniform, normal, integers,
choice and permutation streams and + - * / (no exp or log, whose last bit differs between NumPy versions), so
NumPy 1.26 (ref venv) and 2.x make the same cases. Results hold plain Python floats and ints; `fingerprint`
hashes a case so a change in the generator is detected instead of compared against stale numbers.
"""

import contextlib
import copy
import hashlib
import io
import json

import numpy as np


def make_cases(dataset: dict) -> dict:
    """COCO instances dict -> {case name: {"results": [...], "image_ids": list | None}}."""
    images = sorted(dataset["images"], key=lambda img: img["id"])
    anns = dataset["annotations"]
    regular = [a for a in anns if not a["iscrowd"]]
    crowd = [a for a in anns if a["iscrowd"]]
    cat_ids = sorted(c["id"] for c in dataset["categories"])
    annotated = {a["image_id"] for a in anns}
    empty_images = [img for img in images if img["id"] not in annotated]

    def rng(seed):
        return np.random.default_rng(seed)

    def jittered(r, sources, sigma, score=None):
        return [_det(a["image_id"], a["category_id"], _jitter(r, a["bbox"], sigma),
                     r.random() if score is None else score) for a in sources]

    def false_positives(r, per_image):
        return [_det(img["id"], int(r.choice(cat_ids)), _random_box(r, img), r.random())
                for img in images for _ in range(per_image)]

    cases = {}
    cases["gt_as_dets_score1"] = [_det(a["image_id"], a["category_id"], a["bbox"], 1.0) for a in regular]
    r = rng(1)
    cases["gt_as_dets_incl_crowd"] = [_det(a["image_id"], a["category_id"], a["bbox"], r.random()) for a in anns]
    r = rng(2)
    cases["gt_as_dets_varied"] = [_det(a["image_id"], a["category_id"], a["bbox"], r.random()) for a in regular]
    for seed, sigma in enumerate((0.02, 0.05, 0.1, 0.2), start=3):
        cases[f"jitter_{sigma}"] = jittered(rng(seed), regular, sigma)

    r = rng(7)
    kept = [a for a in regular if r.random() > 0.3]
    cases["dropped_duplicated"] = jittered(r, kept, 0.05) + jittered(r, [a for a in kept if r.random() < 0.25], 0.05)

    r = rng(8)
    wrong = [dict(a, category_id=int(r.choice([c for c in cat_ids if c != a["category_id"]])))
             for a in regular if r.random() < 0.1]
    cases["false_positives"] = (jittered(r, [a for a in regular if r.random() < 0.8], 0.05)
                                + false_positives(r, 3) + jittered(r, wrong, 0.02))

    r = rng(9)
    dets = jittered(r, regular, 0.1)
    for det, score in zip(dets, r.permutation([d["score"] for d in dets])):
        det["score"] = float(score)
    cases["shuffled_scores"] = dets

    r = rng(10)
    cases["score_ties"] = jittered(r, regular, 0.1, None) + false_positives(r, 2)
    for det in cases["score_ties"]:
        det["score"] = float(np.ceil(det["score"] * 4) / 4)  # {0.25, 0.5, 0.75, 1.0}

    r = rng(11)
    on_crowd = []
    for a in crowd:
        x, y, w, h = a["bbox"]
        for _ in range(6):
            sw, sh = w * r.uniform(0.05, 0.6), h * r.uniform(0.05, 0.6)
            sx, sy = x + r.uniform(-0.2, 1.0) * (w - sw), y + r.uniform(-0.2, 1.0) * (h - sh)
            on_crowd.append(_det(a["image_id"], a["category_id"], [sx, sy, sw, sh], r.random()))
    cases["crowd_dets"] = on_crowd + jittered(r, regular, 0.08)

    r = rng(12)
    subset = sorted(int(i) for i in r.choice([img["id"] for img in images], size=60, replace=False))
    subset = sorted(set(subset) | {empty_images[0]["id"]}) if empty_images else subset
    cases["image_subset"] = {"results": jittered(r, regular, 0.1) + false_positives(r, 2), "image_ids": subset}

    r = rng(13)
    crowded = images[::17]  # 11 images with 100-250 detections of one category, scores on a 0.01 grid (ties at the cut)
    many = []
    for img in crowded:
        cat = int(r.choice(cat_ids[:3]))
        many += [_det(img["id"], cat, _random_box(r, img), r.random()) for _ in range(int(r.integers(100, 250)))]
        many += jittered(r, [a for a in regular if a["image_id"] == img["id"]] * 3, 0.1)
    for det in many:
        det["score"] = float(np.round(det["score"], 2))
    cases["over_100_per_image"] = many + jittered(r, regular, 0.05)

    r = rng(14)
    cases["images_without_gt"] = jittered(r, regular, 0.05) + [
        _det(img["id"], int(r.choice(cat_ids)), _random_box(r, img), r.random())
        for img in empty_images for _ in range(4)]

    r = rng(15)
    edges = []
    for a in regular[::3]:
        x, y = a["bbox"][:2]
        for w, h in ((32, 32), (16, 64), (96, 96), (48, 192), (0, 10), (31.5, 32.5), (1024, 1)):
            edges.append(_det(a["image_id"], a["category_id"], [int(round(x)), int(round(y)), w, h], r.random()))
    cases["area_boundaries"] = edges + jittered(r, regular, 0.05)

    r = rng(16)
    cases["single_category"] = jittered(r, [a for a in regular if a["category_id"] == cat_ids[0]], 0.05)

    cases["empty"] = []

    r = rng(17)
    mix = []
    for a in regular:
        if r.random() < 0.15:
            continue
        sigma = r.uniform(0.0, 0.25)
        score = float(np.clip(0.9 - 2.5 * sigma + r.normal(0, 0.1), 0.01, 1.0))
        mix.append(_det(a["image_id"], a["category_id"], _jitter(r, a["bbox"], sigma), score))
        if r.random() < 0.1:
            mix.append(_det(a["image_id"], a["category_id"], _jitter(r, a["bbox"], 0.1), score * r.random()))
    for det in false_positives(r, 5):
        det["score"] *= 0.5
        mix.append(det)
    cases["realistic_mix"] = mix

    return {name: case if isinstance(case, dict) else {"results": case, "image_ids": None}
            for name, case in cases.items()}


def fingerprint(case: dict) -> str:
    """sha256 of a case's results and image ids."""
    text = json.dumps([case["results"], case["image_ids"]], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _det(image_id, category_id, box, score) -> dict:
    bbox = [v if isinstance(v, int) else float(v) for v in box]
    return {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": float(score)}


def _jitter(r, box, sigma) -> list:
    """[x, y, w, h] moved by N(0, sigma * size), each side scaled by max(0.1, 1 + N(0, sigma))."""
    x, y, w, h = box
    dx, dy, sw, sh = r.normal(0.0, sigma, size=4)
    return [x + dx * w, y + dy * h, w * max(0.1, 1.0 + sw), h * max(0.1, 1.0 + sh)]


def _random_box(r, img) -> list:
    """A box inside the image, each side 2..50% of the image's, more often small."""
    w = img["width"] * (0.02 + 0.48 * r.random() ** 2)
    h = img["height"] * (0.02 + 0.48 * r.random() ** 2)
    return [r.uniform(0, img["width"] - w), r.uniform(0, img["height"] - h), w, h]


def run_pycocotools(coco_gt, case: dict):
    """pycocotools' COCOeval (bbox) of `case` against the COCO object `coco_gt` (pycocotools must be installed):
    -> (COCOeval after summarize, the printed summary from its first " Average Precision" line)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()) as out:
        if case["results"]:
            coco_dt = coco_gt.loadRes(copy.deepcopy(case["results"]))
        else:  # loadRes rejects an empty list: a results object without annotations
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "annotations": [],
                               "categories": copy.deepcopy(coco_gt.dataset["categories"])}
            coco_dt.createIndex()
        E = COCOeval(coco_gt, coco_dt, "bbox")
        if case["image_ids"] is not None:
            E.params.imgIds = case["image_ids"]
        E.evaluate()
        E.accumulate()
        E.summarize()
    printed = out.getvalue()
    return E, printed[printed.index(" Average Precision"):].rstrip("\n")
