"""Per-stage and per-layer timings of ssd_np's forward pass on one image (ssd_np's runtime environment).

    python3 tools/profile_layers.py [--threads N] [--runs 30] [--image PATH] [--layers] [--fuse-min-bytes N]

Stages: preprocess (`engine.preprocess.preprocess`), backbone (`engine.network.feature_maps`), heads
(`engine.network.predict`), post-processing (`reference.postprocess.tf_outputs` with `engine.postprocess.OPS`),
with the layers prepared once (`model.prepare`, as `Detector` does), stand-in weights (seed 1, "sparse").
Reports min and median over `--runs` calls after 3 warm-up calls. `--layers` also times every kernel call
(`conv_bn_act`, `depthwise3x3_bn_act`, `inverted_residual` and the box predictors, as `engine.network` calls
them) by wrapping them, listed by cost (min over the runs). `--fuse-min-bytes N` runs the blocks whose expansion
output has at least N bytes as one fused kernel (`engine.network.FUSE_MIN_EXPANSION_BYTES`). The kernels are
compiled for numba's CPU (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES; see `engine.simd.TARGET`, printed first). The machine may be shared: compare min with min,
in one process.
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
from ssd_np.engine import network  # noqa: E402
from ssd_np.engine.postprocess import OPS  # noqa: E402
from ssd_np.engine.preprocess import preprocess  # noqa: E402
from ssd_np.engine.simd import TARGET  # noqa: E402
from ssd_np.reference import postprocess  # noqa: E402
from ssd_np.reference.anchors import ssd_anchors  # noqa: E402
from ssd_np.weights.standin import standin_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--image", default=str(ROOT / "tests" / "data" / "images" / "exact_300x300.png"))
    parser.add_argument("--layers", action="store_true")
    parser.add_argument("--fuse-min-bytes", type=int, default=network.FUSE_MIN_EXPANSION_BYTES)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    network.FUSE_MIN_EXPANSION_BYTES = args.fuse_min_bytes
    layers = model.prepare(standin_weights(1, "sparse"))
    rgb = np.ascontiguousarray(np.asarray(Image.open(args.image).convert("RGB")))
    calls: list[tuple[str, float]] = []
    if args.layers:
        for name in ("conv_bn_act", "depthwise3x3_bn_act", "inverted_residual"):
            setattr(network, name, _timed(getattr(network, name), name, calls))
        for key in [k for k in layers if k.startswith("BoxPredictor_")]:
            layers[key] = _timed(layers[key], key, calls)
    stages: dict[str, list[float]] = {"preprocess": [], "backbone": [], "heads": [], "postprocess": [], "total": []}
    per_call: dict[int, list[float]] = {}
    labels: dict[int, str] = {}
    for run in range(args.runs + 3):
        calls.clear()
        t0 = time.perf_counter()
        x = preprocess(rgb)
        t1 = time.perf_counter()
        maps = network.feature_maps(x, layers)
        t2 = time.perf_counter()
        boxes, logits = network.predict(maps, layers)
        t3 = time.perf_counter()
        postprocess.tf_outputs(boxes, logits, ssd_anchors(), {}, OPS)
        t4 = time.perf_counter()
        if run < 3:
            continue
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            stages[name].append(dt)
        for i, (label, dt) in enumerate(calls):
            per_call.setdefault(i, []).append(dt)
            labels[i] = label
    print(f"kernels for {TARGET.cpu} ({TARGET.isa}); threads {args.threads} ({numba.threading_layer()}), "
          f"{args.runs} runs: min / median ms")
    for name, times in stages.items():
        print(f"  {name:12s} {1e3 * min(times):7.2f} / {1e3 * np.median(times):7.2f}")
    if args.layers:
        total = sum(min(t) for t in per_call.values())
        print(f"kernel calls (sum of min {1e3 * total:.2f} ms):")
        for i in sorted(per_call, key=lambda i: -min(per_call[i])):
            print(f"  #{i:3d} {labels[i]:60s} {1e3 * min(per_call[i]):7.3f}")


def _timed(function, name: str, calls: list):
    def wrapper(x, *args, **kw):
        t = time.perf_counter()
        out = function(x, *args, **kw)
        calls.append((f"{name} {x.shape} -> {out.shape}", time.perf_counter() - t))
        return out
    return wrapper


if __name__ == "__main__":
    main()
