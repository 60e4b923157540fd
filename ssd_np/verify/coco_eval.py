"""COCO bounding-box evaluation, number for number identical to pycocotools.

Mirrors pycocotools 2.0 (cocodataset/cocoapi, PythonAPI/pycocotools): ``COCO.loadRes`` for bbox results,
``COCOeval(iouType='bbox')`` with default ``Params`` (``evaluate`` / ``evaluateImg`` / ``accumulate`` /
``summarize``) and ``bbIou`` of common/maskApi.c.

Boxes are COCO ``[x, y, width, height]`` in pixels. Parameters (as ``Params.setDetParams``):
IoU thresholds ``linspace(.5, .95, 10)``, recall thresholds ``linspace(0, 1, 101)``, maxDets ``(1, 10, 100)``,
area ranges all ``[0, 1e10]``, small ``[0, 32**2]``, medium ``[32**2, 96**2]``, large ``[96**2, 1e10]``.
Images: the sorted ids of the annotations' ``images`` (or ``image_ids``); categories: every entry of
``categories`` (``useCats=1``).

IoU (bbIou, double precision): ``w = min(dx+dw, gx+gw) - max(dx, gx)``, ``h`` likewise, 0 unless ``w > 0`` and
``h > 0``; ``i = w*h``; ``iou = i / (dw*dh + gw*gh - i)``, or ``i / (dw*dh)`` for a crowd gt.

Matching, per image, category and area range, at each IoU threshold ``t``:
  - gt area = the annotation's ``area`` field; detection area = ``w*h`` in the bbox values' own type.
  - a gt is *ignored* if ``iscrowd`` or its area is outside the range; gts are ordered regular first,
    ignored last (stable), detections by score descending (stable), only the top 100 kept.
  - each detection in turn takes, among gts with IoU ``>= t`` that are free (a crowd gt is always free, a
    regular one until matched), the one with the highest IoU, ties to the later gt, preferring any
    regular gt over an ignored one.
  - a detection matched to an ignored gt is ignored; an unmatched detection outside the area range is
    ignored; the rest are true positives (matched) or false positives (unmatched).
Accumulation, per category, area range and maxDets ``M``: the top ``M`` detections of every image,
stable-sorted by score descending; ``recall = cumsum(tp) / n_regular_gt``,
``precision = cumsum(tp) / (cumsum(fp) + cumsum(tp) + np.spacing(1))``, made non-increasing from the right,
sampled at ``np.searchsorted(recall, recall_thresholds, side='left')`` (0 past the last detection); -1 where
the category has no regular gt. The 12 stats are the means of the entries ``> -1`` of ``summarize()``'s slices.

Results on images outside ``image_ids`` are not evaluated, as in pycocotools. Differences, all for input
pycocotools mishandles: results on unknown images (pycocotools asserts) or unknown categories (pycocotools
drops them silently), boxes that are not 4 finite numbers with width, height >= 0, non-finite scores,
duplicate or zero annotation ids (pycocotools collapses duplicates and takes id 0 as "unmatched") and
duplicate category ids raise ``CocoError`` (a ValueError), as does any entry with a missing or mistyped field
(``check_annotations``, ``check_results``: the message names the file, the entry's index and the field) and
results that are not a list (``{}`` included); an empty results list (pycocotools crashes) evaluates as no
detections, so every defined AP and AR is 0. A missing ``iscrowd`` counts as 0.
"""

import json
import math
import numbers
import os
from dataclasses import dataclass

import numpy as np

from ssd_np.jit import njit

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # (T,)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # (R,)
MAX_DETS = (1, 10, 100)  # (M,)
AREA_RANGES = ((0.0, 1e10), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e10))  # (A,) [lo, hi]
AREA_LABELS = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

# summarize(): (average precision?, IoU threshold or None for all, area label, maxDets) per stat.
_SUMMARY = (
    (True, None, "all", 100), (True, 0.5, "all", 100), (True, 0.75, "all", 100),
    (True, None, "small", 100), (True, None, "medium", 100), (True, None, "large", 100),
    (False, None, "all", 1), (False, None, "all", 10), (False, None, "all", 100),
    (False, None, "small", 100), (False, None, "medium", 100), (False, None, "large", 100),
)


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """The annotations as arrays; one row per annotation that belongs to a known image and category."""

    image_ids: tuple  # sorted unique ids of `images`
    category_ids: tuple  # sorted ids of `categories`
    category_names: tuple  # name of each category id
    image: np.ndarray  # (N,) int64 index into image_ids
    category: np.ndarray  # (N,) int64 index into category_ids
    box: np.ndarray  # (N, 4) float64 [x, y, w, h]
    area: np.ndarray  # (N,) float64, the `area` field
    crowd: np.ndarray  # (N,) bool


