"""Per-stage and per-layer timings of ssd_np's forward pass on one image (ssd_np's runtime environment).

    python3 tools/profile_layers.py [--threads N] [--runs 30] [--image PATH] [--layers] [--fuse-min-bytes N]
                                    [--openvino IR.xml]

Stages: preprocess (`engine.preprocess.preprocess`), backbone (`engine.network.feature_maps`), heads
(`engine.network.predict`), post-processing (`reference.postprocess.tf_outputs` with `engine.postprocess.OPS`),
with the layers prepared once (`model.prepare`, as `Detector` does), stand-in weights (seed 1, "sparse").
Reports min and median over `--runs` calls after 3 warm-up calls. `--layers` also times every kernel call
(`conv_bn_act`, `depthwise3x3_bn_act`, `inverted_residual` and the box predictors, as `engine.network` calls
them) by wrapping them, listed by cost (min over the runs). `--fuse-min-bytes N` runs the blocks whose expansion
output has at least N bytes as one fused kernel (`engine.network.FUSE_MIN_EXPANSION_BYTES`). The kernels are
compiled for numba's CPU (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES; see `engine.simd.TARGET`, printed first). The
machine may be shared: compare min with min, in one process.

`--openvino IR.xml` also runs OpenVINO's CPU plugin (f32, the same number of threads, `ssd_np[openvino]`) on that
IR, e.g. the stand-in model `tools/peers.py build --work W` writes to `W/seed1-sparse/ssd_mobilenet_v2_coco.xml`
(`tools/bench.py --work W` builds the same), in turn with ssd_np, and compares the two block by block: each graph
block of `reference.mobilenet_v2.ARCHITECTURE` and each box predictor, OpenVINO's time from its own per-node
counters (PERF_COUNT; its nodes keep the TF scope names), ssd_np's from its kernel calls. Medians over the runs
of each block's time per run. It shows where ssd_np loses to OpenVINO on this CPU (capped to AVX2 with
`ONEDNN_MAX_CPU_ISA=AVX2`, beside `NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=` for ssd_np).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ssd_np import model  # noqa: E402
from ssd_np.engine import network, threads  # noqa: E402
from ssd_np.engine.postprocess import OPS  # noqa: E402
from ssd_np.engine.preprocess import preprocess  # noqa: E402
from ssd_np.engine.simd import TARGET  # noqa: E402
from ssd_np.reference import postprocess  # noqa: E402
from ssd_np.reference.anchors import ssd_anchors  # noqa: E402
from ssd_np.reference.box_predictor import ANCHORS_PER_LOCATION  # noqa: E402
from ssd_np.reference.mobilenet_v2 import ARCHITECTURE, SCOPE  # noqa: E402
from ssd_np.reference.preprocess import INPUT_SIZE  # noqa: E402
from ssd_np.weights.standin import standin_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--image", default=str(ROOT / "tests" / "data" / "images" / "exact_300x300.png"))
    parser.add_argument("--layers", action="store_true")
    parser.add_argument("--fuse-min-bytes", type=int, default=network.FUSE_MIN_EXPANSION_BYTES)
    parser.add_argument("--openvino", metavar="IR_XML", help="compare with OpenVINO on this IR, block by block")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    network.FUSE_MIN_EXPANSION_BYTES = args.fuse_min_bytes
    rgb = np.ascontiguousarray(np.asarray(Image.open(args.image).convert("RGB")))
    openvino = _OpenVINO(args.openvino, args.threads, rgb) if args.openvino else None
    layers = model.prepare(standin_weights(1, "sparse"))
    calls: list[tuple[str, tuple, tuple, float]] = []
    ours_blocks: dict[str, list[float]] = {}
    if args.layers or openvino:
        for name in ("conv_bn_act", "depthwise3x3_bn_act", "inverted_residual"):
            setattr(network, name, _timed(getattr(network, name), name, calls))
        for key in [k for k in layers if k.startswith("BoxPredictor_")]:
            layers[key] = _timed(layers[key], key, calls)
    stages: dict[str, list[float]] = {"preprocess": [], "backbone": [], "heads": [], "postprocess": [], "total": []}
    per_call: dict[int, list[float]] = {}
    labels: dict[int, str] = {}
    for run in range(args.runs + 3):
        calls.clear()
        with threads.pinned():  # as model.predict runs them
            t0 = time.perf_counter()
            x = preprocess(rgb)
            t1 = time.perf_counter()
            maps = network.feature_maps(x, layers)
            t2 = time.perf_counter()
            boxes, logits = network.predict(maps, layers)
            t3 = time.perf_counter()
        postprocess.tf_outputs(boxes, logits, ssd_anchors(), {}, OPS)
        t4 = time.perf_counter()
        if openvino:
            openvino.run(keep=run >= 3)
        if run < 3:
            continue
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            stages[name].append(dt)
        for i, (kernel, shape_in, shape_out, dt) in enumerate(calls):
            per_call.setdefault(i, []).append(dt)
            labels[i] = f"{kernel} {shape_in} -> {shape_out}"
        for block, dt in (_per_block(calls) if openvino else {}).items():
            ours_blocks.setdefault(block, []).append(dt)
    print(f"kernels for {TARGET.cpu} ({TARGET.isa}); threads {args.threads} ({numba.threading_layer()}), "
          f"{args.runs} runs: min / median ms")
    for name, times in stages.items():
        print(f"  {name:12s} {1e3 * min(times):7.2f} / {1e3 * np.median(times):7.2f}")
    if args.layers:
        total = sum(min(t) for t in per_call.values())
        print(f"kernel calls (sum of min {1e3 * total:.2f} ms):")
        for i in sorted(per_call, key=lambda i: -min(per_call[i])):
            print(f"  #{i:3d} {labels[i]:60s} {1e3 * min(per_call[i]):7.3f}")
    if openvino:
        _compare(ours_blocks, stages, openvino)


def _timed(function, name: str, calls: list):
    def wrapper(x, *args, **kw):
        t = time.perf_counter()
        out = function(x, *args, **kw)
        calls.append((name, x.shape, out.shape, time.perf_counter() - t))
        return out
    return wrapper


def _block_outputs() -> list[tuple[str, tuple[int, int, int]]]:
    """(name, output shape) of each block of ARCHITECTURE, in graph order, for the network's input."""
    blocks, h = [], INPUT_SIZE
    for name, _, stride, _, out in ARCHITECTURE:
        h = -(-h // stride)
        blocks.append((name, (h, h, out)))
    return blocks


def _per_block(calls: list) -> dict[str, float]:
    """One forward pass's kernel calls summed per graph block. A block's calls (1 fused, or expand / depthwise /
    project, or depthwise / 1x1) end with the one whose output has the block's output shape (no intermediate
    shape of this network equals its block's output); box predictors are labelled by name."""
    ends = _block_outputs()
    times: dict[str, float] = {}
    b = 0
    for kernel, _, shape_out, dt in calls:
        if kernel.startswith("BoxPredictor_"):
            name = kernel
        else:
            name, shape = ends[b]
            b += shape_out == shape
        times[name] = times.get(name, 0.0) + dt
    if b != len(ends):
        raise RuntimeError(f"profile_layers: the kernel calls ended {len(ends) - b} blocks short of ARCHITECTURE")
    return times


class _OpenVINO:
    """OpenVINO's CPU plugin on an IR with per-node counters; `run` infers once, `blocks` the per-block times."""

    def __init__(self, xml: str, threads: int, rgb: np.ndarray):
        try:
            import openvino as ov
        except ImportError:
            sys.exit("profile_layers: --openvino needs OpenVINO: pip install 'ssd_np[openvino]'")
        if not Path(xml).is_file():
            sys.exit(f"profile_layers: no OpenVINO IR at {xml}: build one with `tools/peers.py build --work DIR` "
                     "(reference venv)")
        try:
            compiled = ov.Core().compile_model(xml, "CPU", {
                "INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                "PERF_COUNT": True})
        except RuntimeError as error:  # not an IR OpenVINO can read: its last line says why
            reason = str(error).strip().splitlines()[-1]
            sys.exit(f"profile_layers: OpenVINO cannot load {xml}: {reason}")
        self.version = ov.__version__
        self.request = compiled.create_infer_request()
        _, h, w, _ = compiled.input(0).get_shape()  # (1, 300, 300, 3) BGR, as tools/peers.py feeds it
        bgr = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BILINEAR))[:, :, ::-1][None]
        self.input = np.ascontiguousarray(bgr, compiled.input(0).get_element_type().to_dtype())
        self.totals: list[float] = []
        self.blocks: dict[str, list[float]] = {}

    def run(self, keep: bool) -> None:
        t = time.perf_counter()
        self.request.infer({0: self.input})
        dt = time.perf_counter() - t
        if not keep:
            return
        self.totals.append(dt)
        per_run: dict[str, float] = {}
        for node in self.request.profiling_info:
            block = _openvino_block(node.node_name)
            per_run[block] = per_run.get(block, 0.0) + node.real_time.total_seconds()
        for block, seconds in per_run.items():
            self.blocks.setdefault(block, []).append(seconds)


_NAMES = {name for name, *_ in ARCHITECTURE}


def _openvino_block(node: str) -> str:
    """The graph block of an OpenVINO node, from the TF scope in its name ("other": pre/post-processing)."""
    parts = node.split("/")
    for part in parts:
        if part.startswith("BoxPredictor_"):
            return part
    if node.startswith(SCOPE + "/") and len(parts) > 2:
        name = parts[2].removesuffix("_depthwise")
        if name in _NAMES:
            return name
    return "other"


def _compare(ours: dict[str, list[float]], stages: dict[str, list[float]], openvino: _OpenVINO) -> None:
    """Block by block: ssd_np's and OpenVINO's median ms and their ratio, in graph order, with subtotals."""
    def median_ms(times: list[float] | None) -> float:
        return 1e3 * float(np.median(times)) if times else 0.0

    print(f"ssd_np against OpenVINO {openvino.version} (f32, same threads), median ms per block "
          "(ssd_np: its kernel calls; OpenVINO: its per-node counters):")
    rows = [name for name, _ in _block_outputs()] + [f"BoxPredictor_{i}" for i in range(len(ANCHORS_PER_LOCATION))]
    subtotal = {"backbone": [0.0, 0.0], "heads": [0.0, 0.0]}
    print(f"  {'block':34s} {'ssd_np':>8s} {'OpenVINO':>9s} {'ratio':>7s}")
    for name in rows:
        a, b = median_ms(ours.get(name)), median_ms(openvino.blocks.get(name))
        part = subtotal["heads" if name.startswith("BoxPredictor_") else "backbone"]
        part[0] += a
        part[1] += b
        print(f"  {name:34s} {a:8.3f} {b:9.3f} {a / b if b else float('nan'):6.2f}x")
    for name, (a, b) in subtotal.items():
        print(f"  {name + ' (sum)':34s} {a:8.3f} {b:9.3f} {a / b:6.2f}x")
    other = median_ms([p + q for p, q in zip(stages["preprocess"], stages["postprocess"])])
    print(f"  {'pre/post-processing':34s} {other:8.3f} {median_ms(openvino.blocks.get('other')):9.3f}")
    total, theirs = median_ms(stages["total"]), median_ms(openvino.totals)
    print(f"  {'whole call (wall)':34s} {total:8.3f} {theirs:9.3f} {total / theirs:6.2f}x")


if __name__ == "__main__":
    main()
