"""Per-stage and per-layer timings of ssd_np's forward pass on one image (ssd_np's runtime environment).

    python3 tools/profile_layers.py [--threads N] [--runs 30] [--image PATH] [--layers] [--fuse-min-bytes N]

Stages: preprocess (`preprocess.preprocess`), backbone (`mobilenet_v2.feature_maps`), heads
(`box_predictor.predict`), post-processing (`postprocess.tf_outputs`), with the layers prepared once
(`model.prepare`, as `Detector` does), stand-in weights (seed 1, "sparse"). Reports min and median over `--runs`
calls after 3 warm-up calls. `--layers` also times every kernel call (`kernels.conv_bn_act`,
`kernels.depthwise3x3_bn_act`, `kernels.inverted_residual`, `box_predictor.conv_bias`) by wrapping them, listed
by cost (min over the runs). `--fuse-min-bytes N` runs the blocks whose expansion output has at least N bytes
as one fused kernel (`mobilenet_v2.FUSE_MIN_EXPANSION_BYTES`). The machine may be shared: compare min with min,
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

from ssd_np import anchors, box_predictor, mobilenet_v2, model, postprocess, preprocess  # noqa: E402
from ssd_np.weights.standin import standin_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--image", default=str(ROOT / "tests" / "data" / "images" / "exact_300x300.png"))
    parser.add_argument("--layers", action="store_true")
    parser.add_argument("--fuse-min-bytes", type=int, default=mobilenet_v2.FUSE_MIN_EXPANSION_BYTES)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    mobilenet_v2.FUSE_MIN_EXPANSION_BYTES = args.fuse_min_bytes
    layers = model.prepare(standin_weights(1, "sparse"))
    rgb = np.ascontiguousarray(np.asarray(Image.open(args.image).convert("RGB")))
    calls: list[tuple[str, float]] = []
    if args.layers:
        for module, names in ((mobilenet_v2, ("conv_bn_act", "depthwise3x3_bn_act", "inverted_residual")),
                              (box_predictor, ("conv_bias",))):
            for name in names:
                setattr(module, name, _timed(getattr(module, name), name, calls))
    stages: dict[str, list[float]] = {"preprocess": [], "backbone": [], "heads": [], "postprocess": [], "total": []}
    per_call: dict[int, list[float]] = {}
    labels: dict[int, str] = {}
    for run in range(args.runs + 3):
        calls.clear()
        t0 = time.perf_counter()
        x = preprocess.preprocess(rgb)
        t1 = time.perf_counter()
        maps = mobilenet_v2.feature_maps(x, layers)
        t2 = time.perf_counter()
        boxes, logits = box_predictor.predict(maps, layers)
        t3 = time.perf_counter()
        postprocess.tf_outputs(boxes, logits, anchors.ssd_anchors())
        t4 = time.perf_counter()
        if run < 3:
            continue
        for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            stages[name].append(dt)
        for i, (label, dt) in enumerate(calls):
            per_call.setdefault(i, []).append(dt)
            labels[i] = label
    print(f"threads {args.threads} ({numba.threading_layer()}), {args.runs} runs: min / median ms")
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