@dataclass(frozen=True, eq=False)
class Results:
    """A COCO results list as arrays, in its order (not to be confused with `detector.Detections`, one image's
    detections)."""

    image: np.ndarray  # (D,) int64 index into GroundTruth.image_ids
    category: np.ndarray  # (D,) int64 index into GroundTruth.category_ids
    box: np.ndarray  # (D, 4) float64 [x, y, w, h]
    area: np.ndarray  # (D,) float64, w*h as loadRes computes it
    score: np.ndarray  # (D,) float64


@dataclass(frozen=True, eq=False)
class CocoMetrics:
    """COCOeval's accumulated arrays and summary statistics."""

    stats: np.ndarray  # (12,) in STAT_NAMES order, -1 where undefined
    precision: np.ndarray  # (T, R, K, A, M) as COCOeval.eval['precision']
    recall: np.ndarray  # (T, K, A, M) as COCOeval.eval['recall']
    category_ids: tuple  # (K,)
    category_names: tuple  # (K,)
    image_ids: tuple  # the evaluated images

    def as_dict(self) -> dict:
        return {name: float(value) for name, value in zip(STAT_NAMES, self.stats)}

    def per_class_ap(self) -> dict:
        """AP@[.50:.95] (area all, maxDets 100) per category name; -1.0 for a category without regular gt."""
        if len(set(self.category_names)) != len(self.category_names):
            raise ValueError("category names are not unique; read precision[:, :, k, 0, -1] by category id instead")
        aps = {}
        for k, name in enumerate(self.category_names):
            p = self.precision[:, :, k, 0, -1]  # (T, R)
            aps[name] = float(np.mean(p[p > -1])) if np.any(p > -1) else -1.0
        return aps

    def format_summary(self) -> str:
        """The 12 lines COCOeval.summarize() prints, in its exact format."""
        lines = []
        for (is_ap, iou_thr, area, max_dets), value in zip(_SUMMARY, self.stats):
            title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
            iou = f"{IOU_THRESHOLDS[0]:0.2f}:{IOU_THRESHOLDS[-1]:0.2f}" if iou_thr is None else f"{iou_thr:0.2f}"
            lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_dets:>3d} ] "
                         f"= {value:0.3f}")
        return "\n".join(lines)


def bbox_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """maskApi.c bbIou for matched pairs: dt, gt (P, 4) [x, y, w, h] float64, crowd (P,) bool -> (P,) IoU."""
    w = np.fmin(dt[:, 2] + dt[:, 0], gt[:, 2] + gt[:, 0]) - np.fmax(dt[:, 0], gt[:, 0])
    h = np.fmin(dt[:, 3] + dt[:, 1], gt[:, 3] + gt[:, 1]) - np.fmax(dt[:, 1], gt[:, 1])
    dt_area = dt[:, 2] * dt[:, 3]
    gt_area = gt[:, 2] * gt[:, 3]
    inter = w * h
    union = np.where(crowd, dt_area, dt_area + gt_area - inter)
    overlap = (w > 0) & (h > 0)
    return np.divide(inter, union, out=np.zeros_like(inter), where=overlap)


class CocoError(ValueError):
    """COCO annotations or results that cannot be evaluated; the message names the file (or "annotations" /
    "results" for in-memory input), the entry by its index and the field."""


