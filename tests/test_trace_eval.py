"""`ssd-np trace`, `ssd-np compare` and `ssd-np eval`, driven through the real CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import DATA
from golden import GOLDEN
from ssd_np.verify import coco_eval
from ssd_np.weights.standin import standin_weights
from ssd_np.weights.hdf5 import write_h5

LAYER_GOLDEN = GOLDEN / "seed1" / "000000037777.npz"


def cli(*args):
    return subprocess.run([sys.executable, "-m", "ssd_np.cli", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def seed1_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "seed1.h5"
    write_h5(standin_weights(1, "sparse"), path, "stand-in, seed 1, profile sparse")
    return path


def test_trace_compares_with_the_tf_golden(tmp_path, seed1_h5):
    trace = tmp_path / "trace.npz"
    result = cli("trace", DATA / "images" / "000000037777.jpg", "--out", trace, "--weights", seed1_h5)
    assert result.returncode == 0, result.stderr
    with np.load(trace) as z:
        keys = z.files
        meta = json.loads(str(z["__meta__/json"]))
    assert keys.index("Preprocessor/sub") < keys.index("FeatureExtractor/MobilenetV2/Conv/Relu6") < keys.index("concat_1")
    assert meta["producer"] == "ssd_np reference" and meta["weights_genuine"] is False
    report = tmp_path / "report.json"
    result = cli("compare", LAYER_GOLDEN, trace, "--json", report)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(report.read_text())["passed"] is True


def test_compare_catches_a_scaled_layer(tmp_path, seed1_h5):
    trace = tmp_path / "trace.npz"
    assert cli("trace", DATA / "images" / "000000037777.jpg", "--out", trace, "--weights", seed1_h5).returncode == 0
    with np.load(trace) as z:
        tensors = {k: z[k] for k in z.files}
    name = "FeatureExtractor/MobilenetV2/expanded_conv_5/output"
    tensors[name] = tensors[name] * np.float32(1.5)
    np.savez(tmp_path / "bad.npz", **tensors)
    result = cli("compare", LAYER_GOLDEN, tmp_path / "bad.npz")
    assert result.returncode == 1
    assert ">> " in result.stdout and name in result.stdout.split("divergence starts at")[1].splitlines()[0]


def test_trace_bad_image(tmp_path, seed1_h5):
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    result = cli("trace", junk, "--out", tmp_path / "t.npz", "--weights", seed1_h5)
    assert result.returncode == 2 and "junk.jpg" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "t.npz").exists()


def test_eval_detects_and_scores(tmp_path, seed1_h5):
    """Detect on the golden COCO images and score them; the results file re-scores to the same numbers."""
    annotations = DATA / "instances_val2017_dev.json"
    results, metrics = tmp_path / "results.json", tmp_path / "metrics.json"
    result = cli("eval", "--annotations", annotations, "--images", DATA / "images", "--results", results,
                 "--json", metrics, "--weights", seed1_h5, "--max-images", 3)
    assert result.returncode == 0, result.stderr
    assert "NOT the model's accuracy" in result.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]" in result.stdout
    stats = json.loads(metrics.read_text())
    assert list(stats) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]
    rows = json.loads(results.read_text())
    image_ids = sorted({r["image_id"] for r in rows})
    assert len(image_ids) <= 3 and rows
    gt = json.loads(annotations.read_text())
    present = sorted(img["id"] for img in gt["images"] if (DATA / "images" / img["file_name"]).is_file())
    known = {c["id"] for c in gt["categories"]}  # stand-in weights also detect the unused COCO ids
    expected = coco_eval.evaluate(gt, [r for r in rows if r["category_id"] in known], image_ids=present[:3])
    assert stats == pytest.approx(expected.as_dict(), abs=1e-12)
    rescored = cli("eval", "--annotations", annotations, "--results", results)
    assert rescored.returncode == 0, rescored.stderr


def test_eval_bad_input(tmp_path):
    result = cli("eval", "--annotations", tmp_path / "absent.json", "--results", tmp_path / "r.json")
    assert result.returncode == 2 and "absent.json" in result.stderr and "Traceback" not in result.stderr
