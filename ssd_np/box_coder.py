"""Faster R-CNN box decoding and sigmoid scores, bit-exact with ``Postprocessor/Decode`` and
``Postprocessor/convert_scores``.

Mirrors the Object Detection API's ``box_coders/faster_rcnn_box_coder.py`` (``_decode``) and
``core/box_list.py`` (``get_center_coordinates_and_sizes``) with scale factors y, x = 10, h, w = 5, op by op in
float32 as the graph computes them (node names under ``Postprocessor/Decode/``):

* anchors ``[ymin, xmin, ymax, xmax]``: ``ha = ymax - ymin``, ``wa = xmax - xmin``,
  ``yca = ymin + ha / 2``, ``xca = xmin + wa / 2`` (``get_center_coordinates_and_sizes/sub_1, sub, add, add_1``);
* encodings ``[ty, tx, th, tw]``: ``ty / 10``, ``tx / 10``, ``th / 5``, ``tw / 5`` (real divisions ``div..div_3``);
* ``w = exp(tw / 5) * wa``, ``h = exp(th / 5) * ha`` (``Exp``, ``mul``, ``Exp_1``, ``mul_1``);
* ``yc = ty / 10 * ha + yca``, ``xc = tx / 10 * wa + xca`` (``mul_2``, ``add``, ``mul_3``, ``add_1``);
* boxes ``[yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2]`` (``div_4..div_7``, ``sub``, ``sub_1``, ``add_2``,
  ``add_3``), normalized ``[ymin, xmin, ymax, xmax]``, not clipped.

``Exp`` is TF's kernel (``elementwise.tf_exp``: Eigen packet code, glibc ``expf`` for the last ``N % 8``; computed
by its compiled twin ``tf_exp_fast``); the other ops are single IEEE float32 operations and numpy rounds them
identically.

Scores (``core/post_processing`` score converter SIGMOID, logit scale 1.0): ``convert_scores =
Sigmoid(concat_1 / 1.0)`` with TF's Sigmoid kernel (``elementwise.tf_sigmoid``, computed by ``tf_sigmoid_fast``),
the background column 0 is then sliced off (``Postprocessor/Slice``). A float32 divided by 1.0 is itself (IEEE
division is exact here, NaN stays NaN), so the division is not computed.
"""

import numpy as np

from ssd_np.elementwise import tf_exp_fast, tf_sigmoid_fast

F32 = np.float32

SCALE_FACTORS = (10.0, 10.0, 5.0, 5.0)  # y, x, h, w


def _check_pair(box_encodings, anchors):
    if box_encodings.ndim != 2 or box_encodings.shape[1] != 4 or box_encodings.shape != anchors.shape:
        raise ValueError(f"decode needs box_encodings and anchors of the same shape (N, 4), got "
                         f"{box_encodings.shape} and {anchors.shape}: squeeze the batch dimension of `concat`")


def decode(box_encodings, anchors, trace=None):
    """Decode (N, 4) ``[ty, tx, th, tw]`` against (N, 4) anchors -> (N, 4) float32 ``[ymin, xmin, ymax, xmax]``.

    ``trace`` (optional dict) receives ``Postprocessor/Decode/Exp`` (N,) (``exp(tw / 5)``),
    ``Postprocessor/Decode/Exp_1`` (N,) (``exp(th / 5)``) and ``Postprocessor/Decode/transpose_1`` (N, 4).
    """
    box_encodings = np.asarray(box_encodings, F32)
    anchors = np.asarray(anchors, F32)
    _check_pair(box_encodings, anchors)
    ymin_a, xmin_a, ymax_a, xmax_a = anchors.T
    wa = xmax_a - xmin_a
    ha = ymax_a - ymin_a
    yca = ymin_a + ha / F32(2.0)
    xca = xmin_a + wa / F32(2.0)

    y_scale, x_scale, h_scale, w_scale = (F32(s) for s in SCALE_FACTORS)
    ty = box_encodings[:, 0] / y_scale
    tx = box_encodings[:, 1] / x_scale
    th = box_encodings[:, 2] / h_scale
    tw = box_encodings[:, 3] / w_scale

    exp_tw = tf_exp_fast(tw)
    exp_th = tf_exp_fast(th)
    w = exp_tw * wa
    h = exp_th * ha
    yc = ty * ha + yca
    xc = tx * wa + xca
    boxes = np.stack([yc - h / F32(2.0), xc - w / F32(2.0), yc + h / F32(2.0), xc + w / F32(2.0)], axis=1)
    if trace is not None:
        trace["Postprocessor/Decode/Exp"] = exp_tw
        trace["Postprocessor/Decode/Exp_1"] = exp_th
        trace["Postprocessor/Decode/transpose_1"] = boxes
    return boxes.astype(F32)


def scores(class_logits, trace=None):
    """(N, 91) logits -> (N, 91) float32 sigmoid scores (``Postprocessor/convert_scores`` without the batch)."""
    class_logits = np.asarray(class_logits, F32)
    if class_logits.ndim != 2:
        raise ValueError(f"scores needs (N, num_classes + 1) logits, got shape {class_logits.shape}")
    converted = tf_sigmoid_fast(class_logits)  # concat_1 / 1.0 == concat_1
    if trace is not None:
        trace["Postprocessor/convert_scores"] = converted[None]
        trace["Postprocessor/Slice"] = converted[None, :, 1:]
    return converted
