"""Post-processing fixtures from the REAL reference runtimes, on synthetic pre-NMS inputs.

Needs the reference venv: ``.venv-ref/bin/python tools/make_postprocess_cases.py [--ir XML] [--out DIR]``
(tensorflow-cpu 2.17.1, openvino 2024.6.0). Adds the repo root to ``sys.path`` to design the adversarial
inputs with ``ssd_np`` (the goldens themselves come only from TF and OpenVINO).

For every case (synthetic ``concat`` box encodings (1917, 4) and ``concat_1`` logits (1917, 91)):

* TF: the genuine ``model.ckpt.meta`` inference graph, fed a 300x300 zero image on ``image_tensor:0`` and the
  case on ``concat:0`` / ``concat_1:0`` (so no weights are read), one thread, Grappler and oneDNN off; fetches the
  four outputs, ``Postprocessor/Decode/transpose_1`` (decoded boxes) and ``Postprocessor/convert_scores``.
* OpenVINO: the IR of ``tools/freeze_and_convert.py`` (made here from a random checkpoint unless ``--ir`` is
  given), cut so that the case feeds the IR's own ``do_reshape_offsets`` (locations; the IR expects
  ``[tx, ty, tw, th]``, so the case is fed with its columns swapped) and ``do_ExpandDims_conf`` (logits, then the
  IR's ``Sigmoid``) while the IR's ``PriorBoxClustered`` subgraph stays; CPU, ``INFERENCE_PRECISION_HINT=f32``.
  Fetches ``DetectionOutput`` and the sigmoid confidences.

Also written: ``references.npz`` (TF anchors ``Concatenate/concat``, the IR's priors and variances, the IR's
PriorBoxClustered widths/heights) and ``elementwise.npz`` (TF ``Exp``/``Sigmoid``, OpenVINO ``Sigmoid`` and the
system ``expf`` on the same values, for the bit-exact elementwise emulations).

The adversarial cases are checked against the runtimes' own numbers before they are written (scores exactly
at the threshold, the expected NMS decisions at IoU exactly 0.6).
"""

import argparse
import ctypes
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from freeze_and_convert import DEFAULT_META, convert, freeze, session_config  # noqa: E402
from ssd_np.reference import anchors as ssd_anchors  # noqa: E402
from ssd_np.reference import nms, postprocess  # noqa: E402
from ssd_np.reference import tf_math as elementwise  # noqa: E402
from ssd_np.reference.box_coder import decode  # noqa: E402

F32 = np.float32
N = ssd_anchors.NUM_ANCHORS
NUM_LOGITS = 91
BACKGROUND_LOGIT = F32(-6.0)  # sigmoid ~0.0025, far below the threshold
THRESHOLD = F32(0.300000011921)
IOU = F32(0.600000023842)
DEFAULT_OUT = REPO / "tests" / "data" / "postprocess"
LAYER_OFFSETS = np.cumsum([0] + [s * s * (3 if i == 0 else 6) for i, s in enumerate(ssd_anchors.FEATURE_MAP_SIZES)])


def anchor_index(layer, row, col, kind):
    size = ssd_anchors.FEATURE_MAP_SIZES[layer]
    types = 3 if layer == 0 else 6
    return int(LAYER_OFFSETS[layer] + (row * size + col) * types + kind)


# --- checkpoint, TF and OpenVINO runners ------------------------------------------------------------------

