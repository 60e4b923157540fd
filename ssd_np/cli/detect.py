"""The batch driver behind `ssd-np detect`: images and folders in, detections out (JSON, drawings or text).

Formats (`--format`), each reproducing its reference exactly:
- `tf` (default): TF's four outputs of the release graph for the decoded RGB image, one JSON file per image
  `DIR/<stem>.json`: {"image", "detection_boxes": [[ymin, xmin, ymax, xmax], ...] normalized,
  "detection_scores", "detection_classes" (integers), "num_detections"}, only the real rows, best first.
- `openvino`: the OpenVINO IR's `detection_out` as an OpenVINO user gets it: the image resized to 300x300 with
  OpenCV's `cv2.resize(INTER_LINEAR)` (`reference.preprocess.resize_bilinear_cv2`, bit-exact), channels flipped to BGR.
  `DIR/<stem>.json`: {"image", "detection_out": [[image_id, label, conf, x_min, y_min, x_max, y_max], ...]},
  the rows before the first image_id == -1, floats as in the tensor, ordered by label then confidence.
- `coco`: TF's outputs as a COCO results file, `DIR/results.json`, a list of {"image_id", "category_id",
  "bbox": [x, y, width, height] in pixels, "score"} that pycocotools' `COCO.loadRes` reads. image_id comes from
  the file name (`000000000139.jpg` or `COCO_val2014_000000000139.jpg` -> 139). As the TF Object Detection API's
  `coco_tools` does: pixel box = normalized box * [H, W, H, W] in float32, width = xmax - xmin in float32.

Every float is written as the exact value of its float32 (`cli/outputs.py`), so reading a file back with
`np.float32(value)` gives the reference bits. `--min-score S` keeps detections with score >= S (the model itself
already drops scores <= 0.3). Without `--json-dir` and `--draw` the detections are printed on stdout as text.

Output files are written atomically (a temporary file in the same folder, then `os.replace`). Each image's
problem is reported on one stderr line and the batch goes on. `--jobs N` runs N threads over the images
(sharing one Detector; by default one per core, each image on one core, and a single image on all of them);
their results are identical to a serial run. `--scheduler` runs the images on a Dask cluster instead
(`cli/distributed.py`), with the same files byte for byte. `--resume` skips the images whose outputs exist
(`pending`).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numba
import numpy as np

from ssd_np.atomic import write_atomic
from ssd_np.cli.batch import Job, Outcome, Progress, process
from ssd_np.cli.errors import EXIT_FAILED, EXIT_OK, CliError, not_written
from ssd_np.cli.outputs import coco_image_id, json_bytes
from ssd_np.detector import Detector
from ssd_np.engine import warmup
from ssd_np.weights.hdf5 import default_weights_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
COCO_RESULTS = "results.json"


# ---------------------------------------------------------------------------------------------- inputs, outputs


def find_images(inputs: list[str]) -> list[str]:
    """The image files named by `inputs`: files as given, folders walked (sorted; hidden entries skipped;
    symbolic links to folders not followed). The same file named twice is taken once."""
    found: list[str] = []
    seen: set[str] = set()
    for given in inputs:
        if os.path.isdir(given):
            paths = []
            for root, dirs, files in os.walk(given):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                paths += [os.path.join(root, f) for f in files
                          if not f.startswith(".") and f.lower().endswith(IMAGE_SUFFIXES)]
            if not paths:
                raise CliError(f"no images found in {given} (looked for {', '.join(IMAGE_SUFFIXES)} files, hidden "
                               f"folders skipped); point at the folder that holds the images")
            candidates = sorted(paths)
        elif os.path.lexists(given):  # a broken link or a link loop: load_rgb says which
            candidates = [given]
        else:
            raise CliError(f"{given}: no such file or folder; check the path")
        for path in candidates:
            key = os.path.realpath(path)
            if key not in seen:
                seen.add(key)
                found.append(path)
    return found


def check_names(images: list[str], job: Job) -> None:
    """Refuse, before any work, a run whose outputs would overwrite each other or lack a COCO image id."""
    if job.json_dir is not None and job.format == "coco":
        ids: dict[int, str] = {}
        for path in images:
            image_id = coco_image_id(path)
            if image_id is None:
                raise CliError(f"{path}: not a COCO file name (like 000000000139.jpg), so it has no image_id for "
                               f"--format coco; rename it or use --format tf")
            if image_id in ids:
                raise CliError(f"{ids[image_id]} and {path} have the same COCO image_id {image_id}; "
                               f"process them in separate runs")
            ids[image_id] = path
    if (job.json_dir is not None and job.format != "coco") or job.draw_dir is not None:
        stems: dict[str, str] = {}
        for path in images:
            stem = Path(path).stem.casefold()
            if stem in stems:
                raise CliError(f"{stems[stem]} and {path} would write the same output file {Path(path).stem}.*; "
                               f"process them in separate runs with different output folders, or rename one")
            stems[stem] = path


def prepare_folder(folder: Path, option: str) -> None:
    """Create `folder` if needed and prove it writable by creating and removing a file in it."""
    if folder.exists() and not folder.is_dir():
        raise CliError(f"{option} {folder}: is a file, not a folder; give a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".ssd_np-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise CliError(f"{option} {folder}: cannot write there ({e.strerror or e}); choose a writable folder") \
            from None


# ---------------------------------------------------------------------------------------------- parallel work


def _run_threads(detector: Detector, job: Job, todo: list[tuple[int, str]], jobs: int,
                 progress: Progress) -> list[Outcome]:
    """`jobs` threads sharing one Detector; measured faster than processes on this project's 2-core machine.

    numba's kernels run without the GIL, so the threads' images are processed at the same time. Each thread's
    kernels get an equal share of numba's threads (numba's thread count is per calling thread), so the machine
    is not oversubscribed. A warm-up run loads the compiled kernels once and starts numba's threading layer. Its
    `workqueue` layer (used where neither OpenMP nor TBB is available) aborts the process if two threads run
    parallel kernels at once, so there the model runs one image at a time; decoding, drawing and writing still
    overlap.
    """
    detector.tf_outputs(np.zeros((8, 8, 3), np.uint8))
    inference = threading.Lock() if numba.threading_layer() == "workqueue" else contextlib.nullcontext()
    share = max(1, numba.config.NUMBA_NUM_THREADS // jobs)
    outcomes = []
    with ThreadPoolExecutor(max_workers=min(jobs, len(todo)), initializer=numba.set_num_threads,
                            initargs=(share,)) as pool:
        futures = [pool.submit(process, detector, job, index, path, inference) for index, path in todo]
        try:
            for future in as_completed(futures):
                outcomes.append(future.result())
                progress.advance(outcomes[-1])
        except BaseException:  # Ctrl-C: finish the images in flight (their files are whole), drop the rest
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return outcomes


# ---------------------------------------------------------------------------------------------- --resume


def pending(images: list[str], job: Job) -> tuple[list[tuple[int, str]], dict[int, list[dict]]]:
    """`--resume`: (index, path) of the images still to process, and the COCO rows of the others by index.

    An image is done when every output this run would write for it exists: `DIR/<stem>.json` (`--format tf`,
    `openvino`), `DIR/<stem>.png` (`--draw`), and for `--format coco` a row with its image_id in the existing
    `DIR/results.json` (an image without detections has no row, so it is detected again; rows of images not in
    this run are dropped, as a full run would not write them). Outputs are only ever replaced whole, so an
    existing file is complete. The run is assumed to use the weights and options that wrote them.
    """
    if job.json_dir is None and job.draw_dir is None:
        raise CliError("--resume skips images whose output files exist: give --json-dir or --draw")
    coco = job.json_dir is not None and job.format == "coco"
    written = _coco_results(job.json_dir / COCO_RESULTS) if coco else {}
    todo, kept = [], {}
    for index, path in enumerate(images):
        stem = Path(path).stem
        files = [folder / f"{stem}{suffix}" for folder, suffix in ((None if coco else job.json_dir, ".json"),
                                                                   (job.draw_dir, ".png")) if folder is not None]
        rows = written.get(coco_image_id(path), []) if coco else []
        if all(file.is_file() for file in files) and (rows or not coco):
            kept[index] = rows
        else:
            todo.append((index, path))
    return todo, kept


def _coco_results(path: Path) -> dict[int, list[dict]]:
    """The rows of an existing COCO results file by image_id ({} when there is none)."""
    if not path.exists():
        return {}
    try:
        rows = json.loads(path.read_bytes())
        by_id: dict[int, list[dict]] = {}
        for row in rows:
            by_id.setdefault(int(row["image_id"]), []).append(row)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CliError(f"{path}: not a COCO results file to resume from ({e}); remove it or run without --resume") \
            from None
    return by_id


# ---------------------------------------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    """`ssd-np detect`: exit 0 when every image succeeded, 1 when some failed; usage problems raise CliError."""
    start = time.monotonic()
    if args.jobs is not None and args.jobs < 1:
        raise CliError(f"--jobs must be at least 1, got {args.jobs}")
    if args.jobs is not None and args.scheduler is not None:
        raise CliError("--jobs and --scheduler do not go together: with --scheduler, each Dask worker process "
                       "runs one image at a time; choose the number of workers instead")
    if args.scheduler is not None:
        from ssd_np.cli.distributed import check

        check(args.scheduler)
    if args.min_score is not None and not 0.0 <= args.min_score <= 1.0:
        raise CliError(f"--min-score must be between 0 and 1, got {args.min_score}")
    job = Job(args.format, Path(args.json_dir) if args.json_dir else None,
              Path(args.draw) if args.draw else None, args.min_score)
    images = find_images(args.images)
    check_names(images, job)
    weights = Path(args.weights) if args.weights else default_weights_path()
    compiling = warmup.must_compile()  # a first run: Detector.load compiles them
    detector = Detector.load(weights)
    for folder, option in ((job.json_dir, "--json-dir"), (job.draw_dir, "--draw")):
        if folder is not None:
            prepare_folder(folder, option)
    if detector.source.startswith("stand-in"):
        print(f"ssd-np: warning: {weights} holds stand-in weights ({detector.source}), NOT the genuine model: "
              f"these detections are NOT real", file=sys.stderr)
    elif not detector.genuine:
        print(f"ssd-np: warning: {weights} holds weights that are not the genuine release's ({detector.source})",
              file=sys.stderr)

    todo, kept = pending(images, job) if args.resume else (list(enumerate(images)), {})
    if args.resume:
        print(f"ssd-np: --resume: {len(kept)} of {len(images)} images already have their outputs, skipped",
              file=sys.stderr)

    # By default one image per core (numba's threads): 1.76-1.80x the one-core rate on 2 cores, where one image at
    # a time on both cores gives 1.54-1.58x (tools/bench.py, three runs on a Zen 5); a single image gets every core.
    jobs = args.jobs if args.jobs is not None else max(1, min(numba.config.NUMBA_NUM_THREADS, len(todo)))
    loaded = time.monotonic()
    progress = Progress(len(todo), sys.stderr, sys.stdout)
    outcomes: list[Outcome] = []
    try:
        if args.scheduler is not None:
            from ssd_np.cli.distributed import detect_on_cluster

            outcomes = detect_on_cluster(args.scheduler, weights, job, todo, progress)
        elif jobs == 1 or len(todo) <= 1:
            for index, path in todo:
                outcomes.append(process(detector, job, index, path))
                progress.advance(outcomes[-1])
        else:
            outcomes = _run_threads(detector, job, todo, jobs, progress)
    finally:
        progress.close()
    outcomes.sort(key=lambda o: o.index)

    detections = sum(o.detections for o in outcomes if o.error is None)
    failed = sum(o.error is not None for o in outcomes)
    if job.json_dir is not None and job.format == "coco":
        by_index = {**kept, **{o.index: o.coco for o in outcomes}}
        rows = [row for index in sorted(by_index) for row in by_index[index]]
        try:
            write_atomic(job.json_dir / COCO_RESULTS, json_bytes(rows))
        except OSError as e:
            raise not_written(e, f"the COCO results of {len(by_index) - failed} images ({len(rows)} detections) "
                                 f"were") from None
    end = time.monotonic()
    print(f"ssd-np: {len(todo)} image{'s' if len(todo) != 1 else ''}, {failed} failed, {detections} detections, "
          f"{len(todo) / (end - loaded):.2f} images/s, {end - start:.1f} s elapsed "
          f"({loaded - start:.1f} s loading the weights{' and compiling the kernels' if compiling else ''})",
          file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
