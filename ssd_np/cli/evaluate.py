"""`ssd-np eval`: COCO box AP of the detector on annotated images, or of an existing results file.

    ssd-np eval --annotations instances_val2017.json --images val2017/ [--results OUT.json] [--max-images N]
    ssd-np eval --annotations instances_val2017.json --results results.json        # score a results file

Detection runs TF's pipeline (`--format coco` of `ssd-np detect`: TF's outputs converted as the Object
Detection API's `coco_tools` does) on every annotated image found in the folder, in image-id order. The
evaluation is `ssd_np.verify.coco_eval`, identical to pycocotools' COCOeval (bbox) over exactly the images detected.
With `--results` and `--images`, the results file is written (atomically) and reused on a later run with
`--resume`: images already in it are not detected again.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from ssd_np.atomic import write_atomic
from ssd_np.cli.outputs import coco_rows
from ssd_np.detector import Detector
from ssd_np.verify import coco_eval

STAND_IN_NOTE = ("NOTE: these weights are stand-ins (not the genuine release weights): the numbers below are "
                 "NOT the model's accuracy. Run `ssd-np weights fetch` for the genuine weights.")


class EvalError(ValueError):
    """Bad input to `ssd-np eval` (missing images, unreadable annotations or results)."""


def annotated_images(annotations: dict, folder: Path, max_images: int | None) -> list[tuple[int, Path]]:
    """(image id, path) of the annotated images present in `folder`, by id, at most `max_images`."""
    found = []
    for image in sorted(annotations["images"], key=lambda img: img["id"]):
        path = folder / image["file_name"]
        if path.is_file():
            found.append((image["id"], path))
    if not found:
        raise EvalError(f"none of the {len(annotations['images'])} annotated images is in {folder}; "
                        f"point --images at the folder holding the annotation file's images")
    return found[:max_images] if max_images else found


def detect_coco(detector: Detector, images: list[tuple[int, Path]], done: dict[int, list],
                err: TextIO) -> dict[int, list]:
    """COCO results rows per image id; images already in `done` are kept as they are."""
    results = dict(done)
    todo = [(i, p) for i, p in images if i not in results]
    start = time.perf_counter()
    for count, (image_id, path) in enumerate(todo, 1):
        results[image_id] = coco_rows(image_id, detector(path))
        if err.isatty():
            err.write(f"\r  {count}/{len(todo)} images, {count / (time.perf_counter() - start):.1f} images/s")
            err.flush()
    if err.isatty() and todo:
        err.write("\n")
    return results


def _detect_coco_on_cluster(scheduler: str, weights: Path | None, images: list[tuple[int, Path]],
                            done: dict[int, list], err: TextIO) -> dict[int, list]:
    """`detect_coco` on a Dask cluster (`--scheduler`, `cli/distributed.py`); failed images (each reported on
    its own line) stop the evaluation, as the first one does in a serial run."""
    from ssd_np.cli.distributed import detect_coco_on_cluster
    from ssd_np.weights.hdf5 import default_weights_path

    results, failed = detect_coco_on_cluster(scheduler, weights or default_weights_path(), images, done, err)
    if failed:
        raise EvalError(f"{len(failed)} of {len(images)} images could not be detected (listed above)")
    return results


def _load_json(path: Path, what: str):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise EvalError(f"cannot read the {what} {path}: {e}") from None


def run_eval(annotations: Path, images: Path | None = None, results: Path | None = None,
             max_images: int | None = None, weights: Path | None = None, json_out: Path | None = None,
             per_class: bool = False, resume: bool = False, scheduler: str | None = None, out: TextIO = sys.stdout,
             err: TextIO = sys.stderr) -> int:
    """Detect (if `images`) and evaluate; print the 12 COCO metrics. Returns the exit status."""
    if scheduler is not None:
        from ssd_np.cli.distributed import check

        check(scheduler)
    gt_json = _load_json(annotations, "annotations")
    try:
        gt = coco_eval.load_annotations(gt_json)
    except (ValueError, KeyError, TypeError) as e:
        raise EvalError(f"{annotations}: not usable COCO annotations ({e})") from None
    if images is None:
        if results is None:
            raise EvalError("give --images DIR to detect and evaluate, or --results FILE to score a results file")
        rows = _load_json(results, "results file")
        image_ids = None
    else:
        detector = Detector.load(weights)
        if not detector.genuine:
            err.write(STAND_IN_NOTE + "\n")
        found = annotated_images(gt_json, Path(images), max_images)
        done = {}
        if resume and results is not None and Path(results).is_file():
            for row in _load_json(results, "results file"):
                done.setdefault(row["image_id"], []).append(row)
        if scheduler is None:
            by_image = detect_coco(detector, found, done, err)
        else:
            by_image = _detect_coco_on_cluster(scheduler, weights, found, done, err)
        image_ids = [i for i, _ in found]
        rows = [row for i in image_ids for row in by_image.get(i, [])]
        if results is not None:
            write_atomic(Path(results), json.dumps(rows).encode())
    known = set(gt.category_ids)
    ignored = sum(1 for row in rows if row.get("category_id") not in known)
    if ignored:
        err.write(f"note: {ignored} detections of categories not in the annotations (the unused COCO ids) are "
                  f"ignored, as pycocotools ignores them\n")
    try:
        metrics = coco_eval.evaluate(gt, [row for row in rows if row.get("category_id") in known],
                                     image_ids=image_ids)
    except ValueError as e:
        raise EvalError(f"{results or 'results'}: {e}") from None
    out.write(metrics.format_summary() + "\n")
    if per_class:
        for name, ap in metrics.per_class_ap().items():
            out.write(f"  AP {name:20s} {ap:0.3f}\n")
    if json_out is not None:
        write_atomic(Path(json_out), (json.dumps(metrics.as_dict(), indent=1) + "\n").encode())
    return 0