def read_json(path: str | os.PathLike, what: str):
    """The JSON value in the file `path`; CocoError naming the file when it cannot be read or parsed (including
    JSON nested too deeply for Python's parser, which would otherwise raise RecursionError)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except OSError as e:
        raise CocoError(f"cannot read the {what} {path}: {e.strerror or e}") from None
    except ValueError as e:  # also UnicodeDecodeError
        raise CocoError(f"{path}: the {what} is not valid JSON ({e})") from None
    except RecursionError:
        raise CocoError(f"{path}: the {what} is JSON nested too deeply to be COCO {what}") from None


def _is_int(v) -> bool:  # Python or NumPy integers, not booleans
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:  # finite Python or NumPy reals, not booleans
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_box(v) -> bool:
    return isinstance(v, (list, tuple, np.ndarray)) and len(v) == 4 and all(_is_number(x) for x in v)


def _is_sized_box(v) -> bool:
    return _is_box(v) and v[2] >= 0 and v[3] >= 0


# The validation layer: per kind of entry, field -> (test, what the value must be, required).
_INT, _NUMBER = (_is_int, "an integer"), (_is_number, "a finite number")
_IMAGE = {"id": (*_INT, True), "file_name": (lambda v: isinstance(v, str), "a string", False)}
_CATEGORY = {"id": (*_INT, True), "name": (lambda v: isinstance(v, str), "a string", False)}
_ANNOTATION = {"id": (*_INT, True), "image_id": (*_INT, True), "category_id": (*_INT, True),
               "bbox": (_is_box, "4 finite numbers [x, y, width, height]", True), "area": (*_NUMBER, True),
               "iscrowd": (lambda v: v in (0, 1), "0 or 1", False)}
_RESULT = {"image_id": (*_INT, True), "category_id": (*_INT, True),
           "bbox": (_is_sized_box, "4 finite numbers [x, y, width, height] with width, height >= 0", True),
           "score": (*_NUMBER, True)}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_entries(entries, rules: dict, source: str, kind: str, container: str) -> None:
    """Every entry of the list `entries` is a dict whose fields obey `rules`; else CocoError naming the first
    bad entry (`kind` and its index) and field."""
    if not isinstance(entries, list):
        raise CocoError(f"{source}: {container} must be a list of {kind} objects, got {_short(entries)}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise CocoError(f"{source}: {kind} {i}: {_short(entry)} is not an object with "
                            f"{', '.join(map(repr, rules))}")
        for key, (test, expected, required) in rules.items():
            if key not in entry:
                if required:
                    raise CocoError(f"{source}: {kind} {i}: {_short(entry)} has no {key!r} ({expected})")
            elif not test(entry[key]):
                raise CocoError(f"{source}: {kind} {i}: {key} {_short(entry[key])} must be {expected}")


def check_annotations(annotations, source: str = "annotations") -> None:
    """Raise CocoError unless `annotations` is a COCO instances dict this module can evaluate."""
    if not isinstance(annotations, dict) or not {"images", "annotations", "categories"} <= annotations.keys():
        raise CocoError(f"{source}: annotations must be a COCO instances dict with 'images', 'annotations' and "
                        f"'categories', got {_short(annotations)}")
    _check_entries(annotations["images"], _IMAGE, source, "image", "'images'")
    _check_entries(annotations["categories"], _CATEGORY, source, "category", "'categories'")
    _check_entries(annotations["annotations"], _ANNOTATION, source, "annotation", "'annotations'")
    category_ids = [c["id"] for c in annotations["categories"]]
    if len(set(category_ids)) != len(category_ids):
        raise CocoError(f"{source}: duplicate category ids in 'categories'")
    ann_ids = [ann["id"] for ann in annotations["annotations"]]
    if len(set(ann_ids)) != len(ann_ids) or 0 in ann_ids:
        raise CocoError(f"{source}: annotation ids must be unique and nonzero (pycocotools indexes matches by id)")


def check_results(results, source: str = "results") -> None:
    """Raise CocoError unless `results` is a list of {image_id, category_id, bbox, score} (an empty list is fine,
    a dict such as `{}` is not)."""
    _check_entries(results, _RESULT, source, "result", "results")


def load_annotations(annotations, source: str = "annotations") -> GroundTruth:
    """A COCO instances dict (or the path of its json file, or a GroundTruth to reuse) -> GroundTruth.

    `source` names the input in error messages (a path names itself)."""
    if isinstance(annotations, GroundTruth):
        return annotations
    if isinstance(annotations, (str, os.PathLike)):
        source = str(annotations)
        annotations = read_json(annotations, "annotations")
    check_annotations(annotations, source)
    image_ids = tuple(sorted({img["id"] for img in annotations["images"]}))
    categories = sorted(annotations["categories"], key=lambda c: c["id"])
    category_ids = tuple(c["id"] for c in categories)
    image_index = {image_id: i for i, image_id in enumerate(image_ids)}
    category_index = {category_id: k for k, category_id in enumerate(category_ids)}
    # Like pycocotools, annotations of images or categories that are not listed are never evaluated.
    anns = [a for a in annotations["annotations"] if a["image_id"] in image_index and a["category_id"] in category_index]
    return GroundTruth(
        image_ids=image_ids,
        category_ids=category_ids,
        category_names=tuple(c.get("name", str(c["id"])) for c in categories),
        image=np.array([image_index[a["image_id"]] for a in anns], dtype=np.int64),
        category=np.array([category_index[a["category_id"]] for a in anns], dtype=np.int64),
        box=np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
        area=np.array([a["area"] for a in anns], dtype=np.float64),
        crowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
    )


def load_results(results, gt: GroundTruth, source: str = "results") -> Results:
    """A list of {image_id, category_id, bbox [x, y, w, h], score} (or the path of its json file) -> Results."""
    if isinstance(results, (str, os.PathLike)):
        source = str(results)
        results = read_json(results, "results")
    check_results(results, source)
    image_index = {image_id: i for i, image_id in enumerate(gt.image_ids)}
    category_index = {category_id: k for k, category_id in enumerate(gt.category_ids)}
    unknown = sorted({r["image_id"] for r in results if r["image_id"] not in image_index})
    if unknown:
        raise CocoError(f"{source}: results reference image ids that are not in the annotations' images: "
                        f"{unknown[:10]}")
    unknown = sorted({r["category_id"] for r in results if r["category_id"] not in category_index})
    if unknown:
        raise CocoError(f"{source}: results reference category ids that are not in the annotations' categories: "
                        f"{unknown[:10]}")
    boxes = [r["bbox"] for r in results]
    return Results(
        image=np.array([image_index[r["image_id"]] for r in results], dtype=np.int64),
        category=np.array([category_index[r["category_id"]] for r in results], dtype=np.int64),
        box=np.array(boxes, dtype=np.float64).reshape(-1, 4),
        # loadRes: area = bb[2]*bb[3] in the boxes' own number type (a float32 product for float32 values)
        area=np.array([b[2] * b[3] for b in boxes], dtype=np.float64),
        score=np.array([r["score"] for r in results], dtype=np.float64),
    )


def evaluate(annotations, results, image_ids=None, sources=("annotations", "results")) -> CocoMetrics:
    """COCOeval(gt, gt.loadRes(results), 'bbox') with params.imgIds = image_ids (all images if None).

    annotations: COCO instances dict, json path, or load_annotations(...) to reuse.
    results: list of {image_id, category_id, bbox, score} or json path; an empty list evaluates as no detections.
    sources: the names of the two inputs in error messages (CocoError) when they are not paths.
    """
    gt = load_annotations(annotations, sources[0])
    dt = load_results(results, gt, sources[1])
    evaluated = _evaluated_images(gt.image_ids, image_ids)  # (I,) bool
    n_images, n_cats = len(gt.image_ids), len(gt.category_ids)

    # Ground truth of the evaluated images grouped by (category, image), annotation order within a group.
    keep = evaluated[gt.image]
    gt_key = gt.category[keep] * n_images + gt.image[keep]  # (N,)
    order = np.argsort(gt_key, kind="stable")
    gt_key, gt_box, gt_area, gt_crowd = gt_key[order], gt.box[keep][order], gt.area[keep][order], gt.crowd[keep][order]

    # Results likewise, score descending within a group (stable), the top MAX_DETS[-1] of each group.
    keep = evaluated[dt.image]
    dt_key, dt_score = dt.category[keep] * n_images + dt.image[keep], dt.score[keep]  # (D,)
    by_score = np.argsort(-dt_score, kind="stable")
    order = by_score[np.argsort(dt_key[by_score], kind="stable")]
    dt_key, dt_box, dt_area, dt_score = dt_key[order], dt.box[keep][order], dt.area[keep][order], dt_score[order]
    dt_rank = np.arange(len(dt_key)) - np.searchsorted(dt_key, dt_key, side="left")  # (D,) rank in its group
    top = dt_rank < MAX_DETS[-1]
    dt_key, dt_box, dt_area, dt_score, dt_rank = dt_key[top], dt_box[top], dt_area[top], dt_score[top], dt_rank[top]

    groups = np.union1d(gt_key, dt_key)  # (G,) every (category, image) with a gt or a detection
    gt_start = np.append(np.searchsorted(gt_key, groups), len(gt_key))  # (G+1,)
    dt_start = np.append(np.searchsorted(dt_key, groups), len(dt_key))  # (G+1,)
    iou, iou_start = _group_ious(gt_box, gt_crowd, gt_start, dt_box, dt_start)

    gt_ignore = np.stack([gt_crowd | (gt_area < lo) | (gt_area > hi) for lo, hi in AREA_RANGES])  # (A, N)
    gt_order = np.stack([np.argsort(2 * gt_key + ignore, kind="stable") for ignore in gt_ignore])  # (A, N)
    matched, dt_ignore = _match_kernel(iou, iou_start, gt_start, dt_start, gt_order, gt_ignore, gt_crowd,
                                       IOU_THRESHOLDS)  # (A, T, D) each
    for a, (lo, hi) in enumerate(AREA_RANGES):
        dt_ignore[a] |= ~matched[a] & ((dt_area < lo) | (dt_area > hi))

    n_regular = np.stack([np.bincount(gt_key[~ig] // n_images, minlength=n_cats) for ig in gt_ignore], 1)  # (K, A)
    dt_cat_start = np.searchsorted(dt_key, np.arange(n_cats + 1) * n_images)  # (K+1,)
    precision, recall = _accumulate(matched, dt_ignore, dt_score, dt_rank, dt_cat_start, n_regular)
    return CocoMetrics(
        stats=np.array([_summarize(precision, recall, *spec) for spec in _SUMMARY]),
        precision=precision,
        recall=recall,
        category_ids=gt.category_ids,
        category_names=gt.category_names,
        image_ids=tuple(i for i, e in zip(gt.image_ids, evaluated) if e),
    )


def _evaluated_images(all_ids: tuple, image_ids) -> np.ndarray:
    """(I,) bool: which of all_ids to evaluate, all if image_ids is None."""
    if image_ids is None:
        return np.ones(len(all_ids), dtype=bool)
    if len(image_ids) == 0:
        raise ValueError("image_ids is empty; pass None to evaluate every image")
    index = {image_id: i for i, image_id in enumerate(all_ids)}
    unknown = sorted({repr(i) for i in image_ids if i not in index})
    if unknown:
        raise ValueError(f"image_ids not in the annotations' images: {unknown[:10]}")
    evaluated = np.zeros(len(all_ids), dtype=bool)
    evaluated[[index[i] for i in image_ids]] = True
    return evaluated


def _group_ious(gt_box, gt_crowd, gt_start, dt_box, dt_start):
    """IoU of every (detection, gt) pair of each group, flat: group g's (nd, ng) block in C order at iou_start[g]."""
    n_gt, n_dt = np.diff(gt_start), np.diff(dt_start)  # (G,)
    iou_start = np.concatenate([[0], np.cumsum(n_gt * n_dt)])  # (G+1,)
    group = np.repeat(np.arange(len(n_gt)), n_gt * n_dt)  # (P,)
    local = np.arange(iou_start[-1]) - iou_start[group]
    d = dt_start[group] + local // n_gt[group]
    g = gt_start[group] + local % n_gt[group]
    return bbox_iou(dt_box[d], gt_box[g], gt_crowd[g]), iou_start


