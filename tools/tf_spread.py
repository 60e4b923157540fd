"""Measure TensorFlow against itself: the goldens' settings vs TF's defaults (reference venv).

    .venv-ref/bin/python tools/tf_spread.py [--golden tests/data/golden]

The goldens are made with oneDNN off, one thread and Grappler off. Here the same graph and checkpoint run
with TF's default settings (oneDNN on, default threads, Grappler on), which are just as legitimate; the
differences are float32 summation order and fused kernels. For the layer golden it writes, per traced tensor,
the largest absolute difference and that difference relative to the tensor's scale (its largest magnitude)
into `tests/data/golden/tf_spread.json`: the layer tests derive their tolerances from these numbers.
It also prints how often the two TF runs agree on final detections within 1e-5, 1e-4 and 1e-3 in score.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tf_reference import ROOT, ReferenceGraph  # noqa: E402

from ssd_np.weights.checkpoint import write_checkpoint  # noqa: E402
from ssd_np.weights.standin import standin_weights  # noqa: E402


def load(path: Path) -> tuple[dict, dict]:
    with np.load(path) as z:
        meta = json.loads(str(z["__meta__/json"]))
        return {k: z[k] for k in z.files if not k.startswith("__")}, meta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--golden", type=Path, default=ROOT / "tests" / "data" / "golden")
    parser.add_argument("--work", type=Path, default=Path("/tmp/ssd_np_spread"))
    args = parser.parse_args()
    spread, agree = {}, {1e-5: [0, 0], 1e-4: [0, 0], 1e-3: [0, 0]}
    for seed_dir in sorted(args.golden.glob("seed*")):
        files = sorted(seed_dir.glob("*.npz"))
        _, meta = load(files[0])
        prefix = args.work / seed_dir.name / "model.ckpt"
        prefix.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(prefix, {**standin_weights(meta["seed"], meta["profile"]), "global_step": np.int64(0)})
        ref = ReferenceGraph(checkpoint=str(prefix), reproducible=False)
        for path in files:
            golden, meta = load(path)
            rgb = np.asarray(Image.open(ROOT / "tests" / "data" / "images" / meta["image"]).convert("RGB"))
            names = [k for k in golden if "/" in k or k.startswith("concat")] if meta["layers"] else []
            outputs = ["detection_scores", "detection_classes", "num_detections"]
            values = ref.run(rgb, outputs + names)
            for name in names:
                diff = float(np.abs(values[name].astype(np.float64) - golden[name]).max())
                scale = float(np.abs(golden[name]).max())
                spread[name] = {"max_abs": diff, "scale": scale, "rel": diff / scale if scale else 0.0}
            n = int(golden["num_detections"][0])
            same_rows = (int(values["num_detections"][0]) == n
                         and np.array_equal(values["detection_classes"][0, :n], golden["detection_classes"][0, :n]))
            for tol, counts in agree.items():
                ok = np.abs(values["detection_scores"][0, :n] - golden["detection_scores"][0, :n]) <= tol
                counts[0] += int(ok.sum()) if same_rows else 0
                counts[1] += n
    out = args.golden / "tf_spread.json"
    out.write_text(json.dumps({
        "what": "TF default settings (oneDNN on, default threads, Grappler on) vs the goldens' reproducible "
                "settings, same graph and checkpoint; rel = max_abs / max|golden|",
        "made_by": "tools/tf_spread.py", "layers": spread}, indent=1, sort_keys=True) + "\n")
    width = max(map(len, spread), default=10)
    for name, s in spread.items():
        print(f"{name:{width}s}  max_abs {s['max_abs']:.3e}  rel {s['rel']:.3e}")
    for tol, (ok, n) in agree.items():
        print(f"detections whose score agrees within {tol:g}: {ok}/{n} ({100 * ok / max(n, 1):.1f} %)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
