"""`ssd-np eval`: COCO box AP of the detector on annotated images, or of an existing results file.

    ssd-np eval --annotations instances_val2017.json --images val2017/ [--results OUT.json] [--max-images N]
    ssd-np eval --annotations instances_val2017.json --results results.json        # score a results file

Detection runs TF's pipeline (`--format coco` of `ssd-np detect`: TF's outputs converted as the Object
Detection API's `coco_tools` does) on every annotated image found in the folder, in image-id order. The
evaluation is `ssd_np.verify.coco_eval`, identical to pycocotools' COCOeval (bbox) over exactly the images detected.
With `--results` and `--images`, the results file is written (atomically) and reused on a later run with
`--resume`: images already in it are not detected again. An image that cannot be read is reported on stderr
and left out (of the results file and of the evaluation); the others are detected, written and scored, and the
exit status is 1. `--max-images` must be at least 1.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

from ssd_np.atomic import write_atomic
from ssd_np.cli.errors import EXIT_FAILED, EXIT_OK, EvalError, not_written
from ssd_np.cli.outputs import coco_rows
from ssd_np.detector import Detector
from ssd_np.images import ImageError
from ssd_np.verify import coco_eval

STAND_IN_NOTE = ("NOTE: these weights are stand-ins (not the genuine release weights): the numbers below are "
                 "NOT the model's accuracy. Run `ssd-np weights fetch` for the genuine weights.")


def annotated_images(annotations: dict, source: Path, folder: Path,
                     max_images: int | None) -> list[tuple[int, Path]]:
    """(image id, path) of the annotated images present in `folder`, by id, at most `max_images`."""
    found = []
    for image in sorted(annotations["images"], key=lambda img: img["id"]):
        if "file_name" not in image:
            raise EvalError(f"{source}: the image with id {image['id']} has no 'file_name'; --images needs the "
                            f"file name of every annotated image")
        path = folder / image["file_name"]
        if path.is_file():
            found.append((image["id"], path))
    if not found:
        raise EvalError(f"none of the {len(annotations['images'])} annotated images is in {folder}; "
                        f"point --images at the folder holding the annotation file's images")
    return found[:max_images] if max_images else found


def detect_coco(detector: Detector, images: list[tuple[int, Path]], done: dict[int, list],
                err: TextIO) -> tuple[dict[int, list], list[int]]:
    """COCO results rows per image id, and the ids of the images that could not be read (each reported on
    `err` as `ssd-np: error: <file>: <problem>`, the run goes on); images already in `done` are kept as they are."""
    results, failed = dict(done), []
    todo = [(i, p) for i, p in images if i not in results]
    start = time.perf_counter()
    for count, (image_id, path) in enumerate(todo, 1):
        try:
            results[image_id] = coco_rows(image_id, detector(path))
        except ImageError as e:
            failed.append(image_id)
            err.write(("\n" if err.isatty() else "") + f"ssd-np: error: {e}\n")
        if err.isatty():
            err.write(f"\r  {count}/{len(todo)} images, {count / (time.perf_counter() - start):.1f} images/s")
            err.flush()
    if err.isatty() and todo:
        err.write("\n")
    return results, failed


def _detect_coco_on_cluster(scheduler: str, weights: Path | None, images: list[tuple[int, Path]],
                            done: dict[int, list], err: TextIO) -> tuple[dict[int, list], list[int]]:
    """`detect_coco` on a Dask cluster (`--scheduler`, `cli/distributed.py`): the same results, and the ids of
    the images that failed (each reported as it finished, as in a serial run)."""
    from ssd_np.cli.distributed import detect_coco_on_cluster
    from ssd_np.weights.hdf5 import default_weights_path

    results, failed = detect_coco_on_cluster(scheduler, weights or default_weights_path(), images, done, err)
    return results, [images[o.index][0] for o in failed]


def run_eval(annotations: Path, images: Path | None = None, results: Path | None = None,
             max_images: int | None = None, weights: Path | None = None, json_out: Path | None = None,
             per_class: bool = False, resume: bool = False, scheduler: str | None = None,
             out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Detect (if `images`, on a Dask cluster with `scheduler`) and evaluate; print the 12 COCO metrics. Returns
    the exit status: 0, or 1 when some images could not be read (the others are still detected, written and
    scored)."""
    out, err = out or sys.stdout, err or sys.stderr  # the streams of the moment, not those at import
    if max_images is not None and max_images < 1:
        raise EvalError(f"--max-images must be at least 1, got {max_images}")
    if scheduler is not None:
        from ssd_np.cli.distributed import check

        check(scheduler)
    gt_json = coco_eval.read_json(annotations, "annotations")
    gt = coco_eval.load_annotations(gt_json, str(annotations))
    failed: list[int] = []
    if images is None:
        if results is None:
            raise EvalError("give --images DIR to detect and evaluate, or --results FILE to score a results file")
        rows = coco_eval.read_json(results, "results")
        coco_eval.check_results(rows, str(results))
        image_ids = None
    else:
        found = annotated_images(gt_json, annotations, Path(images), max_images)
        detector = Detector.load(weights)
        if not detector.genuine:
            err.write(STAND_IN_NOTE + "\n")
        done = {}
        if resume and results is not None and Path(results).is_file():
            previous = coco_eval.read_json(results, "results")
            coco_eval.check_results(previous, str(results))
            for row in previous:
                done.setdefault(row["image_id"], []).append(row)
        if scheduler is None:
            by_image, failed = detect_coco(detector, found, done, err)
        else:
            by_image, failed = _detect_coco_on_cluster(scheduler, weights, found, done, err)
        image_ids = [i for i, _ in found if i not in failed]
        rows = [row for i in image_ids for row in by_image.get(i, [])]
        if results is not None:
            try:
                write_atomic(Path(results), json.dumps(rows).encode())
            except OSError as e:
                raise not_written(e, f"the COCO results of {len(image_ids)} images ({len(rows)} detections) "
                                     f"were") from None
        if not image_ids:
            raise EvalError(f"none of the {len(found)} images could be read (see above); nothing to score")
        if failed:
            err.write(f"ssd-np: {len(failed)} of {len(found)} images could not be read (see above); the metrics "
                      f"below are over the other {len(image_ids)}\n")
    known = set(gt.category_ids)
    ignored = sum(1 for row in rows if row["category_id"] not in known)
    if ignored:
        err.write(f"note: {ignored} detections of categories not in the annotations (the unused COCO ids) are "
                  f"ignored, as pycocotools ignores them\n")
    metrics = coco_eval.evaluate(gt, [row for row in rows if row["category_id"] in known], image_ids=image_ids,
                                 sources=(str(annotations), str(results or "results")))
    out.write(metrics.format_summary() + "\n")
    if per_class:
        for name, ap in metrics.per_class_ap().items():
            out.write(f"  AP {name:20s} {ap:0.3f}\n")
    if json_out is not None:
        write_atomic(Path(json_out), (json.dumps(metrics.as_dict(), indent=1) + "\n").encode())
    return EXIT_FAILED if failed else EXIT_OK