@njit
def _match_kernel(iou, iou_start, gt_start, dt_start, gt_order, gt_ignore, gt_crowd, iou_thrs):
    """evaluateImg's greedy matching, loop for loop. Twin: _match_numpy.

    iou (P,) flat blocks (see _group_ious); *_start (G+1,) group offsets; gt_order (A, N) gt indices with each
    group's gts regular first; gt_ignore (A, N); gt_crowd (N,); iou_thrs (T,).
    Returns matched, ignore: (A, T, D) bool, detections matched to a gt / matched to an ignored gt.
    """
    n_area, n_thr, n_dt = gt_order.shape[0], iou_thrs.shape[0], dt_start[-1]
    matched = np.zeros((n_area, n_thr, n_dt), dtype=np.bool_)
    ignore = np.zeros((n_area, n_thr, n_dt), dtype=np.bool_)
    taken = np.zeros(gt_crowd.shape[0], dtype=np.bool_)  # (N,)
    for grp in range(gt_start.shape[0] - 1):
        gs, ng = gt_start[grp], gt_start[grp + 1] - gt_start[grp]
        ds, nd = dt_start[grp], dt_start[grp + 1] - dt_start[grp]
        for a in range(n_area):
            for t in range(n_thr):
                taken[gs:gs + ng] = False
                for d in range(nd):
                    best = min(iou_thrs[t], 1 - 1e-10)
                    m = -1
                    for j in range(ng):
                        g = gt_order[a, gs + j]
                        if taken[g] and not gt_crowd[g]:
                            continue
                        if m > -1 and not gt_ignore[a, m] and gt_ignore[a, g]:
                            break
                        value = iou[iou_start[grp] + d * ng + (g - gs)]
                        if value < best:
                            continue
                        best = value
                        m = g
                    if m > -1:
                        matched[a, t, ds + d] = True
                        ignore[a, t, ds + d] = gt_ignore[a, m]
                        taken[m] = True
    return matched, ignore


