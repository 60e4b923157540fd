"""Box decoding and scores: `Postprocessor/Decode` (the Faster R-CNN box coder) and `Postprocessor/convert_scores`.

Mirrors `box_coders/faster_rcnn_box_coder.py` (`_decode`) and `core/box_list.py` with scale factors
y, x = 10 and h, w = 5, op by op in float32 as the graph computes them (nodes under `Postprocessor/Decode/`):
* anchors `[ymin, xmin, ymax, xmax]`: ha = ymax - ymin, wa = xmax - xmin, yca = ymin + ha / 2, xca = xmin + wa / 2;
* encodings `[ty, tx, th, tw]` divided by the scale factors (real divisions, not products with 0.1 and 0.2);
* w = exp(tw / 5) * wa, h = exp(th / 5) * ha, yc = ty / 10 * ha + yca, xc = tx / 10 * wa + xca;
* boxes `[yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2]`, normalized `[ymin, xmin, ymax, xmax]`, not clipped.
`Exp` is TF's kernel (`tf_math.tf_exp`); the other ops are single IEEE float32 operations, as in NumPy.

Scores (score converter SIGMOID, logit scale 1.0): `convert_scores = Sigmoid(concat_1 / 1.0)` with TF's kernel
(`tf_math.tf_sigmoid`), then the background column 0 is sliced off (`Postprocessor/Slice`). x / 1.0 is x in IEEE
arithmetic (NaN stays NaN), so the division is not written.
"""
from __future__ import annotations

import numpy as np

from ssd_np.reference import tf_math
from ssd_np.reference.tracing import record

F32 = np.float32
SCALE_FACTORS = (F32(10.0), F32(10.0), F32(5.0), F32(5.0))  # y, x, h, w


def check_pair(box_encodings, anchors):
    if box_encodings.ndim != 2 or box_encodings.shape[1] != 4 or box_encodings.shape != anchors.shape:
        raise ValueError(f"decode needs box_encodings and anchors of the same shape (N, 4), got "
                         f"{box_encodings.shape} and {anchors.shape}: squeeze the batch dimension of `concat`")


def decode(box_encodings, anchors, trace, exp=tf_math.tf_exp):
    """(N, 4) `[ty, tx, th, tw]` against (N, 4) anchors -> (N, 4) float32 `[ymin, xmin, ymax, xmax]`.
    Trace: `Postprocessor/Decode/Exp` (exp(tw / 5)), `Exp_1` (exp(th / 5)), `transpose_1` (the boxes)."""
    box_encodings, anchors = np.asarray(box_encodings, F32), np.asarray(anchors, F32)
    check_pair(box_encodings, anchors)
    ymin_a, xmin_a, ymax_a, xmax_a = anchors.T
    wa, ha = xmax_a - xmin_a, ymax_a - ymin_a
    yca, xca = ymin_a + ha / F32(2.0), xmin_a + wa / F32(2.0)
    ty, tx, th, tw = (box_encodings[:, i] / SCALE_FACTORS[i] for i in range(4))
    w = record(trace, "Postprocessor/Decode/Exp", exp(tw)) * wa
    h = record(trace, "Postprocessor/Decode/Exp_1", exp(th)) * ha
    yc, xc = ty * ha + yca, tx * wa + xca
    boxes = np.stack([yc - h / F32(2.0), xc - w / F32(2.0), yc + h / F32(2.0), xc + w / F32(2.0)], axis=1)
    return record(trace, "Postprocessor/Decode/transpose_1", boxes)


def scores(class_logits, trace, sigmoid=tf_math.tf_sigmoid):
    """(N, 91) logits -> (N, 91) float32 sigmoid scores (`convert_scores` without the batch dimension)."""
    class_logits = np.asarray(class_logits, F32)
    if class_logits.ndim != 2:
        raise ValueError(f"scores needs (N, num_classes + 1) logits, got shape {class_logits.shape}")
    converted = record(trace, "Postprocessor/convert_scores", sigmoid(class_logits),  # concat_1 / 1.0 == concat_1
                       (1, *class_logits.shape))
    trace["Postprocessor/Slice"] = converted[None, :, 1:]  # the same values without column 0
    return converted
