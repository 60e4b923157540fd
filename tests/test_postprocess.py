"""Both post-processing paths: hand-built scenes, then every fixture made by the real TF graph and the real
OpenVINO IR (tests/data/postprocess/*.npz, see tools/make_postprocess_cases.py): same rows, same order,
values within 1e-6 (in fact bit-exact), for the reference's NumPy kernels and for the engine's compiled ones
(``ssd_np.engine.postprocess.OPS``). Last, the compiled selection kernels (``multiclass_nms``,
``openvino_detections``) against their NumPy twins on the fixtures, the goldens and random scenes, bit for bit."""

from pathlib import Path

import numpy as np
import pytest

from golden import golden_files, golden_id, load_golden
from ssd_np.engine import elementwise
from ssd_np.engine import postprocess as engine_postprocess
from ssd_np.reference import anchors, box_coder, postprocess

F32 = np.float32
DATA = Path(__file__).parent / "data" / "postprocess"
CASES = sorted(p.stem for p in DATA.glob("*.npz") if p.stem not in ("references", "elementwise"))
ATOL = 1e-6
OPS = pytest.mark.parametrize("ops", [postprocess.NUMPY_OPS, engine_postprocess.OPS], ids=["reference", "engine"])


def _fmt(row):
    return np.array2string(row, precision=7, floatmode="fixed", suppress_small=True, max_line_width=200)