def _match_numpy(iou, iou_start, gt_start, dt_start, gt_order, gt_ignore, gt_crowd, iou_thrs):
    """Plain twin of _match_kernel, stated as a rule: each detection takes the free gt with IoU >= t and the
    highest IoU (ties: the later gt in evaluation order), a regular gt if there is any such, else an ignored one."""
    n_area, n_thr, n_dt = gt_order.shape[0], len(iou_thrs), dt_start[-1]
    matched = np.zeros((n_area, n_thr, n_dt), dtype=bool)
    ignore = np.zeros((n_area, n_thr, n_dt), dtype=bool)
    for grp in range(len(gt_start) - 1):
        gs, ge, ds, de = gt_start[grp], gt_start[grp + 1], dt_start[grp], dt_start[grp + 1]
        block = iou[iou_start[grp]:iou_start[grp + 1]].reshape(de - ds, ge - gs)  # (nd, ng)
        for a in range(n_area):
            order = gt_order[a, gs:ge]  # (ng,) evaluation order
            ious, ign, crowd = block[:, order - gs], gt_ignore[a, order], gt_crowd[order]
            for t, thr in enumerate(iou_thrs):
                taken = np.zeros(ge - gs, dtype=bool)
                for d in range(de - ds):
                    free = (ious[d] >= min(thr, 1 - 1e-10)) & ~(taken & ~crowd)
                    candidates = free & ~ign if np.any(free & ~ign) else free
                    if not np.any(candidates):
                        continue
                    m = len(ious[d]) - 1 - np.argmax(np.where(candidates, ious[d], -np.inf)[::-1])
                    matched[a, t, ds + d], ignore[a, t, ds + d], taken[m] = True, ign[m], True
    return matched, ignore


