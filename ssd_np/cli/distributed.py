"""`--scheduler`: `ssd-np detect` and `ssd-np eval --images` on a Dask cluster, with a serial run's results.

Dask (`dask.distributed`, the optional extra `ssd_np[dask]`, imported only here) does all the scheduling; this
module only cuts the images into tasks and puts their results back in input order:
- a task is a chunk of a few images (`chunk_size`); a worker runs exactly the serial code on each
  (`batch.process`), except that the output files are returned to the client as bytes instead of written;
- each worker process loads the weights once and keeps its Detector for the tasks after (`_worker_detector`,
  keyed by the weights file's absolute path and sha256; the client loads the file first, so a bad file is one
  clear error, and a worker that cannot read the same file at the same path stops the run with one line);
- the client writes every output file atomically where a serial run writes it, as the results arrive; the
  progress bar advances per finished task; the COCO rows are assembled in input order.

Why the client writes: a worker that dies (killed, out of memory, machine lost) leaves nothing behind, and Dask
runs its tasks again on the other workers; images whose task killed several workers (Dask gives up after
`distributed.scheduler.allowed-failures`) are reported as not processed, one line each like any failed image.
Workers only read (images, weights); outputs land on the client's disk; `--resume` decides on the client.

Same bytes whatever the number of workers and the task order: each image is computed alone by deterministic
kernels (their results do not depend on numba's thread count; workers started here run one numba thread each,
one image per core, and without Dask's MALLOC_TRIM_THRESHOLD_, see `MALLOC_VARIABLE`) and serialized by the
same code. Paths are used as the client sees them (relative ones from the client's working folder), so every
worker must see the images and the weights at the same paths.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ssd_np.atomic import write_atomic
from ssd_np.cli.batch import Job, Outcome, Progress, output_error, process
from ssd_np.cli.errors import CliError
from ssd_np.cli.outputs import coco_rows
from ssd_np.detector import Detector
from ssd_np.images import ImageError, load_rgb
from ssd_np.weights.hdf5 import sha256_file

WORKERS_TIMEOUT = 60  # seconds to wait for a first worker to join the scheduler
MAX_CHUNK = 16  # images per task at most: a lost worker costs at most this many images' work
# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which turns off glibc's adaptive mmap threshold:
# every large array of the model is then mapped and zero-filled afresh, 1.5x the CPU time per image (0.052-0.054 s
# instead of 0.034-0.036 s, one numba thread, this machine). Workers started here keep glibc's default.
MALLOC_VARIABLE = "MALLOC_TRIM_THRESHOLD_"
# The nannies also set OMP/MKL/OPENBLAS_NUM_THREADS=1 by writing them into the environment of the process they run
# in: with a local cluster, this one, and every later subprocess of it (OpenBLAS with one thread rounds some
# products differently from two). Here they go to the workers only (LocalCluster's `env`).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
NANNY_ENVIRON = {f"distributed.nanny.pre-spawn-environ.{name}": None  # None: not set
                 for name in (MALLOC_VARIABLE, *THREAD_VARIABLES)}


class WorkerSetupError(Exception):
    """A worker cannot run any task (weights, working folder): the run stops with this one-line message."""


@dataclass(frozen=True)
class Weights:
    """The weights file every worker loads: its absolute path and the sha256 of the client's copy."""

    path: str
    sha256: str


# ---------------------------------------------------------------------------------------------- the cluster


def _distributed():
    """The `distributed` package, or the one-line error naming the extra."""
    try:
        import distributed
    except ImportError:
        raise CliError("--scheduler needs Dask: install ssd_np[dask] (pip install 'ssd_np[dask]')") from None
    return distributed


def local_cluster(workers: int):
    """A `LocalCluster` of `workers` processes, one task and one numba (and BLAS) thread each, glibc's default
    memory allocation (`MALLOC_VARIABLE`), this process's environment left as it is (`THREAD_VARIABLES`), every socket on the loopback interface (the scheduler's HTTP endpoints on a free port: no
    dashboard, no clash over port 8787), Dask's log lines below ERROR silenced (each failed image is reported by
    the run itself)."""
    distributed = _distributed()
    import dask

    with dask.config.set(NANNY_ENVIRON):  # read by each nanny when it starts
        return distributed.LocalCluster(n_workers=workers, processes=True, threads_per_worker=1, host="127.0.0.1",
                                        dashboard_address=None, silence_logs=logging.ERROR,
                                        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                                        env={"NUMBA_NUM_THREADS": "1", **{name: "1" for name in THREAD_VARIABLES}})


