"""`ssd-np explain`: the page for a test image with stand-in weights (their detections mean nothing).

The page has every section, in graph order, each naming the reference functions and TF nodes it shows; it is
self-contained (no network reference: only data URIs and in-page links); the stand-in warning comes first; its
numbers are the reference's: anchor counts, the tensors it tabulates, and per-class NMS decisions that give
exactly TF's outputs (checked on stand-in seed 1 "sparse", which suppresses one box here, and seed 2 "dense",
which suppresses many). The CLI's bad inputs give one line and exit 2 with nothing written. Where Debian's
chromium is installed, the page is rendered headless and must not be blank.
"""
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from conftest import DATA, ROOT, needs_chromium, screenshot
from ssd_np.coco_labels import COCO_LABELS
from ssd_np.images import load_rgb
from ssd_np.reference import model, nms, postprocess, preprocess
from ssd_np.reference.anchors import FEATURE_MAP_SIZES, NUM_ANCHORS, ssd_anchors
from ssd_np.reference.mobilenet_v2 import FEATURE_MAP_NODES
from ssd_np.report.explain import anchor_layout, explain, locate_anchor, network_stride, render
from ssd_np.weights.hdf5 import write_h5
from ssd_np.weights.standin import standin_weights

IMAGE = DATA / "images" / "000000037777.jpg"
SOURCE = "stand-in, seed 1, profile sparse"
SECTIONS = ["input", "backbone", "anchors", "predictions", "nms", "detections"]


class PageParser(HTMLParser):
    """Section ids in order, and every table with an id as rows of cell texts (header row first)."""

    def __init__(self, text: str):
        super().__init__()
        self.sections, self.tables, self.ids = [], {}, []
        self._table, self._row, self._cell = None, None, None
        self.feed(text)

    def handle_starttag(self, name, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.append(attrs["id"])
        if name == "section":
            self.sections.append(attrs["id"])
        elif name == "table":
            self._table = self.tables.setdefault(attrs.get("id"), [])
        elif name == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif name in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, name):
        if name in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif name == "table":
            self._table = self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def weights():
    return standin_weights(1, "sparse")


@pytest.fixture(scope="module")
def explanation(weights):
    return explain(load_rgb(IMAGE), weights)


@pytest.fixture(scope="module")
def page(explanation):
    return render(explanation, IMAGE.name, "standin1.h5", SOURCE, False)


@pytest.fixture(scope="module")
def parsed(page):
    return PageParser(page)


def section_text(page: str, section: str) -> str:
    start = page.index(f'<section id="{section}">')
    return page[start:page.index("</section>", start)]


def test_every_section_in_graph_order_names_its_reference_and_nodes(page, parsed):
    assert parsed.sections == SECTIONS
    for section in SECTIONS:
        text = section_text(page, section)
        assert "Reference: " in text and "TF nodes: " in text, section
        assert "<code>ssd_np.reference." in text and ":" in text.split("<code>ssd_np.reference.")[1][:60], section
    for node in FEATURE_MAP_NODES:
        assert node in section_text(page, "backbone")
    assert "Preprocessor/sub" in section_text(page, "input")
    assert "Concatenate/concat" in section_text(page, "anchors")
    assert "Postprocessor/Decode/transpose_1" in section_text(page, "predictions")
    assert "NonMaxSuppressionV2" in section_text(page, "nms")
    assert "detection_boxes" in section_text(page, "detections")


def test_page_is_self_contained(page, parsed):
    assert "http" not in page
    assert "<link" not in page and "<script" not in page and "@import" not in page and "url(" not in page
    sources = page.split("src=")[1:]
    assert sources and all(s.startswith('"data:image/png;base64,') for s in sources)
    links = [part[:part.index('"', 1)] for part in page.split("href=")[1:]]  # in-page links, and images drawn in SVG
    assert links and all(link.startswith('"#') and link[2:] in parsed.ids or link.startswith('"data:image/png;base64,')
                         for link in links)
    assert len(parsed.ids) == len(set(parsed.ids))


def test_stand_in_weights_are_stated_first(explanation, page):
    first_section = page.index("<section")
    assert 0 < page.index("STAND-IN WEIGHTS: these detections are not real.") < first_section
    assert "stand-in weights: detections not real" in page[:page.index("</title>")]
    genuine = render(explanation, IMAGE.name, "w.h5", "release archive sha256 b938", True)
    assert "STAND-IN" not in genuine and 'class="warning"' not in genuine
    other = render(explanation, IMAGE.name, "w.h5", "checkpoint model.ckpt, data sha256 0123", False)
    assert 0 < other.index("These are not the genuine release weights.") < other.index("<section")