def save_random_checkpoint(prefix, seed=0):
    """Save a checkpoint of the genuine graph's 345 variables with seeded random values."""
    import tensorflow as tf

    graph = tf.Graph()
    rng = np.random.default_rng(seed)
    with graph.as_default():
        saver = tf.compat.v1.train.import_meta_graph(str(DEFAULT_META), clear_devices=True)
        assigns, feeds = [], {}
        for op in graph.get_operations():
            if op.type != "VariableV2":
                continue
            ref = op.outputs[0]
            shape = ref.shape.as_list()
            if "moving_variance" in op.name:
                value = rng.uniform(0.5, 1.5, shape)
            elif op.name == "global_step":
                value = np.zeros(shape)
            else:
                value = rng.normal(0.0, 0.05, shape)
            placeholder = tf.compat.v1.placeholder(ref.dtype.base_dtype, shape)
            assigns.append(tf.raw_ops.Assign(ref=ref, value=placeholder))
            feeds[placeholder] = value.astype(ref.dtype.base_dtype.as_numpy_dtype)
        with tf.compat.v1.Session(graph=graph, config=session_config()) as sess:
            sess.run(assigns, feeds)
            saver.save(sess, str(prefix), write_meta_graph=False)
    return prefix


TF_FETCHES = {
    "tf_detection_boxes": "detection_boxes:0",
    "tf_detection_scores": "detection_scores:0",
    "tf_detection_classes": "detection_classes:0",
    "tf_num_detections": "num_detections:0",
    "tf_decoded_boxes": "Postprocessor/Decode/transpose_1:0",
    "tf_scores": "Postprocessor/convert_scores:0",
}


class TFReference:
    """The genuine inference graph in a TF1 session; runs the post-processing on fed ``concat``/``concat_1``."""

    def __init__(self):
        import tensorflow as tf

        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.train.import_meta_graph(str(DEFAULT_META), clear_devices=True)
        self.session = tf.compat.v1.Session(graph=self.graph, config=session_config())
        self.image = np.zeros((1, 300, 300, 3), np.uint8)

    def anchors(self):
        return self.session.run("Concatenate/concat:0", {"image_tensor:0": self.image})

    def run(self, box_encodings, class_logits):
        feeds = {"image_tensor:0": self.image, "concat:0": box_encodings.reshape(1, N, 1, 4),
                 "concat_1:0": class_logits.reshape(1, N, NUM_LOGITS)}
        values = self.session.run(list(TF_FETCHES.values()), feeds)
        return dict(zip(TF_FETCHES, values))

    def elementwise(self, x):
        import tensorflow as tf

        with self.graph.as_default():
            placeholder = tf.compat.v1.placeholder(tf.float32, [x.size])
            exp, sigmoid = tf.exp(placeholder), tf.sigmoid(placeholder)
        return self.session.run([exp, sigmoid], {placeholder: x})


