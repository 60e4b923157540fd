"""`ssd-np detect` end to end: the real CLI in a subprocess, with stand-in weights (their detections mean nothing).

Each format's schema and exactness (the written floats are the Detector's float32 values, bit for bit), --jobs 2
identical to --jobs 1, a batch with every kind of bad image, every usage error (exit 2, one line, nothing
written), the summary line, and the progress bar in a pseudo-terminal.
"""
import json
import os
import pty
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import DATA, ROOT
from ssd_np.cli.batch import progress_line
from ssd_np.cli.outputs import coco_image_id
from ssd_np.detector import Detector
from ssd_np.images import load_rgb
from ssd_np.weights.standin import standin_weights
from ssd_np.weights.hdf5 import write_h5
from test_images import png_bytes

IMAGES = DATA / "images"
COCO_A, COCO_B = IMAGES / "000000037777.jpg", IMAGES / "000000000802.jpg"
GRAY = IMAGES / "gray_320x240.png"
SUMMARY = re.compile(r"^ssd-np: (\d+) images?, (\d+) failed, (\d+) detections, [0-9.]+ images/s, [0-9.]+ s elapsed "
                     r"\([0-9.]+ s loading the weights( and compiling the kernels)?\)$")


@pytest.fixture(scope="session")
def weights():
    return standin_weights(1)


@pytest.fixture(scope="session")
def weights_file(tmp_path_factory, weights):
    path = tmp_path_factory.mktemp("weights") / "standin1.h5"
    write_h5(weights, path, "stand-in, seed 1, profile sparse")
    return path


@pytest.fixture(scope="session")
def detector(weights):
    return Detector(weights)


def cli(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "SSD_NP_WEIGHTS": "/nonexistent/weights.h5"}  # never a real default
    result = subprocess.run([sys.executable, "-m", "ssd_np.cli", *map(str, args)], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=300, **kwargs)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return result.stderr.splitlines()


def check_floats32(values) -> None:
    """Every float written is exactly a float32 value."""
    flat = np.asarray(values, np.float64).reshape(-1)
    assert np.array_equal(flat.astype(np.float32).astype(np.float64), flat)


