"""One image's work in a batch, and the progress of the batch: shared by `ssd-np detect`'s threads
(`detect.py`) and its Dask workers (`distributed.py`).

`process` runs one image through the detector and writes its outputs (through `write`, atomic by default); any
problem with that image becomes the `Outcome`'s error, one line, and the batch goes on. `Progress` draws the
bar on stderr (when it is a terminal) and prints each image's text on stdout in input order.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ContextManager, TextIO

from ssd_np.atomic import write_atomic
from ssd_np.cli.errors import os_error_text
from ssd_np.cli.outputs import at_least, coco_image_id, coco_rows, json_bytes, json_record, text_lines
from ssd_np.detector import Detector
from ssd_np.images import ImageError, file_name_text, load_rgb

@dataclass(frozen=True)
class Job:
    """What every image of a run needs besides the detector."""

    format: str
    json_dir: Path | None
    draw_dir: Path | None
    min_score: float | None


@dataclass
class Outcome:
    """One image's result: an error message, or its detection count (and COCO rows for the coco format)."""

    index: int
    path: str
    error: str | None = None
    detections: int = 0
    coco: list[dict] = field(default_factory=list)
    text: str = ""


# ---------------------------------------------------------------------------------------------- one image


def process(detector: Detector, job: Job, index: int, path: str,
            inference: ContextManager = contextlib.nullcontext(),
            write: Callable[[Path, bytes], None] = write_atomic) -> Outcome:
    """Detect on one image and write its outputs; any problem with this image becomes `Outcome.error`.

    `inference` is entered around the model run (a lock where the model must not run in two threads at once);
    `write(path, data)` writes each output file (a Dask worker collects them for the client to write instead).
    """
    outcome = Outcome(index, path)
    try:
        rgb = load_rgb(path)
        with inference:
            found = detector(rgb, "openvino" if job.format == "openvino" else "tf")
        if job.min_score is not None:
            found = at_least(found, job.min_score)
        outcome.detections = len(found)
        stem = Path(path).stem
        if job.json_dir is not None and job.format == "coco":
            outcome.coco = coco_rows(coco_image_id(path), found)
        elif job.json_dir is not None:
            write(job.json_dir / f"{stem}.json", json_bytes({"image": file_name_text(path),
                                                             **json_record(found, job.format)}))
        if job.draw_dir is not None:
            from ssd_np.draw import draw_detections

            png = io.BytesIO()
            draw_detections(rgb, found.pixel_boxes, found.class_ids, found.scores).save(png, format="PNG",
                                                                                         compress_level=1)
            write(job.draw_dir / f"{stem}.png", png.getvalue())
        if job.json_dir is None and job.draw_dir is None:
            outcome.text = text_lines(path, found)
    except ImageError as e:
        outcome.error = str(e)
    except OSError as e:
        outcome.error = output_error(path, e)
    except ValueError as e:
        outcome.error = f"{path}: {e}"
    return outcome


def output_error(path: str, e: OSError) -> str:
    """The message of an image whose output file could not be written."""
    return f"{path}: cannot write its output ({os_error_text(e)})"


# ---------------------------------------------------------------------------------------------- progress


def progress_line(done: int, total: int, failed: int, elapsed: float, width: int) -> str:
    """`  37/177 [#####-----]  21%  1 failed  2.1 images/s  ETA 1m07s`, at most `width` characters."""
    rate = done / elapsed if elapsed > 0 else 0.0
    eta = f"ETA {_duration((total - done) / rate)}" if rate > 0 and done < total else ""
    tail = f" {100 * done // total:3d}%" + (f"  {failed} failed" if failed else "") + \
           (f"  {rate:.1f} images/s  {eta}" if done else "")
    head = f"{done:>{len(str(total))}}/{total} "
    bar = max(0, min(40, width - len(head) - len(tail) - 3))
    filled = bar * done // total
    line = head + (f"[{'#' * filled}{'-' * (bar - filled)}]" if bar >= 5 else "") + tail
    return line.rstrip()[: max(0, width - 1)]


def _duration(seconds: float) -> str:
    seconds = int(math.ceil(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """The progress bar on stderr (only when stderr is a terminal) and the lines printed around it."""

    def __init__(self, total: int, err: TextIO, out: TextIO):
        self.total, self.err, self.out = total, err, out
        self.live = err.isatty()
        self.start = time.monotonic()
        self.done = self.failed = 0
        self.texts: dict[int, str] = {}  # stdout text waiting for the images before it
        self.next_text = 0

    def _clear(self) -> None:
        if self.live:
            self.err.write("\r\033[K")

    def _draw(self) -> None:
        if self.live:
            try:
                width = os.get_terminal_size(self.err.fileno()).columns or 80  # a new terminal may say 0
            except (OSError, ValueError):
                width = 80
            self.err.write(progress_line(self.done, self.total, self.failed, time.monotonic() - self.start, width))
            self.err.flush()

    def advance(self, outcome: Outcome) -> None:
        self._clear()
        self.done += 1
        if outcome.error:
            self.failed += 1
            self.err.write(f"ssd-np: error: {outcome.error}\n")
        self.texts[outcome.index] = outcome.text
        if self.next_text in self.texts:
            self.err.flush()
            while self.next_text in self.texts:
                self.out.write(self.texts.pop(self.next_text))
                self.next_text += 1
            self.out.flush()
        self._draw()

    def close(self) -> None:
        self._clear()
        self.err.flush()