def side_by_side(ours, ref, columns):
    """Rows of ours and the reference next to each other, mismatching rows marked; the largest difference."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    diff = np.abs(ours - ref)
    lines = [f"largest difference {diff.max():.3g} at row {np.unravel_index(np.argmax(diff), diff.shape)[0]}",
             f"{'row':>4}  {'ours ' + columns:<66} | reference"]
    for i in range(len(ours)):
        mark = "  <--" if diff[i].max() > ATOL else ""
        lines.append(f"{i:>4}  {_fmt(ours[i]):<66} | {_fmt(ref[i])}{mark}")
        if not ours[i].any() and not ref[i].any():
            lines.append("      (remaining rows zero in both)")
            break
    return "\n".join(lines)


def tf_rows(boxes, scores, classes):
    """(100, 6): [ymin, xmin, ymax, xmax, score, class]."""
    return np.concatenate([boxes[0], scores[0][:, None], classes[0][:, None]], axis=1)


def scene():
    """Two classes on two adjacent layer-0 anchors (IoU ~0.31), with a score tie across classes."""
    box_encodings = np.zeros((1917, 4), F32)
    class_logits = np.full((1917, 91), -6.0, F32)
    a, b = 5 * 57 + 5 * 3, 5 * 57 + 6 * 3  # layer 0, row 5, columns 5 and 6, type 0
    class_logits[a, 3] = 2.0
    class_logits[b, 3] = 1.0
    class_logits[a, 7] = 1.0
    return box_encodings, class_logits, a, b


def test_tf_outputs_hand_built_scene():
    box_encodings, class_logits, a, b = scene()
    table = anchors.ssd_anchors()
    trace = {}
    out = postprocess.tf_outputs(box_encodings, class_logits, table, trace)
    assert out["detection_boxes"].shape == (1, 100, 4) and out["num_detections"].tolist() == [3.0]
    high, low = 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-1.0))
    # Sorted by score; the 0.73 tie keeps concatenation order: class 3 before class 7.
    np.testing.assert_allclose(out["detection_scores"][0, :3], [high, low, low], atol=1e-7)
    np.testing.assert_array_equal(out["detection_classes"][0, :3], [3, 3, 7])
    np.testing.assert_allclose(out["detection_boxes"][0, :3], table[[a, b, a]], atol=1e-7)
    # Padding: box 0, score 0, class 1.0 (the +1 comes after the zero padding).
    assert not out["detection_boxes"][0, 3:].any() and not out["detection_scores"][0, 3:].any()
    np.testing.assert_array_equal(out["detection_classes"][0, 3:], 1.0)
    for name, shape in [("Concatenate/concat", (1917, 4)), ("Postprocessor/Decode/transpose_1", (1917, 4)),
                        ("Postprocessor/Reshape_2", (1, 1917, 4)), ("Postprocessor/convert_scores", (1, 1917, 91)),
                        ("Postprocessor/Slice", (1, 1917, 90)), ("Postprocessor/Decode/Exp", (1917,)),
                        ("detection_boxes", (1, 100, 4)), ("num_detections", (1,))]:
        assert trace[name].shape == shape and trace[name].dtype == np.float32, name


def test_tf_outputs_boxes_are_clipped_and_zero_area_boxes_dropped():
    box_encodings, class_logits, a, b = scene()
    box_encodings[b, 0] = -100.0  # moved far above the image: clipped to zero height, dropped
    box_encodings[a, 1] = -30.0  # partly left of the image: clipped to x = 0
    out = postprocess.tf_outputs(box_encodings, class_logits, anchors.ssd_anchors(), {})
    assert out["num_detections"][0] == 2
    assert out["detection_boxes"][0, 0, 1] == 0.0


def test_detection_out_hand_built_scene():
    box_encodings, class_logits, a, b = scene()
    trace = {}
    out = postprocess.detection_out(box_encodings, class_logits, trace)
    assert out.shape == (1, 1, 100, 7) and out.dtype == np.float32
    rows = out[0, 0]
    priors = anchors.openvino_priors()
    high, low = 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-1.0))
    # Ordered by label, then confidence; [image_id, label, conf, xmin, ymin, xmax, ymax].
    np.testing.assert_array_equal(rows[:3, :2], [[0, 3], [0, 3], [0, 7]])
    np.testing.assert_allclose(rows[:3, 2], [high, low, low], atol=1e-7)
    np.testing.assert_allclose(rows[:3, 3:], np.clip(priors[[a, b, a]], 0, 1), atol=1e-7)
    assert rows[3, 0] == -1 and not rows[3, 1:].any() and not rows[4:].any()
    assert trace["do_ExpandDims_conf/sigmoid"].shape == (1, 1, 1917, 91)


def test_top_100_before_nms_in_openvino_but_not_in_tf():
    """100 high-scoring boxes on one spot and 101 lower, separate ones, all in class 1: OpenVINO keeps the best
    100 before NMS (one survives), TF runs NMS on all 201 (1 + 101, capped at 100)."""
    table = anchors.ssd_anchors()
    box_encodings = np.zeros((1917, 4), F32)
    class_logits = np.full((1917, 91), -6.0, F32)
    cells = [(r, c) for r in range(19) for c in range(19) if max(abs(r - 9), abs(c - 9)) > 2]
    stacked = [3 * (19 * r + c) for r, c in cells[:100]]  # layer-0 type-0 anchors, moved onto (0.5, 0.5)
    separate = [3 * (19 * r + c) for r, c in cells[100:201]]
    centers = (table[stacked, :2] + table[stacked, 2:]) / 2
    box_encodings[stacked, :2] = (0.5 - centers) * 100  # ty / 10 * 0.1 = shift
    class_logits[stacked, 1] = np.linspace(2.0, 3.0, 100)
    class_logits[separate, 1] = np.linspace(0.0, 1.0, 101)
    rows = postprocess.detection_out(box_encodings, class_logits, {})[0, 0]
    assert np.sum((rows[:, 0] == 0) & (rows[:, 1] == 1)) == 1
    out = postprocess.tf_outputs(box_encodings, class_logits, table, {})
    assert out["num_detections"][0] == 100 and np.all(out["detection_classes"][0] == 1)


def test_inputs_are_checked():
    with pytest.raises(ValueError, match="squeeze"):
        postprocess.tf_outputs(np.zeros((1, 1917, 1, 4), F32), np.zeros((1, 1917, 91), F32), anchors.ssd_anchors(), {})
    with pytest.raises(ValueError, match="squeeze"):
        postprocess.detection_out(np.zeros((1917, 4), F32), np.zeros((1917, 90), F32), {})


# --- against the real runtimes ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@OPS
def test_tf_outputs_match_tensorflow(case, ops):
    data = np.load(DATA / f"{case}.npz")
    out = postprocess.tf_outputs(data["box_encodings"], data["class_logits"], anchors.ssd_anchors(), {}, ops)
    assert out["num_detections"][0] == data["tf_num_detections"][0], \
        f"num_detections {out['num_detections'][0]} != {data['tf_num_detections'][0]}"
    ours = tf_rows(out["detection_boxes"], out["detection_scores"], out["detection_classes"])
    ref = tf_rows(data["tf_detection_boxes"], data["tf_detection_scores"], data["tf_detection_classes"])
    message = side_by_side(ours, ref, "[ymin xmin ymax xmax score class]")
    np.testing.assert_array_equal(ours[:, 5], ref[:, 5], err_msg=message)
    assert np.abs(ours - ref).max() <= ATOL, message
    print(f"{case}: {int(out['num_detections'][0])} detections, bit-exact: {np.array_equal(ours, ref)}")


@pytest.mark.parametrize("case", CASES)
@OPS
def test_detection_out_matches_openvino(case, ops):
    data = np.load(DATA / f"{case}.npz")
    ours = postprocess.detection_out(data["box_encodings"], data["class_logits"], {}, ops=ops)
    ref = data["ov_detection_out"]
    assert ours.shape == ref.shape == (1, 1, 100, 7)
    message = side_by_side(ours[0, 0], ref[0, 0], "[image label conf xmin ymin xmax ymax]")
    np.testing.assert_array_equal(ours[0, 0, :, :2], ref[0, 0, :, :2], err_msg=message)
    assert np.abs(ours - ref).max() <= ATOL, message
    count = int(np.argmax(ref[0, 0, :, 0] == -1)) if (ref[0, 0, :, 0] == -1).any() else 100
    print(f"{case}: {count} rows, bit-exact: {np.array_equal(ours, ref)}")


@pytest.mark.parametrize("case", CASES)
def test_reference_orderings(case):
    """What the fixtures show about the runtimes: TF sorts by score, OpenVINO by label then confidence."""
    data = np.load(DATA / f"{case}.npz")
    count = int(data["tf_num_detections"][0])
    assert np.all(np.diff(data["tf_detection_scores"][0, :count]) <= 0)
    rows = data["ov_detection_out"][0, 0]
    rows = rows[rows[:, 0] == 0][: int(np.argmax(rows[:, 0] == -1)) if (rows[:, 0] == -1).any() else 100]
    assert np.all(np.diff(rows[:, 1]) >= 0)
    for label in np.unique(rows[:, 1]):
        assert np.all(np.diff(rows[rows[:, 1] == label, 2]) <= 0)


# --- compiled twins ----------------------------------------------------------------------------------------------

def pre_nms_inputs():
    """(id, TF-order box encodings (1917, 4), logits (1917, 91)) of every fixture and golden (TF's and OpenVINO's)."""
    inputs = []
    for case in CASES:
        data = np.load(DATA / f"{case}.npz")
        inputs.append((case, data["box_encodings"], data["class_logits"]))
    for path in golden_files():
        golden, _ = load_golden(path)
        name = golden_id(path)
        inputs.append((f"{name}/tf", golden["concat"].reshape(1917, 4), golden["concat_1"].reshape(1917, 91)))
        inputs.append((f"{name}/openvino", golden["openvino/box_encodings"], golden["openvino/class_logits"]))
    return inputs


def random_scene(seed):
    """Box encodings pushing boxes across and out of the window, logits on a few levels (equal scores within and
    across classes), hundreds of candidates in some classes: every branch of both selections."""
    rng = np.random.default_rng(seed)
    box_encodings = rng.normal(0, 4, (1917, 4)).astype(F32)
    box_encodings[rng.random(1917) < 0.05, 2] = -200.0  # zero height
    class_logits = np.full((1917, 91), -6.0, F32)
    busy = rng.choice(np.arange(1, 91), 12, replace=False)
    for c in busy:
        rows = rng.choice(1917, int(rng.integers(50, 400)), replace=False)
        class_logits[rows, c] = rng.integers(-3, 6, len(rows)).astype(F32) / F32(2)
    class_logits[rng.random((1917, 91)) < 0.002] = 1.0
    return box_encodings, class_logits


def assert_identical(name, ours, twin):
    assert len(ours) == len(twin)
    worst = 0.0
    for a, b in zip(ours, twin):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{name}: {a.dtype} {a.shape} != {b.dtype} {b.shape}"
        assert np.array_equal(a.view(np.uint8), b.view(np.uint8)), f"{name}: values differ"  # bit for bit
        if a.size:
            worst = max(worst, float(np.abs(a.astype(np.float64) - b).max()))
    return worst


def test_fast_selections_equal_twins_on_fixtures_and_goldens():
    inputs = pre_nms_inputs()
    worst, detections, rows = 0.0, 0, 0
    for name, box_encodings, class_logits in inputs:
        boxes = box_coder.decode(box_encodings, anchors.ssd_anchors(), {})
        scores = box_coder.scores(class_logits, {})[:, 1:]
        twin = postprocess.multiclass_nms(boxes, scores)
        worst = max(worst, assert_identical(f"{name} TF", engine_postprocess.multiclass_nms(boxes, scores), twin))
        detections += len(twin[0])
        confidences = elementwise.onednn_logistic(class_logits)
        ov_boxes, sizes = postprocess.decode_openvino(box_encodings, anchors.openvino_priors())
        twin = postprocess.openvino_detections(confidences, ov_boxes, sizes)
        ours = engine_postprocess.openvino_detections(confidences, ov_boxes, sizes)
        worst = max(worst, assert_identical(f"{name} OpenVINO", ours, twin))
        rows += len(twin[0])
    print(f"{len(inputs)} inputs, {detections} TF NMS survivors, {rows} OpenVINO rows: max difference {worst}")


@pytest.mark.parametrize("seed", range(6))
def test_fast_selections_equal_twins_on_random_scenes(seed):
    box_encodings, class_logits = random_scene(seed)
    boxes = box_coder.decode(box_encodings, anchors.ssd_anchors(), {})
    scores = box_coder.scores(class_logits, {})[:, 1:]
    twin = postprocess.multiclass_nms(boxes, scores)
    worst = assert_identical("TF", engine_postprocess.multiclass_nms(boxes, scores), twin)
    confidences = elementwise.onednn_logistic(class_logits)
    ov_boxes, sizes = postprocess.decode_openvino(box_encodings, anchors.openvino_priors())
    ov_twin = postprocess.openvino_detections(confidences, ov_boxes, sizes)
    worst = max(worst, assert_identical("OpenVINO", engine_postprocess.openvino_detections(confidences, ov_boxes, sizes),
                                        ov_twin))
    assert len(ov_twin[0]) == postprocess.OPENVINO_KEEP_TOP_K  # keep_top_k cut
    print(f"seed {seed}: {len(twin[0])} TF survivors, {len(ov_twin[0])} OpenVINO rows, max difference {worst}")