def test_anchor_numbers(parsed):
    counts = [size * size * per_cell for size, per_cell, _ in anchor_layout()]
    assert counts == [19 * 19 * 3, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 6, 2 * 2 * 6, 1 * 1 * 6]
    assert sum(counts) == NUM_ANCHORS == len(ssd_anchors()) == 1917
    rows = parsed.tables["anchor-counts"][1:]
    assert [int(r[4]) for r in rows] == counts + [1917]
    assert [r[3] for r in rows[:-1]] == [f"{s}×{s}×{a}" for s, a, _ in anchor_layout()]
    assert [(int(r[5]), int(r[6])) for r in rows[:-1]] == [(f, f + n - 1) for (_, _, f), n in
                                                          zip(anchor_layout(), counts)]
    # locate_anchor inverts the index formula for every anchor; the anchors' centres are their cells'
    anchors = ssd_anchors()
    for index in range(NUM_ANCHORS):
        layer, row, col, kind = locate_anchor(index)
        size, per_cell, first = anchor_layout()[layer]
        assert index == first + (row * size + col) * per_cell + kind
        centre = (anchors[index, :2] + anchors[index, 2:]) / 2
        np.testing.assert_allclose(centre, [(row + 0.5) / size, (col + 0.5) / size], atol=1e-6)
    assert [network_stride(n) for n in FEATURE_MAP_NODES] == [16, 32, 64, 128, 256, 512]
    assert [row[2] for row in parsed.tables["feature-maps"][1:]] == [
        "19×19×576", "10×10×1280", "5×5×512", "3×3×256", "2×2×256", "1×1×128"]
    assert [int(row[3]) for row in parsed.tables["feature-maps"][1:]] == [16, 32, 64, 128, 256, 512]
    assert FEATURE_MAP_SIZES == (19, 10, 5, 3, 2, 1)


def test_tensors_are_the_references(weights, explanation, parsed):
    rgb = load_rgb(IMAGE)
    trace = {}
    outputs = model.tf_outputs(rgb, weights, trace)
    for name in ("Preprocessor/sub", "concat", "concat_1", "Postprocessor/Decode/transpose_1", *outputs):
        np.testing.assert_array_equal(explanation.trace[name], trace[name], err_msg=name)
    bgr300 = np.ascontiguousarray(preprocess.resize_bilinear_cv2(rgb)[:, :, ::-1])
    np.testing.assert_array_equal(explanation.detection_out, model.detection_out(bgr300, weights))

    value_rows = {row[0]: row[1:] for row in parsed.tables["value-range"][1:]}
    assert value_rows["Preprocessor/sub"][:3] == ["1×300×300×3", f"{trace['Preprocessor/sub'].min():.4f}",
                                                  f"{trace['Preprocessor/sub'].max():.4f}"]
    best = trace["Postprocessor/Slice"][0].max(axis=1)
    top = parsed.tables["top-anchors"][1:]
    assert [int(row[1]) for row in top] == list(np.argsort(-best, kind="stable")[:len(top)])
    assert [row[7] for row in top] == [f"{s:.4f}" for s in np.sort(best)[::-1][:len(top)]]

    count = int(outputs["num_detections"][0])
    rows = parsed.tables["tf-outputs"][1:]
    assert len(rows) == count > 0
    assert [int(r[1]) for r in rows] == outputs["detection_classes"][0, :count].astype(int).tolist()
    assert [r[2] for r in rows] == [COCO_LABELS[int(c)] for c in outputs["detection_classes"][0, :count]]
    assert [r[3] for r in rows] == [f"{s:.4f}" for s in outputs["detection_scores"][0, :count]]
    assert [r[4] for r in rows] == [", ".join(f"{v:.4f}" for v in b) for b in outputs["detection_boxes"][0, :count]]
    out = explanation.detection_out[0, 0]
    out_rows = parsed.tables["detection-out"][1:]
    assert out_rows[-1][1] == "-1" and len(out_rows) == int(np.argmax(out[:, 0] == -1)) + 1
    assert [(r[2], r[4]) for r in out_rows[:-1]] == [(f"{c:g}", f"{s:.4f}") for c, s in out[:len(out_rows) - 1, 1:3]]


