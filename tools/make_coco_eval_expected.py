"""Make tests/data/instances_val2017_dev.json and tests/data/coco_eval_expected.json with the real pycocotools.

Venv: .venv-ref (pycocotools 2.0.11, numpy 1.26); does not import ssd_np.
    .venv-ref/bin/python tools/make_coco_eval_expected.py [--source PATH]

1. Writes tests/data/instances_val2017_dev.json: the source annotations (default
   ../shared/coco/annotations/instances_val2017_dev.json: 177 images, 1537 annotations, 18 crowd) with the
   `segmentation` of every annotation removed and everything else (crowd annotations, their `area`) unchanged.
   bbox evaluation never reads `segmentation`; step 2 checks that.
2. For every synthetic result set of tests/coco_cases.py, runs COCOeval(iouType='bbox') on the source and on the
   stripped annotations and requires identical precision, recall and stats.
3. Writes tests/data/coco_eval_expected.json: per case the fingerprint of its results, the 12 stats, AP per
   category (mean of precision[:, :, k, 0, -1] > -1, else -1), sha256 of the precision and recall arrays
   (float64, C order) and the printed summary. An empty results list (which loadRes rejects) is evaluated with a
   results COCO object that has no annotations.
"""

import argparse
import contextlib
import hashlib
import io
import json
import os
import sys
from importlib.metadata import version

import numpy as np
from pycocotools.coco import COCO

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))
from coco_cases import fingerprint, make_cases, run_pycocotools  # noqa: E402

from paths import COCO as COCO_DIR  # noqa: E402

SOURCE = str(COCO_DIR / "annotations" / "instances_val2017_dev.json")
STRIPPED = os.path.join(REPO, "tests", "data", "instances_val2017_dev.json")
EXPECTED = os.path.join(REPO, "tests", "data", "coco_eval_expected.json")


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.float64).tobytes()).hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=SOURCE, help="original COCO instances json")
    args = parser.parse_args()

    with open(args.source) as f:
        dataset = json.load(f)
    for ann in dataset["annotations"]:
        ann.pop("segmentation", None)
    with open(STRIPPED, "w") as f:
        json.dump(dataset, f, separators=(",", ":"))

    with contextlib.redirect_stdout(io.StringIO()):
        gt_source, gt_stripped = COCO(args.source), COCO(STRIPPED)
    names = {c["id"]: c["name"] for c in dataset["categories"]}
    expected = {}
    for name, case in make_cases(dataset).items():
        E, summary = run_pycocotools(gt_stripped, case)
        E_source, summary_source = run_pycocotools(gt_source, case)
        for key in ("precision", "recall"):
            assert np.array_equal(E.eval[key], E_source.eval[key]), (name, key)
        assert np.array_equal(E.stats, E_source.stats) and summary == summary_source, name
        precision = E.eval["precision"]
        per_class = {}
        for k, cat_id in enumerate(E.params.catIds):
            p = precision[:, :, k, 0, -1]
            per_class[names[cat_id]] = float(np.mean(p[p > -1])) if np.any(p > -1) else -1.0
        expected[name] = {
            "fingerprint": fingerprint(case),
            "n_results": len(case["results"]),
            "stats": [float(s) for s in E.stats],
            "per_class_ap": per_class,
            "precision_sha256": sha256(precision),
            "recall_sha256": sha256(E.eval["recall"]),
            "summary": summary,
        }
        print(f"{name:24s} {len(case['results']):5d} results  AP {E.stats[0]:.4f}  AR100 {E.stats[8]:.4f}")

    with open(STRIPPED, "rb") as f:
        stripped_sha = hashlib.sha256(f.read()).hexdigest()
    with open(args.source, "rb") as f:
        source_sha = hashlib.sha256(f.read()).hexdigest()
    out = {
        "made_by": f"tools/make_coco_eval_expected.py, pycocotools {version('pycocotools')}, numpy {np.__version__}",
        "annotations": {"file": "tests/data/instances_val2017_dev.json", "sha256": stripped_sha,
                        "source": os.path.basename(args.source), "source_sha256": source_sha,
                        "made": "source with every annotation's 'segmentation' removed; pycocotools bbox results "
                                "identical on both for every case"},
        "cases": expected,
    }
    with open(EXPECTED, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {STRIPPED} ({os.path.getsize(STRIPPED)} bytes), {EXPECTED} ({os.path.getsize(EXPECTED)} bytes)")


if __name__ == "__main__":
    main()