class OpenVINOReference:
    """The IR's DetectionOutput fed directly with locations and logits (its Sigmoid and priors kept)."""

    def __init__(self, xml):
        import openvino as ov
        from openvino.runtime import opset8

        core = ov.Core()
        model = core.read_model(str(xml))
        by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
        detection = next(op for op in model.get_ordered_ops() if op.get_type_name() == "DetectionOutput")
        self.attributes = detection.get_attributes()
        self.prior_sizes = [(by_name[f"PriorBoxClustered_{i}/naked_not_unsqueezed"].get_attributes()["width"],
                             by_name[f"PriorBoxClustered_{i}/naked_not_unsqueezed"].get_attributes()["height"])
                            for i in range(6)]
        locations = opset8.parameter([1, N, 1, 4], np.float32, name="locations")
        logits = opset8.parameter([1, N, NUM_LOGITS], np.float32, name="logits")
        by_name["do_reshape_offsets"].input(0).replace_source_output(locations.output(0))
        by_name["do_ExpandDims_conf"].input(0).replace_source_output(logits.output(0))
        image = model.get_parameters()[0]
        outputs = [detection.output(0), by_name["do_ExpandDims_conf/sigmoid"].output(0),
                   by_name["ConcatPriorBoxesClustered"].output(0)]
        cut = ov.Model(outputs, [locations, logits, image], "detection_output_only")
        self.compiled = core.compile_model(cut, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.image = np.zeros((1, 300, 300, 3), np.float32)
        self.core = core

    def run(self, box_encodings, class_logits):
        locations = box_encodings[:, [1, 0, 3, 2]].reshape(1, N, 1, 4)
        result = self.compiled([locations, class_logits.reshape(1, N, NUM_LOGITS), self.image])
        detection, confidences, priors = (result[self.compiled.output(i)] for i in range(3))
        return {"ov_detection_out": detection, "ov_confidences": confidences}, priors

    def sigmoid(self, x):
        import openvino as ov
        from openvino.runtime import opset8

        parameter = opset8.parameter(list(x.shape), np.float32)
        model = ov.Model([opset8.sigmoid(parameter)], [parameter])
        compiled = self.core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return compiled(x)[compiled.output(0)]


def libm_expf(x):
    libm = ctypes.CDLL("libm.so.6")
    libm.expf.restype = ctypes.c_float
    libm.expf.argtypes = [ctypes.c_float]
    return np.array([libm.expf(float(v)) for v in x], F32)


# --- case design helpers ----------------------------------------------------------------------------------

def background(rng, encoding_std=0.3):
    box_encodings = (rng.standard_normal((N, 4)) * encoding_std).astype(F32)
    class_logits = np.full((N, NUM_LOGITS), BACKGROUND_LOGIT, F32)
    class_logits[-1] = rng.normal(-2.0, 2.0, NUM_LOGITS)  # the last anchor: scalar tail of Sigmoid and Exp
    return box_encodings, class_logits


def float_neighbours(center, count):
    """The ``2 * count + 1`` consecutive float32 values centred on ``center``, ascending."""
    bits = np.array([center], F32).view(np.int32).astype(np.int64)[0]
    ordered = -(bits & 0x7FFFFFFF) if bits < 0 else bits  # float order == integer order
    steps = ordered + np.arange(-count, count + 1, dtype=np.int64)
    raw = np.where(steps < 0, (-steps) | 0x80000000, steps).astype(np.uint32)
    return raw.view(F32)


def logits_hitting(sigmoid_fn, targets):
    """For each target score, a float32 logit whose ``sigmoid_fn`` value equals it exactly (None if none)."""
    candidates = float_neighbours(F32(-0.8472978603872037), 400)
    values = sigmoid_fn(candidates)
    found = []
    for target in targets:
        hits = candidates[values == target]
        found.append(hits[len(hits) // 2] if len(hits) else None)
    return found


def threshold_targets():
    """float32(0.3) and its two float32 neighbours."""
    return [np.nextafter(THRESHOLD, F32(0)), THRESHOLD, np.nextafter(THRESHOLD, F32(1))]


# Where the threshold case puts its logits: (anchor, column) per sigmoid path and target.
THRESHOLD_SLOTS = {
    "tf_packet": [(anchor_index(0, 2 + 3 * k, 3, 0), 1 + k) for k in range(3)],
    "openvino": [(anchor_index(0, 2 + 3 * k, 3, 0), 1 + k) for k in range(3, 6)],
    "tf_tail": [(N - 1, 84 + k) for k in range(3)],
}


def tf_boxes(box_encodings, anchor_ids):
    """Decoded boxes of single anchors (packet path of Exp: anchors before the tail)."""
    anchors = ssd_anchors.ssd_anchors()[anchor_ids]
    count = len(anchor_ids)
    padded = (-count) % 8
    enc = np.concatenate([box_encodings, np.zeros((padded, 4), F32)])
    anc = np.concatenate([anchors, np.tile(anchors[:1], (padded, 1))])
    return decode(enc, anc, {})[:count]


def tf_iou_fn(anchor_i, anchor_j, enc_i):
    """``f(enc (n, 4)) -> (n,)``: TF IoU of the clipped boxes of anchor_i (enc_i) and anchor_j (each enc)."""
    box_i = postprocess.clip_to_window(tf_boxes(enc_i[None], [anchor_i]))[0][0]

    def iou(encodings):
        boxes = postprocess.clip_to_window(tf_boxes(encodings, [anchor_j] * len(encodings)))[0]
        return np.array([nms.iou_tf(box_i, b[None])[0] for b in boxes], F32)
    return iou


def ov_iou_fn(anchor_i, anchor_j, enc_i):
    """``f(enc (n, 4)) -> (n,)``: OpenVINO JaccardOverlap of the decoded boxes of anchor_i and anchor_j."""
    priors = ssd_anchors.openvino_priors()
    box_i, size_i = postprocess.decode_openvino(enc_i[None], priors[[anchor_i]])

    def iou(encodings):
        boxes, sizes = postprocess.decode_openvino(encodings, priors[[anchor_j] * len(encodings)])
        return nms.iou_openvino(box_i[0], size_i[0], boxes, sizes)
    return iou


def find_encoding(iou, enc_j, column, bounds, target, span=64):
    """An encoding of the second box with ``iou(enc) == target`` exactly.

    The IoU is monotone in ``enc[column]`` over ``bounds``: bisect to the crossing and scan the float32
    neighbours. Box coordinates are quantized, so one parameter reaches only some IoU values: the height
    (``th``, column 2) of the second box is varied as well until the target is hit.
    """
    for th in np.linspace(-0.3, 0.3, 241, dtype=F32):
        enc = enc_j.copy()
        enc[2] = th

        def at(values):
            encodings = np.tile(enc, (len(values), 1))
            encodings[:, column] = values
            return iou(encodings)

        lo, hi = F32(bounds[0]), F32(bounds[1])
        increasing = at(np.array([hi], F32))[0] > at(np.array([lo], F32))[0]
        for _ in range(40):
            mid = F32((lo + hi) / 2)
            if (at(np.array([mid], F32))[0] < target) == increasing:
                lo = mid
            else:
                hi = mid
        candidates = float_neighbours(lo, span)
        hits = candidates[at(candidates) == target]
        if len(hits):
            enc[column] = hits[0]
            return enc
    raise RuntimeError(f"no encoding gives IoU {target!r}")


# --- the cases ----------------------------------------------------------------------------------------------

def case_realistic_many(rng):
    """12 classes with ~150 random candidates each: plenty of overlaps, > 100 survivors in total."""
    box_encodings, class_logits = background(rng, 0.5)
    for c in rng.choice(np.arange(1, 91), 12, replace=False):
        ids = rng.choice(N - 1, 150, replace=False)
        class_logits[ids, c] = rng.normal(0.0, 1.5, len(ids))
    return box_encodings, class_logits


def case_realistic_few(rng):
    """5 classes, 20 candidates each: fewer than 100 detections."""
    box_encodings, class_logits = background(rng, 0.5)
    for c in rng.choice(np.arange(1, 91), 5, replace=False):
        ids = rng.choice(N - 1, 20, replace=False)
        class_logits[ids, c] = rng.normal(-1.0, 1.0, len(ids))
    return box_encodings, class_logits


def case_threshold(rng):
    """Scores one ulp below float32(0.3), exactly 0.3 and one ulp above, for TF's packet sigmoid, TF's scalar
    tail (anchor 1916, classes 84..86) and OpenVINO's sigmoid. TF's packet sigmoid never returns exactly 0.3
    near logit(0.3): that slot keeps the background logit."""
    box_encodings, class_logits = background(rng, 0.2)
    paths = {"tf_packet": elementwise.eigen_logistic, "openvino": elementwise.onednn_logistic,
             "tf_tail": elementwise.eigen_scalar_logistic}
    for path, sigmoid_fn in paths.items():
        for (anchor, column), logit in zip(THRESHOLD_SLOTS[path], logits_hitting(sigmoid_fn, threshold_targets())):
            if logit is not None:
                class_logits[anchor, column] = logit
    class_logits[-1, 87:90] = class_logits[[a for a, _ in THRESHOLD_SLOTS["openvino"]],
                                           [c for _, c in THRESHOLD_SLOTS["openvino"]]]
    return box_encodings, class_logits


# Two layer-0 anchors side by side; the second box is moved left (tx, column 1) or widened (tw, column 3)
# over a range where the IoU is monotone and crosses 0.6.
IOU_SCANS = ((1, np.array([0.0, 0.0, 0.0, 0.0], F32), (-5.0, 0.0)),
             (3, np.array([0.0, -3.0, 0.0, 0.0], F32), (2.0, 5.0)))


def iou_targets():
    return [np.nextafter(IOU, F32(0)), IOU, np.nextafter(IOU, F32(1))]


def _iou_pairs():
    """(class, anchor_i, anchor_j, column, enc_j, bounds, target) of the six pairs, one per class."""
    pairs = []
    for k, (column, enc_j, bounds) in enumerate(IOU_SCANS):
        for t, target in enumerate(iou_targets()):
            row = 2 + 6 * k + 2 * t
            pairs.append((3 * k + t, anchor_index(0, row, 8, 0), anchor_index(0, row, 9, 0), column, enc_j,
                          bounds, target))
    return pairs


def _iou_case(rng, iou_fn, first_class):
    box_encodings, class_logits = background(rng, 0.2)
    class_logits[-1, first_class:first_class + 6] = BACKGROUND_LOGIT  # only the pairs in these classes
    enc_i = np.zeros(4, F32)
    for offset, a_i, a_j, column, enc_j, bounds, target in _iou_pairs():
        box_encodings[a_i] = enc_i
        box_encodings[a_j] = find_encoding(iou_fn(a_i, a_j, enc_i), enc_j, column, bounds, target)
        class_logits[a_i, first_class + offset] = 1.0
        class_logits[a_j, first_class + offset] = 0.5
    return box_encodings, class_logits


def case_iou_tf(rng):
    """Pairs of boxes (one class each) with TF IoU one ulp below 0.6, exactly 0.6 and one ulp above."""
    return _iou_case(rng, tf_iou_fn, 1)


def case_iou_openvino(rng):
    """Pairs of boxes with OpenVINO JaccardOverlap one ulp below 0.6, exactly 0.6 and one ulp above."""
    return _iou_case(rng, ov_iou_fn, 10)


def case_equal_scores_one_class(rng):
    """One class, 40 candidates with the same score, neighbours overlapping: ties broken by anchor index."""
    box_encodings, class_logits = background(rng, 0.1)
    ids = [anchor_index(0, r, c, kind) for r in (4, 5, 6, 12) for c in range(5, 10) for kind in (0, 1)]
    class_logits[ids, 7] = 0.75
    class_logits[anchor_index(1, 2, 2, 0), 7] = 0.75
    return box_encodings, class_logits


def case_equal_scores_across_classes(rng):
    """The same score in many classes, on shared and distinct anchors: TopK and row order on ties."""
    box_encodings, class_logits = background(rng, 0.3)
    shared = [anchor_index(0, 9, 9, 0), anchor_index(1, 5, 5, 3), anchor_index(2, 2, 2, 5)]
    for c in (3, 17, 18, 44, 90):
        class_logits[shared, c] = 1.25
        class_logits[rng.choice(N - 1, 4, replace=False), c] = 1.25
    class_logits[shared[0], 50] = 2.0
    return box_encodings, class_logits


def case_over_100_one_class(rng):
    """One class with 400 candidates: TF runs NMS on all of them, OpenVINO only on the best 100."""
    box_encodings, class_logits = background(rng, 0.4)
    ids = rng.choice(N - 1, 400, replace=False)
    class_logits[ids, 1] = rng.uniform(-0.5, 4.0, len(ids))
    return box_encodings, class_logits


def case_over_100_total(rng):
    """12 classes x 25 survivors on disjoint anchors, many equal scores across classes around the cut at 100."""
    box_encodings, class_logits = background(rng, 0.05)
    cells = [anchor_index(0, r, c, kind) for r in range(0, 19, 2) for c in range(0, 19, 2) for kind in range(3)]
    ids = rng.permutation(cells)[: 12 * 25].reshape(12, 25)  # no two classes share an anchor
    for c in range(1, 13):
        class_logits[ids[c - 1], c] = rng.choice(np.linspace(0.0, 3.0, 13), 25)  # many exact ties
    return box_encodings, class_logits


def case_clipped(rng):
    """Boxes partly or entirely outside [0, 1]: TF drops zero-area clipped boxes and runs NMS on clipped boxes,
    OpenVINO runs NMS on the unclipped boxes and clips afterwards."""
    box_encodings, class_logits = background(rng, 0.2)
    top = [anchor_index(0, 0, c, 0) for c in range(0, 19, 3)]
    box_encodings[top, 0] = -12.0  # moved up entirely above the image
    left = [anchor_index(0, r, 0, 0) for r in range(1, 19, 3)]
    box_encodings[left, 1] = -6.0  # partly left of the image
    corner = [anchor_index(1, 9, 9, k) for k in range(6)]
    box_encodings[corner, 0:2] = 4.0  # past the bottom-right corner
    class_logits[top, 2] = np.linspace(0.5, 2.0, len(top))
    class_logits[left, 2] = np.linspace(0.6, 2.1, len(left))
    class_logits[corner, 3] = np.linspace(0.5, 1.5, len(corner))
    big = [anchor_index(4, 0, 0, k) for k in range(6)]  # large anchors, mostly outside after clipping
    class_logits[big, 4] = np.linspace(0.2, 1.7, len(big))
    return box_encodings, class_logits


def case_far_outside(rng):
    """Huge encodings: boxes far outside, enormous and overflowing (exp -> inf) sizes, vanishing sizes."""
    box_encodings, class_logits = background(rng, 0.2)
    ids = [anchor_index(0, 9, c, 0) for c in range(0, 19, 2)]
    box_encodings[ids] = [[40.0, -60.0, 35.0, 30.0], [0, 0, 30.0, 40.0], [0, 0, -200.0, 3.0],
                          [0, 0, 2.0, -600.0], [100.0, 0, 0, 0], [0, -100.0, 0, 0], [0, 0, 0, 450.0],
                          [5.0, 5.0, 20.0, 20.0], [-5.0, 5.0, 44.0, 0.0], [0, 0, 0, 0]]
    class_logits[ids, 5] = np.linspace(0.0, 2.0, len(ids))
    class_logits[ids[::2], 6] = 1.5
    return box_encodings, class_logits


def case_no_detections(rng):
    box_encodings, class_logits = background(rng, 0.5)
    class_logits[-1] = rng.uniform(-8.0, -1.0, NUM_LOGITS)
    return box_encodings, class_logits


CASES = {
    "realistic_many": case_realistic_many,
    "realistic_few": case_realistic_few,
    "threshold": case_threshold,
    "iou_tf": case_iou_tf,
    "iou_openvino": case_iou_openvino,
    "equal_scores_one_class": case_equal_scores_one_class,
    "equal_scores_across_classes": case_equal_scores_across_classes,
    "over_100_one_class": case_over_100_one_class,
    "over_100_total": case_over_100_total,
    "clipped": case_clipped,
    "far_outside": case_far_outside,
    "no_detections": case_no_detections,
}


# Inputs where glibc expf's FMA build rounds differently from the same algorithm without FMA (found by
# comparing every float32 in [-200, 200] with the system expf).
GLIBC_NEAR_TIES = [32.564632, -63.09946]


def elementwise_inputs(rng):
    """Float32 values for the elementwise comparisons, 8k + 7 long (so TF's scalar tail is exercised)."""
    parts = [rng.standard_normal(6000) * 4, rng.uniform(-110.0, 100.0, 2000),
             float_neighbours(F32(-0.8472978603872037), 60),
             [0.0, -0.0, 1e-40, -1e-40, 88.7, 88.72, 88.73, 89.0, -87.3, -87.4, -103.9, -104.0, -104.1, 16.6355324,
              16.64, -9.0, 15.7, 300.0, -300.0],
             GLIBC_NEAR_TIES]
    x = np.concatenate([np.asarray(p, F32) for p in parts])
    size = 8 * (len(x) // 8 + 1) + 7
    return np.concatenate([x, rng.standard_normal(size - len(x)).astype(F32) * 3])


def check_case(name, inputs, tf, ov):
    """Assert that the adversarial cases test what they claim, with the runtimes' own numbers."""
    box_encodings, class_logits = inputs
    if name == "threshold":
        targets = threshold_targets()
        tf_hits = [tf["tf_scores"][0][slot] for slot in THRESHOLD_SLOTS["tf_packet"]]
        tail_hits = [tf["tf_scores"][0][slot] for slot in THRESHOLD_SLOTS["tf_tail"]]
        ov_hits = [ov["ov_confidences"][0, 0][slot] for slot in THRESHOLD_SLOTS["openvino"]]
        assert tf_hits[0] == targets[0] and tf_hits[2] == targets[2], tf_hits
        assert tail_hits == targets and ov_hits == targets, (tail_hits, ov_hits)
    if name == "iou_tf":
        classes = tf["tf_detection_classes"][0][: int(tf["tf_num_detections"][0])]
        counts = [int(np.sum(classes == c)) for c in range(1, 7)]
        assert counts == [2, 2, 1, 2, 2, 1], counts
    if name == "iou_openvino":
        labels = ov["ov_detection_out"][0, 0, :, 1][ov["ov_detection_out"][0, 0, :, 0] == 0]
        counts = [int(np.sum(labels == c)) for c in range(10, 16)]
        assert counts == [2, 2, 1, 2, 2, 1], counts
    if name == "no_detections":
        assert tf["tf_num_detections"][0] == 0 and ov["ov_detection_out"][0, 0, 0, 0] == -1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ir", help="OpenVINO IR .xml from tools/freeze_and_convert.py (made here if absent)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output directory")
    args = parser.parse_args(argv)
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        xml = args.ir
        if xml is None:
            prefix = save_random_checkpoint(Path(tmp) / "model.ckpt")
            xml = convert(freeze(prefix, tmp), tmp)
        tf = TFReference()
        ov = OpenVINOReference(xml)

        priors = None
        for seed, (name, make) in enumerate(CASES.items()):
            inputs = make(np.random.default_rng(1000 + seed))
            tf_result = tf.run(*inputs)
            ov_result, priors = ov.run(*inputs)
            check_case(name, inputs, tf_result, ov_result)
            np.savez_compressed(out / f"{name}.npz", box_encodings=inputs[0], class_logits=inputs[1],
                                **tf_result, **ov_result)
            rows = ov_result["ov_detection_out"][0, 0]
            print(f"{name}: TF num_detections {int(tf_result['tf_num_detections'][0])}, OpenVINO rows "
                  f"{int(np.argmax(rows[:, 0] == -1)) if (rows[:, 0] == -1).any() else len(rows)}")

        widths = [np.array(w, F32) for w, _ in ov.prior_sizes]
        heights = [np.array(h, F32) for _, h in ov.prior_sizes]
        np.savez_compressed(out / "references.npz", tf_anchors=tf.anchors(),
                            ov_priors=priors[0, 0].reshape(N, 4), ov_variances=priors[0, 1].reshape(N, 4),
                            ov_prior_widths=np.concatenate(widths), ov_prior_heights=np.concatenate(heights),
                            ov_detection_attributes=np.array(repr(sorted(ov.attributes.items()))))

        x = elementwise_inputs(np.random.default_rng(7))
        tf_exp, tf_sigmoid = tf.elementwise(x)
        np.savez_compressed(out / "elementwise.npz", x=x, tf_exp=tf_exp, tf_sigmoid=tf_sigmoid,
                            ov_sigmoid=ov.sigmoid(x.reshape(1, 1, 1, -1)).ravel(), libm_expf=libm_expf(x))
    total = sum(p.stat().st_size for p in out.glob("*.npz"))
    print(f"wrote {len(CASES) + 2} files to {out}, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
