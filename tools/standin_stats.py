"""Measure how healthy the stand-in weights are, in the genuine TF graph (reference venv).

    .venv-ref/bin/python tools/standin_stats.py [--seeds 1:sparse 2:dense] [--images 24] [--layers]

For each stand-in seed: per-layer activation statistics (mean, std, fraction exactly 0, fraction exactly 6
after ReLU6) averaged over the images, and per image the number of final detections, the number of distinct
classes, the number of (anchor, class) candidates above the score threshold, and the number of
per-class NMS survivors before the 100-detection cap (computed from TF's own
pre-NMS scores and decoded boxes with a plain greedy NMS, enough to see whether the cap matters).
"""
from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from tf_reference import ReferenceGraph

from ssd_np.weights.standin import standin_weights

from paths import COCO as _COCO  # noqa: E402

COCO = _COCO / "val2017_dev"


def activation_nodes(ref: ReferenceGraph) -> list[str]:
    """The graph's ReLU6 outputs and block outputs, in graph order."""
    return [op.name for op in ref.graph.get_operations() if op.type == "Relu6" or op.name.endswith("/output")]


def survivors(scores: np.ndarray, boxes: np.ndarray, threshold=np.float32(0.3), iou=np.float32(0.6)) -> int:
    """Count per-class greedy-NMS survivors (scores (N, 90), boxes (N, 4) clipped to [0, 1])."""
    boxes = np.clip(boxes, 0, 1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    total = 0
    for c in range(scores.shape[1]):
        idx = np.flatnonzero((scores[:, c] > threshold) & (area > 0))
        idx = idx[np.argsort(-scores[idx, c], kind="stable")]
        while idx.size:
            i, idx = idx[0], idx[1:]
            total += 1
            yx0 = np.maximum(boxes[i, :2], boxes[idx, :2])
            yx1 = np.minimum(boxes[i, 2:], boxes[idx, 2:])
            inter = np.prod(np.clip(yx1 - yx0, 0, None), axis=1)
            idx = idx[inter / (area[i] + area[idx] - inter) <= iou]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="+", default=["1:sparse", "2:dense"])
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--layers", action="store_true", help="print per-layer activation statistics")
    args = parser.parse_args()
    paths = sorted(COCO.glob("*.jpg"))[: args.images]
    for spec in args.seeds:
        seed, profile = spec.split(":")
        ref = ReferenceGraph(standin_weights(int(seed), profile))
        nodes = activation_nodes(ref)
        fetches = nodes + ["Postprocessor/Slice", "Postprocessor/Reshape_2", "num_detections",
                           "detection_classes", "concat_1"]
        stats = {n: [] for n in nodes}
        rows = []
        for path in paths:
            out = ref.run(np.asarray(Image.open(path).convert("RGB")), fetches)
            for n in nodes:
                a = out[n]
                stats[n].append((a.mean(), a.std(), (a == 0).mean(), (a == 6).mean()))
            n_det = int(out["num_detections"][0])
            classes = len(set(out["detection_classes"][0, :n_det].tolist()))
            boxes = out["Postprocessor/Reshape_2"][0]
            candidates = int((out["Postprocessor/Slice"][0] > np.float32(0.3)).sum())
            rows.append((path.stem, n_det, classes, candidates, survivors(out["Postprocessor/Slice"][0], boxes),
                         float(out["concat_1"][0, :, 1:].max())))
        print(f"== seed {seed}, profile {profile}: {len(paths)} images")
        if args.layers:
            print(f"{'layer':78s} {'mean':>7s} {'std':>7s} {'=0':>6s} {'=6':>6s}")
            for n in nodes:
                m = np.mean(stats[n], axis=0)
                print(f"{n:78s} {m[0]:7.3f} {m[1]:7.3f} {m[2]:6.3f} {m[3]:6.3f}")
        for r in rows:
            print(f"  {r[0]}  detections {r[1]:3d}  classes {r[2]:3d}  candidates {r[3]:5d}  "
                  f"nms survivors {r[4]:4d}  max logit {r[5]:6.2f}")
        det = np.array([r[1] for r in rows])
        surv = np.array([r[4] for r in rows])
        print(f"  detections: median {np.median(det):.0f}, min {det.min()}, max {det.max()}; "
              f"images with > 100 NMS survivors: {(surv > 100).sum()} of {len(rows)}")


if __name__ == "__main__":
    main()