def files(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------- the formats


@pytest.fixture(scope="module")
def tf_run(tmp_path_factory, weights_file):
    out = tmp_path_factory.mktemp("tf")
    result = cli("detect", COCO_A, GRAY, "--weights", weights_file, "--json-dir", out / "json", "--draw", out / "draw")
    return result, out


def test_tf_format_schema_and_exact_values(tf_run, detector):
    result, out = tf_run
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert files(out / "json") == ["000000037777.json", "gray_320x240.json"]
    for image in (COCO_A, GRAY):
        record = json.loads((out / "json" / f"{image.stem}.json").read_text())
        assert list(record) == ["image", "detection_boxes", "detection_scores", "detection_classes",
                                "num_detections"]
        assert record["image"] == str(image)
        n = record["num_detections"]
        assert n > 0 and len(record["detection_boxes"]) == len(record["detection_scores"]) == n
        assert all(isinstance(c, int) and 1 <= c <= 90 for c in record["detection_classes"])
        check_floats32(record["detection_boxes"])
        check_floats32(record["detection_scores"])
        expected = detector.tf_outputs(load_rgb(image))
        assert n == int(expected["num_detections"][0])
        assert np.array_equal(np.float32(record["detection_boxes"]), expected["detection_boxes"][0, :n])
        assert np.array_equal(np.float32(record["detection_scores"]), expected["detection_scores"][0, :n])
        assert record["detection_classes"] == expected["detection_classes"][0, :n].astype(int).tolist()


def test_draw_writes_pngs_of_the_image_size(tf_run):
    _, out = tf_run
    assert files(out / "draw") == ["000000037777.png", "gray_320x240.png"]
    for image in (COCO_A, GRAY):
        with Image.open(out / "draw" / f"{image.stem}.png") as drawn, Image.open(image) as original:
            assert drawn.format == "PNG" and drawn.mode == "RGB" and drawn.size == original.size


def test_standin_warning_and_summary(tf_run):
    result, _ = tf_run
    lines = stderr_lines(result)
    assert len(lines) == 2
    assert lines[0].startswith("ssd-np: warning: ") and "stand-in weights" in lines[0]
    assert "NOT real" in lines[0]
    match = SUMMARY.match(lines[1])
    assert match and match.group(1, 2) == ("2", "0")
    total = sum(json.loads(p.read_text())["num_detections"] for p in (tf_run[1] / "json").iterdir())
    assert int(match.group(3)) == total
    assert "\r" not in result.stderr  # no progress bar when stderr is not a terminal


def test_jobs_2_is_identical_to_jobs_1(tf_run, tmp_path, weights_file):
    _, serial = tf_run
    result = cli("detect", COCO_A, GRAY, "--weights", weights_file, "--json-dir", tmp_path / "json",
                 "--draw", tmp_path / "draw", "--jobs", 2)
    assert result.returncode == 0, result.stderr
    for sub in ("json", "draw"):
        assert files(tmp_path / sub) == files(serial / sub)
        for name in files(serial / sub):
            assert (tmp_path / sub / name).read_bytes() == (serial / sub / name).read_bytes(), name


def test_openvino_format(tmp_path, weights_file, detector):
    from ssd_np.reference.preprocess import resize_bilinear_cv2

    result = cli("detect", COCO_A, GRAY, "--weights", weights_file, "--format", "openvino", "--json-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    for image in (COCO_A, GRAY):
        record = json.loads((tmp_path / f"{image.stem}.json").read_text())
        assert list(record) == ["image", "detection_out"]
        rows = np.array(record["detection_out"], np.float64).reshape(-1, 7)
        check_floats32(rows)
        assert len(rows) > 0 and (rows[:, 0] == 0).all() and (rows[:, 2] > 0.3).all()
        bgr300 = np.ascontiguousarray(resize_bilinear_cv2(load_rgb(image), 300, 300)[:, :, ::-1])
        expected = detector.detection_out(bgr300)[0, 0]
        assert expected[len(rows), 0] == -1 or len(rows) == len(expected)
        assert np.array_equal(rows.astype(np.float32), expected[: len(rows)])


@pytest.fixture(scope="module")
def coco_run(tmp_path_factory, weights_file):
    out = tmp_path_factory.mktemp("coco")
    result = cli("detect", COCO_A, COCO_B, "--weights", weights_file, "--format", "coco", "--json-dir", out,
                 "--min-score", 0.4)
    return result, out


def test_coco_format(coco_run, detector):
    result, out = coco_run
    assert result.returncode == 0, result.stderr
    assert files(out) == ["results.json"]
    rows = json.loads((out / "results.json").read_text())
    assert rows and all(list(row) == ["image_id", "category_id", "bbox", "score"] for row in rows)
    assert [row["image_id"] for row in rows] == sorted((row["image_id"] for row in rows), reverse=True)
    for image in (COCO_A, COCO_B):
        mine = [row for row in rows if row["image_id"] == int(image.stem)]
        rgb = load_rgb(image)
        expected = detector.tf_outputs(rgb)
        scores = expected["detection_scores"][0]
        n = int((scores[: int(expected["num_detections"][0])] >= 0.4).sum())
        assert len(mine) == n > 0
        height, width = rgb.shape[:2]
        boxes = expected["detection_boxes"][0, :n] * np.array([height, width, height, width], np.float32)
        bbox = np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]], 1)
        assert np.array_equal(np.float32([row["bbox"] for row in mine]), bbox)
        assert np.array_equal(np.float32([row["score"] for row in mine]), scores[:n])
        assert [row["category_id"] for row in mine] == expected["detection_classes"][0, :n].astype(int).tolist()
        check_floats32([row["bbox"] for row in mine])
    assert SUMMARY.match(stderr_lines(result)[-1]).group(3) == str(len(rows))


def test_coco_results_load_in_pycocotools(coco_run):
    coco_module = pytest.importorskip("pycocotools.coco")
    gt = coco_module.COCO(str(DATA / "instances_val2017_dev.json"))
    dt = gt.loadRes(str(coco_run[1] / "results.json"))
    assert len(dt.getAnnIds()) == len(json.loads((coco_run[1] / "results.json").read_text()))


def test_coco_image_ids():
    assert coco_image_id("a/000000000139.jpg") == 139
    assert coco_image_id("COCO_val2014_000000000042.jpg") == 42
    assert coco_image_id("000000139.png") == 139
    assert coco_image_id("street.jpg") is None and coco_image_id("139a.jpg") is None


