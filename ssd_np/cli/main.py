"""The `ssd-np` command line: the argument parser and the one place that turns errors into exit statuses
(`errors.py`)."""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ssd_np.cli.errors import (EXIT_BROKEN_PIPE, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE, CliError,
                               Terminated, os_error_text)

EPILOG = ("exit status: 0 success, 1 some work failed, 2 bad usage or bad input, 130 interrupted (Ctrl-C), "
          "141 output pipe closed, 143 terminated (SIGTERM)")
SCHEDULER_HELP = ("run on a Dask cluster (needs ssd_np[dask]): tcp://HOST:PORT of a running `dask scheduler`, or "
                  "local[:N] for N worker processes on this machine (default: one per core); same results")


def _weights_export(args: argparse.Namespace) -> int:
    from ssd_np.weights.fetch import export_archive
    from ssd_np.weights.hdf5 import export_checkpoint

    if args.checkpoint:
        genuine = export_checkpoint(args.checkpoint, args.out)
    else:
        genuine = export_archive(args.archive, args.out)
    print(f"wrote {args.out} ({'genuine release weights' if genuine else 'NOT the genuine release weights'})")
    return EXIT_OK


def _weights_fetch(args: argparse.Namespace) -> int:
    from ssd_np.weights.fetch import fetch

    out = fetch(args.out)
    print(f"wrote {out}")
    return EXIT_OK


def _weights_standin(args: argparse.Namespace) -> int:
    from ssd_np.weights.checkpoint import write_checkpoint
    from ssd_np.weights.standin import standin_weights
    from ssd_np.weights.hdf5 import write_h5

    try:
        tensors = standin_weights(args.seed, args.profile)
    except ValueError as e:  # a seed outside [0, 2**63)
        raise CliError(f"--seed: {e}") from None
    if args.out:
        write_h5(tensors, args.out, f"stand-in, seed {args.seed}, profile {args.profile}")
        print(f"wrote {args.out} (stand-in weights, seed {args.seed}, profile {args.profile}: not the genuine model)")
    if args.checkpoint_out:
        import numpy as np

        write_checkpoint(args.checkpoint_out, {**tensors, "global_step": np.int64(0)})
        print(f"wrote checkpoint {args.checkpoint_out} (stand-in weights, seed {args.seed}, profile {args.profile})")
    return EXIT_OK


def _weights_info(args: argparse.Namespace) -> int:
    from ssd_np.weights.hdf5 import load_weights

    _, attrs = load_weights(args.file)
    for key in ("model", "source", "genuine", "format", "format_version"):
        print(f"{key:15s} {attrs.get(key)}")
    return EXIT_OK


def _detect(args: argparse.Namespace) -> int:
    from ssd_np.cli.detect import run

    return run(args)


def _warmup(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ssd_np import model
    from ssd_np.engine.simd import TARGET
    from ssd_np.engine.warmup import HELPER_SECONDS, cached, compile_times
    from ssd_np.weights.hdf5 import MANIFEST

    was_cached = cached()
    HELPER_SECONDS.clear()
    start = time.perf_counter()
    with compile_times() as seconds:
        # any weights of the right shapes compile the same kernels (zeros: every box scores 0.5, NMS runs)
        layers = model.prepare({name: np.zeros(shape, np.float32) for name, shape in MANIFEST.shapes.items()})
        rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
        model.tf_outputs(rgb, layers)  # --format tf and coco
        model.detection_out(np.ascontiguousarray(rgb[:300, :300]), layers)  # --format openvino
    wall = time.perf_counter() - start
    seconds.update({f"{name} (helper process)": spent for name, spent in HELPER_SECONDS.items()})
    for name, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"{spent:6.2f} s  {name}")
    state = "were already cached" if was_cached and not seconds else "are now cached"
    print(f"ssd-np: the kernels for {TARGET.cpu} ({TARGET.isa}) {state}: {len(seconds)} compiled in "
          f"{sum(seconds.values()):.1f} s CPU, {wall:.1f} s in all")
    return EXIT_OK


def _trace(args: argparse.Namespace) -> int:
    from ssd_np.verify.trace import write_trace

    count = write_trace(args.image, args.out, args.weights, openvino=args.openvino)
    print(f"wrote {args.out}: {count} tensors")
    return EXIT_OK