def _accumulate(matched, dt_ignore, dt_score, dt_rank, dt_cat_start, n_regular):
    """COCOeval.accumulate: -> precision (T, R, K, A, M), recall (T, K, A, M), -1 where undefined."""
    n_thr, n_cats, n_area = len(IOU_THRESHOLDS), len(n_regular), len(AREA_RANGES)
    precision = -np.ones((n_thr, len(RECALL_THRESHOLDS), n_cats, n_area, len(MAX_DETS)))
    recall = -np.ones((n_thr, n_cats, n_area, len(MAX_DETS)))
    for k in range(n_cats):
        lo, hi = dt_cat_start[k], dt_cat_start[k + 1]  # this category's detections, image by image
        for m, max_dets in enumerate(MAX_DETS):
            top = lo + np.flatnonzero(dt_rank[lo:hi] < max_dets)
            top = top[np.argsort(-dt_score[top], kind="mergesort")]  # (n,)
            for a in range(n_area):
                if n_regular[k, a] == 0:
                    continue
                counted = ~dt_ignore[a][:, top]  # (T, n)
                tp = matched[a][:, top] & counted
                fp = ~matched[a][:, top] & counted
                precision[:, :, k, a, m], recall[:, k, a, m] = _precision_recall(tp, fp, n_regular[k, a])
    return precision, recall


def _precision_recall(tp: np.ndarray, fp: np.ndarray, n_regular: int):
    """tp, fp (T, n) bool in score order -> interpolated precision (T, R) and final recall (T,)."""
    tp_sum = np.cumsum(tp, axis=1).astype(np.float64)
    fp_sum = np.cumsum(fp, axis=1).astype(np.float64)
    rc = tp_sum / n_regular
    pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # non-increasing envelope from the right
    n = tp.shape[1]
    precision = np.zeros((len(tp), len(RECALL_THRESHOLDS)))
    for t in range(len(tp)):
        inds = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")  # (R,)
        reached = inds < n
        precision[t, reached] = pr[t, inds[reached]]
    recall = rc[:, -1] if n else np.zeros(len(tp))
    return precision, recall


def _summarize(precision, recall, is_ap, iou_thr, area, max_dets) -> float:
    """One line of COCOeval.summarize(): the mean of the entries > -1 of the selected slice, or -1."""
    a, m = AREA_LABELS.index(area), MAX_DETS.index(max_dets)
    s = precision[:, :, :, a, m] if is_ap else recall[:, :, a, m]  # (T, R, K) or (T, K)
    if iou_thr is not None:
        s = s[np.where(iou_thr == IOU_THRESHOLDS)[0]]
    return float(np.mean(s[s > -1])) if np.any(s > -1) else -1.0