# ---------------------------------------------------------------------------------------------- text and progress


def in_a_terminal(*args) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal: (exit status, stdout, stderr)."""
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "ssd_np.cli", *map(str, args)],
                               stdout=subprocess.PIPE, stderr=follower, text=True, cwd=ROOT)
    os.close(follower)
    stderr = b""
    while True:
        try:
            block = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not block:
            break
        stderr += block
    stdout = process.stdout.read()
    status = process.wait(timeout=300)
    os.close(leader)
    return status, stdout, stderr.decode()


def test_text_output_and_progress_bar_in_a_terminal(weights_file):
    status, stdout, stderr = in_a_terminal("detect", COCO_A, GRAY, "--weights", weights_file, "--min-score", "0.45")
    assert status == 0
    assert "\r" in stderr and re.search(r"1/2 \[#+-+\]  50%", stderr) and "\x1b[K" in stderr
    assert SUMMARY.match(stderr.split("\r\x1b[K")[-1].strip())  # the bar is erased before the summary
    blocks = stdout.split(f"{GRAY}:")
    assert blocks[0].startswith(f"{COCO_A}: ") and len(blocks) == 2  # input order
    scores = [float(line.split()[0]) for line in stdout.splitlines() if line.startswith("  ")]
    assert scores and min(scores) >= 0.45


def test_progress_line():
    assert progress_line(0, 10, 0, 0.0, 80) == " 0/10 [----------------------------------------]   0%"
    line = progress_line(5, 10, 1, 2.0, 80)
    assert line == " 5/10 [#################-----------------]  50%  1 failed  2.5 images/s  ETA 2s"
    assert len(line) == 79
    assert progress_line(10, 10, 0, 100.0, 80).endswith("100%  0.1 images/s")
    assert progress_line(1, 1000, 0, 1.0, 80).endswith("ETA 16m39s")
    assert len(progress_line(5, 10, 1, 2.0, 30)) <= 29


# ---------------------------------------------------------------------------------------------- bad images in a batch


def make_bad_batch(folder) -> tuple[list, list]:
    """Images that decode (odd modes) and images that must fail, each failing for its own reason."""
    folder.mkdir()
    good = [folder / "000000037777.jpg", folder / "tiny.png", folder / "cmyk.jpg", folder / "gray16.png",
            folder / "palette.png", folder / "rgba.png", folder / "gray.png"]
    shutil.copy(COCO_A, good[0])
    shutil.copy(IMAGES / "tiny_37x23.png", good[1])
    Image.new("CMYK", (40, 30), (10, 200, 30, 5)).save(good[2])
    (folder / "gray16.png").write_bytes(png_bytes(3, 2, 16, 0, b"\x00" + bytes(6) + b"\x00" + b"\xff" * 6))
    Image.new("RGB", (50, 40), (30, 60, 90)).quantize(4).save(good[4])
    Image.new("RGBA", (50, 40), (30, 60, 90, 0)).save(good[5])
    Image.new("L", (50, 40), 77).save(good[6])
    bad = {"empty.png": b"", "zero.png": png_bytes(0, 5), "notes.jpg": b"shopping list\n",
           "cut.jpg": COCO_A.read_bytes()[:20000], "huge.png": png_bytes(100_000, 100_000),
           "big.png": png_bytes(10_000, 10_000)}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    Image.fromarray(np.zeros((4, 4), np.float32), "F").save(folder / "float.tif")
    return good, sorted(folder / name for name in [*bad, "float.tif"])


def test_bad_images_fail_alone(tmp_path, weights_file):
    good, bad = make_bad_batch(tmp_path / "in")
    result = cli("detect", tmp_path / "in", "--weights", weights_file, "--json-dir", tmp_path / "json",
                 "--draw", tmp_path / "draw")
    assert result.returncode == 1
    lines = stderr_lines(result)
    assert lines[0].startswith("ssd-np: warning: ")
    errors = lines[1:-1]
    assert len(errors) == len(bad)
    for path in bad:
        mine = [line for line in errors if line.startswith(f"ssd-np: error: {path}: ")]
        assert len(mine) == 1, (path, errors)
    reasons = "\n".join(errors)
    for reason in ("file is empty", "not an image file", "truncated or corrupt", "decompression bomb",
                   "floating-point image"):
        assert reason in reasons
    assert SUMMARY.match(lines[-1]).group(1, 2) == (str(len(good) + len(bad)), str(len(bad)))
    assert files(tmp_path / "json") == sorted(f"{p.stem}.json" for p in good)
    assert files(tmp_path / "draw") == sorted(f"{p.stem}.png" for p in good)


# ---------------------------------------------------------------------------------------------- usage errors


def usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = stderr_lines(result)
    assert len(lines) == 1 and lines[0].startswith("ssd-np: error: "), lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_missing_input_and_folder_without_images(tmp_path, weights_file):
    usage_error(cli("detect", tmp_path / "nope.jpg", "--weights", weights_file, "--json-dir", tmp_path / "out"),
                f"{tmp_path / 'nope.jpg'}: no such file or folder")
    (tmp_path / "empty" / ".hidden").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden" / "a.jpg").write_bytes(COCO_A.read_bytes())
    (tmp_path / "empty" / ".b.jpg").write_bytes(COCO_A.read_bytes())
    (tmp_path / "empty" / "notes.txt").write_text("x")
    usage_error(cli("detect", tmp_path / "empty", "--weights", weights_file, "--json-dir", tmp_path / "out"),
                f"no images found in {tmp_path / 'empty'}")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_folder(tmp_path, weights_file):
    (tmp_path / "file").write_text("x")
    usage_error(cli("detect", GRAY, "--weights", weights_file, "--json-dir", tmp_path / "file" / "sub"),
                f"--json-dir {tmp_path / 'file' / 'sub'}: cannot write there")
    usage_error(cli("detect", GRAY, "--weights", weights_file, "--draw", tmp_path / "file"),
                "is a file, not a folder")
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o555)
        usage_error(cli("detect", GRAY, "--weights", weights_file, "--json-dir", tmp_path / "ro"), "cannot write")


def test_missing_and_wrong_weights(tmp_path):
    usage_error(cli("detect", GRAY, "--weights", tmp_path / "none.h5", "--json-dir", tmp_path / "out"),
                "not found", "ssd-np weights fetch", "ssd-np weights export")
    usage_error(cli("detect", GRAY, "--json-dir", tmp_path / "out"), "/nonexistent/weights.h5 not found")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.attrs["format"] = "ssd_np-weights"
        f.attrs["model"] = "ssd_mobilenet_v1_coco_2018_01_28"
    usage_error(cli("detect", GRAY, "--weights", tmp_path / "other.h5", "--json-dir", tmp_path / "out"),
                "not an ssd_np weights file for ssd_mobilenet_v2_coco_2018_03_29")
    assert not (tmp_path / "out").exists()


def test_clashing_names_are_refused_up_front(tmp_path, weights_file):
    for folder, suffix in (("a", ".jpg"), ("b", ".png")):
        (tmp_path / folder).mkdir()
        shutil.copy(COCO_A, tmp_path / folder / f"same{suffix}")
    usage_error(cli("detect", tmp_path / "a", tmp_path / "b", "--weights", weights_file, "--draw", tmp_path / "out"),
                str(tmp_path / "a" / "same.jpg"), str(tmp_path / "b" / "same.png"), "same output file")
    usage_error(cli("detect", GRAY, "--format", "coco", "--weights", weights_file, "--json-dir", tmp_path / "out"),
                f"{GRAY}: not a COCO file name")
    shutil.copy(COCO_A, tmp_path / "b" / "37777.jpg")
    usage_error(cli("detect", COCO_A, tmp_path / "b" / "37777.jpg", "--format", "coco", "--weights", weights_file,
                    "--json-dir", tmp_path / "out"), "have the same COCO image_id 37777")
    assert not (tmp_path / "out").exists()


def test_bad_options():
    usage_error(cli("detect", GRAY, "--jobs", 0), "--jobs must be at least 1")
    usage_error(cli("detect", GRAY, "--min-score", 1.5), "--min-score must be between 0 and 1")


def test_help_documents_exit_statuses():
    result = cli("detect", "--help")
    assert result.returncode == 0
    for text in ("exit status:", "0  every image succeeded", "1  some images failed", "2  bad usage",
                 "--format coco", "results.json", "same stem"):
        assert text in result.stdout