def _explain(args: argparse.Namespace) -> int:
    import time

    from ssd_np.atomic import write_atomic
    from ssd_np.cli.detect import prepare_folder
    from ssd_np.images import load_rgb
    from ssd_np.report.explain import explain, render
    from ssd_np.weights.hdf5 import default_weights_path, load_weights

    start = time.monotonic()
    out = Path(args.out)
    if out.is_dir():
        raise CliError(f"--out {out}: is a folder; give the HTML file to write, e.g. {out / 'explain.html'}")
    weights_file = Path(args.weights) if args.weights else default_weights_path()
    weights, attrs = load_weights(weights_file)
    rgb = load_rgb(args.image)
    prepare_folder(out.parent, f"--out {out}: folder")
    source, genuine = str(attrs["source"]), bool(attrs["genuine"])
    explanation = explain(rgb, weights)
    text = render(explanation, Path(args.image).name, weights_file.name, source, genuine)
    write_atomic(out, text.encode("utf-8"))
    if source.startswith("stand-in"):
        print(f"ssd-np: warning: {weights_file} holds stand-in weights ({source}): the page says its detections "
              f"are NOT real", file=sys.stderr)
    count = int(explanation.trace["num_detections"][0])
    print(f"wrote {out} ({len(text) / 1e6:.1f} MB): {count} detection{'s' if count != 1 else ''}, "
          f"{time.monotonic() - start:.1f} s")
    return EXIT_OK


def _capture(args: argparse.Namespace) -> int:
    from ssd_np.verify.capture import capture, read_map

    overrides = {"kind": args.input_kind, "channels": args.channels, "layout": args.layout, "dtype": args.dtype,
                 "size": args.size}
    count, coverage = capture(args.model, args.image, args.out, read_map(args.map) if args.map else None,
                              overrides, None if args.precision == "default" else args.precision)
    print(f"wrote {args.out}: {count} tensors; {coverage}")
    return EXIT_OK