def local_workers(scheduler: str) -> int | None:
    """`local` -> one worker per core, `local:N` -> N; None for the address of a running scheduler."""
    name, _, count = scheduler.partition(":")
    if name != "local":
        return None
    if not count:
        return os.cpu_count() or 1
    if not count.isdigit() or int(count) < 1:
        raise CliError(f"--scheduler {scheduler}: give local:N with N worker processes (a whole number >= 1)")
    return int(count)


def check(scheduler: str) -> None:
    """Refuse, before any work, a `--scheduler` that cannot be used: Dask missing, a bad `local:N`."""
    _distributed()
    local_workers(scheduler)


@contextlib.contextmanager
def connect(scheduler: str) -> Iterator:
    """A Dask client of the scheduler at `scheduler` (with at least one worker), or of a LocalCluster started
    (and stopped on exit) for `local[:N]`."""
    distributed = _distributed()
    workers = local_workers(scheduler)
    if workers is not None:
        with local_cluster(workers) as cluster, distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(scheduler)  # waits `distributed.comm.timeouts.connect` (Dask's default 30 s)
    except (OSError, TimeoutError, ValueError) as e:
        raise CliError(f"--scheduler {scheduler}: no Dask scheduler answers there ({e}); start one with "
                       f"`dask scheduler`, or use --scheduler local:N") from None
    with client:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except TimeoutError:
            raise CliError(f"--scheduler {scheduler}: no worker joined within {WORKERS_TIMEOUT} s; start workers "
                           f"with `dask worker {scheduler}`") from None
        yield client


def chunk_size(images: int, slots: int) -> int:
    """Images per task: about 8 tasks per worker thread (so they finish together), at most MAX_CHUNK."""
    return max(1, min(MAX_CHUNK, math.ceil(images / (8 * max(1, slots)))))


# ---------------------------------------------------------------------------------------------- on a worker

_detectors: dict[Weights, Detector] = {}  # this worker process's model, kept for its later tasks
_loading = threading.Lock()
_inference = threading.Lock()  # one image in the model at a time per process (workers given several threads)


def _worker_detector(weights: Weights) -> Detector:
    """The Detector of `weights`, loaded at this worker's first task of a run and kept."""
    with _loading:
        if weights not in _detectors:
            where = _worker_address()
            try:
                digest = sha256_file(weights.path)
            except OSError as e:
                raise WorkerSetupError(f"worker {where} cannot read the weights {weights.path} ({e.strerror or e}); "
                                       f"every worker must read the weights file at this path") from None
            if digest != weights.sha256:
                raise WorkerSetupError(f"worker {where}: {weights.path} is not the client's weights file (another "
                                       f"sha256); put the same file at this path on every worker")
            _detectors.clear()
            _detectors[weights] = Detector.load(weights.path)
        return _detectors[weights]


def _worker_address() -> str:
    try:
        return _distributed().get_worker().address
    except ValueError:  # not in a worker (a direct call)
        return "(no worker)"


def _run_chunk(weights: Weights, folder: str | None, task: Callable, args: tuple, items: list[tuple]) -> list:
    """A task: `task(detector, *args, *item)` for each item, with relative paths taken from `folder` (the
    client's working folder)."""
    detector = _worker_detector(weights)
    if folder is not None and os.getcwd() != folder:
        try:
            os.chdir(folder)
        except OSError as e:
            raise WorkerSetupError(f"worker {_worker_address()} has no folder {folder} ({e.strerror or e}): relative "
                                   f"paths are taken from the client's working folder; give absolute paths, or "
                                   f"run from a folder every worker has") from None
    return [task(detector, *args, *item) for item in items]


def _detect_image(detector: Detector, job: Job, index: int, path: str) -> tuple[Outcome, dict[Path, bytes]]:
    """`batch.process` for one image, its output files collected (path -> bytes) for the client to write."""
    files: dict[Path, bytes] = {}
    return process(detector, job, index, path, _inference, files.__setitem__), files