def check_nms_decisions(explanation):
    """The per-class decisions equal the reference post-processing's and are consistent; returns the number of
    suppressed candidates."""
    trace = explanation.trace
    boxes, scores = trace["Postprocessor/Decode/transpose_1"], trace["Postprocessor/Slice"][0]
    assert [c.class_id - 1 for c in explanation.classes] == sorted(set(np.nonzero(scores > 0.3)[1]))
    suppressed = 0
    for c in explanation.classes:
        k = c.class_id - 1
        above = np.flatnonzero(scores[:, k] > postprocess.SCORE_THRESHOLD)
        clipped = np.clip(boxes[above], 0, 1)
        has_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1]) > 0
        assert c.above == len(above)
        np.testing.assert_array_equal(c.anchors, above[has_area])
        np.testing.assert_array_equal(c.boxes, clipped[has_area])
        np.testing.assert_array_equal(c.scores, scores[c.anchors, k])
        n = len(c.anchors)
        assert len(c.kept) == len(set(c.kept.tolist())) and not set(c.kept.tolist()) & set(c.suppressed_by)
        for p, (q, iou) in c.suppressed_by.items():
            assert q in c.kept and (c.scores[q], -q) >= (c.scores[p], -p)  # selected before p
            assert iou == nms.iou_tf(c.boxes[q], c.boxes[[p]])[0] > postprocess.IOU_THRESHOLD
            assert f"suppressed by anchor {c.anchors[q]} (IoU {iou:.3f}" in c.decision(p)
        for i, p in enumerate(c.kept):
            assert (nms.iou_tf(c.boxes[p], c.boxes[c.kept[:i]]) <= postprocess.IOU_THRESHOLD).all()
        assert len(c.kept) + len(c.suppressed_by) == n  # nothing unreached: fewer than 100 kept
        suppressed += len(c.suppressed_by)

    # The kept boxes, sorted by score over all classes, are TF's outputs, row for row.
    kept_boxes = np.concatenate([c.boxes[c.kept] for c in explanation.classes])
    kept_scores = np.concatenate([c.scores[c.kept] for c in explanation.classes])
    kept_classes = np.concatenate([np.full(len(c.kept), c.class_id) for c in explanation.classes])
    order = np.argsort(-kept_scores, kind="stable")[:100]
    count = int(trace["num_detections"][0])
    assert count == len(order)
    np.testing.assert_array_equal(kept_boxes[order], trace["detection_boxes"][0, :count])
    np.testing.assert_array_equal(kept_scores[order], trace["detection_scores"][0, :count])
    np.testing.assert_array_equal(kept_classes[order], trace["detection_classes"][0, :count])
    return suppressed


def test_nms_decisions_are_the_postprocessings(explanation, parsed):
    assert check_nms_decisions(explanation) >= 1
    summary = parsed.tables["nms-summary"][1:]
    assert [[int(v) for v in (r[0], *r[2:])] for r in summary] == [
        [c.class_id, c.above, c.above - len(c.anchors), len(c.anchors), len(c.kept), len(c.suppressed_by),
         len(c.anchors) - len(c.kept) - len(c.suppressed_by)] for c in explanation.classes]
    drawn = [c for c in explanation.classes if f"nms-class-{c.class_id}" in parsed.tables]
    assert drawn and any(c.suppressed_by for c in drawn)
    for c in drawn:
        rows = parsed.tables[f"nms-class-{c.class_id}"][1:]
        order = np.argsort(-c.scores, kind="stable")[:len(rows)]
        assert [(int(r[0]), r[1], r[3]) for r in rows] == [(c.anchors[p], f"{c.scores[p]:.4f}", c.decision(p))
                                                           for p in order]


def test_nms_decisions_with_many_suppressions():
    explanation = explain(load_rgb(DATA / "images" / "000000085329.jpg"), standin_weights(2, "dense"))
    assert check_nms_decisions(explanation) >= 10


# --- the command --------------------------------------------------------------------------------------------

def cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "SSD_NP_WEIGHTS": "/nonexistent/weights.h5"}  # never a real default
    result = subprocess.run([sys.executable, "-m", "ssd_np.cli", "explain", *map(str, args)], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=300)
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory, weights):
    path = tmp_path_factory.mktemp("weights") / "standin1.h5"
    write_h5(weights, path, SOURCE)
    return path


@pytest.fixture(scope="module")
def cli_page(tmp_path_factory, weights_file):
    out = tmp_path_factory.mktemp("page") / "new" / "explain.html"
    result = cli(IMAGE, "--weights", weights_file, "--out", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out} (") and "detections" in result.stdout
    assert "stand-in weights" in result.stderr
    return out


def test_cli_writes_the_page(cli_page, page):
    timing = re.compile(r"\), in [0-9.]+ s, ")  # the only difference: the time the reference took
    assert timing.sub("", cli_page.read_text(encoding="utf-8")) == timing.sub("", page)
    assert os.listdir(cli_page.parent) == ["explain.html"]  # no temporary file left


@pytest.mark.parametrize("case", ["missing image", "bad weights", "missing weights", "out is a folder",
                                  "out under a file"])
def test_cli_bad_input_one_line_exit_2(case, tmp_path, weights_file):
    out = tmp_path / "e.html"
    image, weights = IMAGE, weights_file
    if case == "missing image":
        image = tmp_path / "nope.jpg"
    elif case == "bad weights":
        weights = tmp_path / "bad.h5"
        weights.write_bytes(b"not hdf5")
    elif case == "missing weights":
        weights = tmp_path / "none.h5"
    elif case == "out is a folder":
        out = tmp_path
    else:
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "e.html"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli(image, "--weights", weights, "--out", out)
    assert result.returncode == 2
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1 and result.stderr.startswith("ssd-np: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@needs_chromium
def test_chromium_renders_the_page(cli_page, tmp_path):
    shot = tmp_path / "page.png"
    screenshot(cli_page, shot, 3000)
    pixels = np.asarray(Image.open(shot).convert("RGB"), np.float64)  # (3000, 1200, 3)
    assert pixels.shape == (3000, 1200, 3)
    not_white = (pixels < 240).any(axis=2)
    assert pixels.std() > 20 and not_white.mean() > 0.05  # text, images and plots, not a blank page
    assert not_white[:300].mean() > 0.02 and not_white[2000:].mean() > 0.02  # drawn from top to bottom