def _size(text: str) -> tuple[int, int]:
    height, sep, width = text.lower().partition("x")
    if not (sep and height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH, e.g. 300x300, got {text!r}")
    return int(height), int(width)


def _compare(args: argparse.Namespace) -> int:
    from ssd_np.verify.compare import main_compare
    from ssd_np.verify.presets import PRESETS

    extend = html = None
    if args.isolate or args.html:
        from ssd_np.verify.diagnosis import Diagnosis

        extend = Diagnosis(args.isolate, args.weights, args.image).extend
    if args.html:
        from ssd_np.report.compare_report import render

        html = (args.html, render)
    return main_compare(args.reference, args.candidate, atol=args.atol, rtol=args.rtol, json_out=args.json,
                        preset=PRESETS.get(args.preset), extend=extend, html=html)


def _eval(args: argparse.Namespace) -> int:
    from ssd_np.cli.evaluate import run_eval

    return run_eval(args.annotations, images=args.images, results=args.results, max_images=args.max_images,
                    weights=args.weights, json_out=args.json, per_class=args.per_class, resume=args.resume,
                    scheduler=args.scheduler)


DETECT_EPILOG = """\
outputs:
  --format tf        DIR/<stem>.json: image, detection_boxes [[ymin, xmin, ymax, xmax], ...] normalized,
                     detection_scores, detection_classes (COCO ids), num_detections
  --format openvino  DIR/<stem>.json: image, detection_out [[image_id, label, conf, x_min, y_min, x_max,
                     y_max], ...]; the image resized to 300x300 as cv2.resize(INTER_LINEAR) does, in BGR
  --format coco      DIR/results.json, one file for all images, for pycocotools' COCO.loadRes: image_id (from
                     COCO file names, e.g. 000000000139.jpg -> 139), category_id, bbox [x, y, w, h] in pixels,
                     score
  --draw DIR         DIR/<stem>.png: the image with boxes, names and scores
  Floats are the exact float32 values. Two inputs with the same stem (a/x.jpg, b/x.png), or with --format
  coco the same image_id, would collide: such a run is refused before any work. Files are replaced
  atomically.
  Without --json-dir and --draw, the detections are printed on stdout.
  --resume skips an image when all its outputs exist (<stem>.json, <stem>.png, or for --format coco a row
  with its image_id in DIR/results.json; images without detections are detected again).

exit status:
  0  every image succeeded
  1  some images failed (each reported on stderr; the others' outputs are written)
  2  bad usage: no such input, no images found, unwritable output folder, missing or bad weights"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssd-np", epilog=EPILOG,
        description="TensorFlow's ssd_mobilenet_v2_coco (2018_03_29), reimplemented in NumPy + numba.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    weights = commands.add_parser("weights", help="get, export, create and inspect weights files", epilog=EPILOG)
    wcommands = weights.add_subparsers(dest="weights_command", required=True, metavar="ACTION")

    export = wcommands.add_parser("export", help="export a TF checkpoint or the release archive to HDF5",
                                  epilog=EPILOG)
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="PREFIX", help="TF checkpoint prefix, e.g. path/model.ckpt")
    source.add_argument("--archive", metavar="FILE", help="the release archive ssd_mobilenet_v2_coco_2018_03_29.tar.gz")
    export.add_argument("--out", required=True, metavar="FILE.h5", help="HDF5 weights file to write")
    export.set_defaults(run=_weights_export)

    fetch = wcommands.add_parser(
        "fetch", epilog=EPILOG,
        help="download the release archive, verify it and export its weights",
        description="Download the official release archive, verify its sha256 and every tensor's CRC32C, and "
                    "export the weights. Default destination: $SSD_NP_WEIGHTS, else "
                    "~/.cache/ssd_np/ssd_mobilenet_v2_coco_2018_03_29.h5 (honours $XDG_CACHE_HOME).")
    fetch.add_argument("--out", metavar="FILE.h5", help="where to write the weights (default: see above)")
    fetch.set_defaults(run=_weights_fetch)

    standin = wcommands.add_parser(
        "standin", epilog=EPILOG, help="write seeded stand-in weights (NOT the genuine model) for verification")
    standin.add_argument("--seed", type=int, required=True)
    standin.add_argument("--profile", choices=["sparse", "dense"], default="sparse")
    standin.add_argument("--out", metavar="FILE.h5", help="HDF5 weights file to write")
    standin.add_argument("--checkpoint-out", metavar="PREFIX", help="also/instead write a TF checkpoint")
    standin.set_defaults(run=_weights_standin)

    info = wcommands.add_parser("info", help="check a weights file strictly and print where it came from",
                                epilog=EPILOG)
    info.add_argument("file", metavar="FILE.h5")
    info.set_defaults(run=_weights_info)

    warmup = commands.add_parser(
        "warmup", help="compile the numba kernels ahead of time (e.g. in a Docker build step)", epilog=EPILOG,
        description="Compile every kernel a detection needs into numba's on-disk cache (beside the sources, or "
                    "NUMBA_CACHE_DIR) for this CPU, and print what was compiled and how long it took. Otherwise "
                    "the first detection compiles them.")
    warmup.set_defaults(run=_warmup)

    detect = commands.add_parser(
        "detect", help="detect objects in images and folders of images",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=DETECT_EPILOG,
        description="Run the detector on images and folders of images (searched for .jpg .jpeg .png .bmp .gif\n"
                    ".tif .tiff .webp files, sorted, hidden entries skipped) and write or print the detections.")
    detect.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    detect.add_argument("--weights", metavar="FILE.h5",
                        help="weights file (default: $SSD_NP_WEIGHTS, else the one `ssd-np weights fetch` writes)")
    detect.add_argument("--format", choices=["tf", "openvino", "coco"], default="tf",
                        help="which reference to reproduce and write (default: tf; see below)")
    detect.add_argument("--json-dir", metavar="DIR", help="write the detections as JSON into DIR (created if needed)")
    detect.add_argument("--draw", metavar="DIR", help="write annotated copies of the images into DIR as PNG")
    detect.add_argument("--min-score", type=float, metavar="S",
                        help="write only detections with score >= S (default: all the model reports, score > 0.3)")
    detect.add_argument("--jobs", type=int, metavar="N",
                        help="images processed at the same time, by threads sharing the model (default: one per "
                             "core; 1 runs one image at a time on every core); results are identical for any N")
    detect.add_argument("--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP)
    detect.add_argument("--resume", action="store_true",
                        help="skip the images whose output files already exist (see below)")
    detect.set_defaults(run=_detect)

    trace = commands.add_parser(
        "trace", epilog=EPILOG, help="save every intermediate tensor of one image under its TF graph node name",
        description="Run one image and save every intermediate tensor (NHWC float32, batch dimension 1) under the "
                    "genuine TF graph node name that computes it, in graph order, with metadata (weights, image "
                    "hashes). Compare two traces with `ssd-np compare`.")
    trace.add_argument("image", metavar="IMAGE")
    trace.add_argument("--out", required=True, metavar="TRACE.npz")
    trace.add_argument("--weights", metavar="FILE.h5", help="weights file (default: as `ssd-np detect`)")
    trace.add_argument("--openvino", action="store_true",
                       help="also trace OpenVINO's detection_out as DetectionOutput (needs a 300x300 image)")
    trace.set_defaults(run=_trace)

    explain = commands.add_parser(
        "explain", epilog=EPILOG, help="write one HTML page showing every stage of the SSD on an image",
        description="Follow one image through the model, stage by stage, as the plain-NumPy reference computes it: "
                    "preprocessing, feature maps, the 1917 anchors, decoded boxes and class scores, per-class "
                    "non-maximum suppression (what was kept, what was suppressed and why), the final detections "
                    "(TF's outputs and OpenVINO's detection_out). One self-contained HTML file: images and plots "
                    "inline, no network, no scripts.")
    explain.add_argument("image", metavar="IMAGE")
    explain.add_argument("--out", required=True, metavar="PAGE.html", help="the HTML file to write")
    explain.add_argument("--weights", metavar="FILE.h5", help="weights file (default: as `ssd-np detect`)")
    explain.set_defaults(run=_explain)

    capture = commands.add_parser(
        "capture", epilog=EPILOG, help="run a converted model (ONNX, OpenVINO IR, TFLite, TF .pb) with its own "
                                       "runtime and save its intermediate tensors as a trace",
        description="Run MODEL (.onnx: onnxruntime, .xml: OpenVINO, .tflite: LiteRT/tflite-runtime, .pb: "
                    "TensorFlow) on IMAGE with every intermediate tensor exposed, and save those with a TF "
                    "counterpart under the reference's node names in the trace format (NHWC, float32, "
                    "dequantized), for `ssd-np compare`. The image is fed in the model's own input convention, "
                    "detected from the model; the options below override it.")
    capture.add_argument("model", metavar="MODEL")
    capture.add_argument("image", metavar="IMAGE")
    capture.add_argument("--out", required=True, metavar="CANDIDATE.npz")
    capture.add_argument("--map", metavar="FILE.json", help="extra name mapping {runtime tensor name: TF node}")
    capture.add_argument("--precision", default="f32", metavar="PREC",
                         help="OpenVINO INFERENCE_PRECISION_HINT (default f32; 'default' keeps the plugin's)")
    capture.add_argument("--input-kind", choices=["pixels", "preprocessed"],
                         help="feed 0..255 pixels or TF-preprocessed values (2/255 x - 1)")
    capture.add_argument("--channels", choices=["RGB", "BGR"], help="channel order fed")
    capture.add_argument("--layout", choices=["NHWC", "NCHW"], help="input layout")
    capture.add_argument("--dtype", choices=["uint8", "float32"], help="input element type")
    capture.add_argument("--size", type=_size, metavar="HxW", help="resize the image to HxW (OpenCV bilinear)")
    capture.set_defaults(run=_capture)

    from ssd_np.verify.compare import DEFAULT_ATOL, DEFAULT_RTOL
    from ssd_np.verify.presets import PRESETS

    compare = commands.add_parser(
        "compare", help="compare a candidate trace with a reference trace, layer by layer",
        epilog="exit status: 0 every common tensor within tolerance, 1 something differs, 2 unusable input",
        description="For every tensor in both traces, in the reference's (graph) order: max abs and relative "
                    "difference and the fraction outside |c - r| <= atol + rtol*|r|; the first tensor outside "
                    "the tolerance is marked; layout differences (NCHW, xy boxes, BGR, 0-based classes, scores "
                    "vs logits) are named. With --preset, --isolate or --html also cosine similarity, SQNR and "
                    "the detection-level verdict.")
    compare.add_argument("reference", metavar="REFERENCE.npz")
    compare.add_argument("candidate", metavar="CANDIDATE.npz")
    compare.add_argument("--atol", type=float, help=f"(default {DEFAULT_ATOL:g}, or the preset's)")
    compare.add_argument("--rtol", type=float, help=f"(default {DEFAULT_RTOL:g}, or the preset's)")
    compare.add_argument("--preset", choices=list(PRESETS),
                         help="tolerances for a float32, float16 or int8 build (tensors: elementwise for fp32, SQNR "
                              "and cosine for fp16/int8; final outputs judged at the detection level)")
    compare.add_argument("--isolate", action="store_true",
                         help="recompute every reference node from the candidate's own inputs: separates each "
                              "layer's local error from inherited error (needs the weights and the traced image)")
    compare.add_argument("--weights", metavar="FILE.h5", help="--isolate: weights file (default: as `ssd-np detect`)")
    compare.add_argument("--image", metavar="IMAGE",
                         help="the traced image (default: the one named in the traces' metadata; its sha256 is "
                              "checked)")
    compare.add_argument("--json", metavar="OUT.json", help="also write the report as JSON")
    compare.add_argument("--html", metavar="REPORT.html",
                         help="also write a self-contained HTML report (table, error-vs-depth plot, detections "
                              "drawn on the image)")
    compare.set_defaults(run=_compare)

    evaluate = commands.add_parser(
        "eval", epilog=EPILOG, help="COCO box AP on annotated images (identical to pycocotools)",
        description="With --images: detect on every annotated image found in DIR and print the 12 COCO box "
                    "metrics. Without --images: score an existing --results file.")
    evaluate.add_argument("--annotations", required=True, type=Path, metavar="instances.json")
    evaluate.add_argument("--images", type=Path, metavar="DIR", help="folder of the annotated images")
    evaluate.add_argument("--results", type=Path, metavar="OUT.json",
                          help="with --images: write the COCO results file here; without: the file to score")
    evaluate.add_argument("--max-images", type=int, metavar="N", help="only the first N annotated images by id")
    evaluate.add_argument("--weights", type=Path, metavar="FILE.h5", help="weights file (default: as detect)")
    evaluate.add_argument("--json", type=Path, metavar="OUT.json", help="write the 12 metrics as JSON")
    evaluate.add_argument("--per-class", action="store_true", help="also print AP per category")
    evaluate.add_argument("--resume", action="store_true",
                          help="reuse the detections of images already in --results")
    evaluate.add_argument("--scheduler", metavar="ADDRESS", help=SCHEDULER_HELP)
    evaluate.set_defaults(run=_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the one place that turns every error, signal and closed pipe into a line and a status.

    - bad input or usage: `ssd-np: error: <file>: <problem>; <fix>` on stderr, exit 2 (1 when some of the
      work failed, e.g. some images of a batch);
    - Ctrl-C (SIGINT): exit 130; SIGTERM: exit 143. Both unwind the program as an exception, so every
      temporary file (`ssd_np.atomic`) is removed and no partial output is left;
    - stdout closed early (`ssd-np detect ... | head -1`): the run stops quietly with exit 141 (128 + SIGPIPE),
      the status a shell reports for `cat`, `grep` or `seq` killed by the closed pipe;
    - text that the terminal's encoding cannot show (e.g. PYTHONIOENCODING=ascii and a non-ASCII file name) is
      printed with backslash escapes instead of failing.
    """
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "weights" and args.weights_command == "standin" and not (args.out or args.checkpoint_out):
        parser.error("weights standin: give --out FILE.h5 and/or --checkpoint-out PREFIX")
    with terminate_as_exception():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ssd_np.weights.checkpoint import CheckpointError
    from ssd_np.verify.coco_eval import CocoError
    from ssd_np.verify.compare import TraceError
    from ssd_np.cli.errors import EvalError
    from ssd_np.weights.fetch import FetchError
    from ssd_np.images import ImageError
    from ssd_np.weights.hdf5 import WeightsError
    from ssd_np.verify.capture import CaptureError
    from ssd_np.verify.trace import TraceInputError

    try:
        return args.run(args)
    except (CliError, CheckpointError, WeightsError, FetchError, ImageError, TraceError, EvalError, CocoError,
            CaptureError, TraceInputError) as e:
        print(f"ssd-np: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as e:
        print(f"ssd-np: error: {os_error_text(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ssd-np: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("ssd-np: terminated", file=sys.stderr)
        return EXIT_TERMINATED


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a closed pipe raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a file (e.g. captured in a test)
        pass


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """While the block runs, SIGTERM raises `Terminated` (as SIGINT raises KeyboardInterrupt), so `finally`
    blocks run and temporary files are removed. Only the main thread can receive signals; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