def _eval_image(detector: Detector, index: int, path: str, image_id: int) -> tuple[Outcome, dict[Path, bytes]]:
    """`ssd-np eval`'s detection of one image: its COCO rows under the annotations' image id."""
    outcome = Outcome(index, path)
    try:
        with _inference:
            outcome.coco = coco_rows(image_id, detector(load_rgb(path)))
    except ImageError as e:
        outcome.error = str(e)
    outcome.detections = len(outcome.coco)
    return outcome, {}


# ---------------------------------------------------------------------------------------------- on the client


def run_tasks(client, weights_path: str | os.PathLike, task: Callable, args: tuple, items: list[tuple],
              progress: Progress) -> list[Outcome]:
    """Run `task` on every item (`(index, path, ...)`) on the cluster, write the returned files atomically as
    they arrive, and return the outcomes (in completion order)."""
    distributed = _distributed()
    _warn_malloc(client, progress.err)
    weights = Weights(os.path.abspath(weights_path), sha256_file(weights_path))
    folder = os.getcwd() if any(not os.path.isabs(item[1]) for item in items) else None
    size = chunk_size(len(items), sum(client.nthreads().values()))
    chunks = {client.submit(_run_chunk, weights, folder, task, args, items[i:i + size], pure=False):
              items[i:i + size] for i in range(0, len(items), size)}
    outcomes = []
    try:
        for future in distributed.as_completed(list(chunks)):
            try:
                results = future.result()
            except distributed.KilledWorker as e:
                results = [(Outcome(item[0], item[1], error=f"{item[1]}: not processed: the Dask workers running "
                                                            f"it died ({e.allowed_failures + 1} times); run again "
                                                            f"with --resume"),
                            {}) for item in chunks[future]]
            except WorkerSetupError as e:
                raise CliError(str(e)) from None
            del chunks[future]
            for outcome, files in results:
                try:
                    for target, data in files.items():
                        write_atomic(target, data)
                except OSError as e:
                    outcome.error = output_error(outcome.path, e)
                outcomes.append(outcome)
                progress.advance(outcome)
    finally:
        client.cancel(list(chunks))  # Ctrl-C or a setup error: drop the tasks not finished
    return outcomes


def _malloc_set() -> bool:
    return MALLOC_VARIABLE in os.environ


def _warn_malloc(client, err: TextIO) -> None:
    """One warning line when workers run with Dask's MALLOC_TRIM_THRESHOLD_ (see `MALLOC_VARIABLE`)."""
    slowed = sum(client.run(_malloc_set).values())
    if slowed:
        err.write(f"ssd-np: warning: {slowed} Dask workers run with {MALLOC_VARIABLE} set (Dask's default), which "
                  f"costs the model 1.5x the CPU time; set distributed.nanny.pre-spawn-environ.{MALLOC_VARIABLE} to null "
                  f"in their Dask configuration\n")


def detect_on_cluster(scheduler: str, weights: str | os.PathLike, job: Job, todo: list[tuple[int, str]],
                      progress: Progress) -> list[Outcome]:
    """`ssd-np detect --scheduler`: the outcomes of `todo` ((index, path) pairs), their files written."""
    with connect(scheduler) as client:
        return run_tasks(client, weights, _detect_image, (job,), todo, progress)


def detect_coco_on_cluster(scheduler: str, weights: str | os.PathLike, images: list[tuple[int, Path]],
                           done: dict[int, list], err: TextIO) -> tuple[dict[int, list], list[Outcome]]:
    """`ssd-np eval --images --scheduler`: COCO results rows per image id (images in `done` kept as they are),
    and the outcomes of the images that failed."""
    todo = [(index, str(path), image_id) for index, (image_id, path) in enumerate(images) if image_id not in done]
    progress = Progress(len(todo), err, err)
    try:
        with connect(scheduler) as client:
            outcomes = run_tasks(client, weights, _eval_image, (), todo, progress)
    finally:
        progress.close()
    ids = {index: image_id for index, _, image_id in todo}
    results = dict(done)
    results.update((ids[o.index], o.coco) for o in outcomes if o.error is None)
    return results, sorted((o for o in outcomes if o.error is not None), key=lambda o: o.index)
