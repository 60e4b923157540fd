"""Anchors (TF ``Concatenate/concat``) and OpenVINO priors (``ConcatPriorBoxesClustered``).

Layers: hand-computed entries, the graph's constants, then the full tables against the real runtimes
(tests/data/postprocess/references.npz, made by tools/make_postprocess_cases.py).
"""

from pathlib import Path

import numpy as np
import pytest

from ssd_np.reference import anchors

DATA = Path(__file__).parent / "data" / "postprocess"


@pytest.fixture(scope="module")
def references():
    return np.load(DATA / "references.npz")


def _report(ours, ref):
    diff = np.abs(ours.astype(np.float64) - ref)
    worst = np.unravel_index(np.argmax(diff), diff.shape)[0]
    return (f"{int(np.sum(np.any(ours != ref, axis=1)))} rows differ, largest difference {diff.max():.3g} "
            f"at row {worst}: ours {ours[worst]} reference {ref[worst]}")


# (index, [ymin, xmin, ymax, xmax]) computed by hand from the formulas in ssd_np/anchors.py.
HAND_ANCHORS = [
    # layer 0, row 0, col 0: centre 0.5/19; scale 0.1 ratio 1; 0.2 ratio 2 (h 0.2/sqrt2, w 0.2*sqrt2); ratio 0.5
    (0, [0.5 / 19 - 0.05, 0.5 / 19 - 0.05, 0.5 / 19 + 0.05, 0.5 / 19 + 0.05]),
    (1, [0.5 / 19 - 0.1 / 2 ** 0.5, 0.5 / 19 - 0.1 * 2 ** 0.5, 0.5 / 19 + 0.1 / 2 ** 0.5,
         0.5 / 19 + 0.1 * 2 ** 0.5]),
    (2, [0.5 / 19 - 0.1 * 2 ** 0.5, 0.5 / 19 - 0.1 / 2 ** 0.5, 0.5 / 19 + 0.1 * 2 ** 0.5, 0.5 / 19 + 0.1 / 2 ** 0.5]),
    # layer 0, row 0, col 1: x centre 1.5/19
    (3, [0.5 / 19 - 0.05, 1.5 / 19 - 0.05, 0.5 / 19 + 0.05, 1.5 / 19 + 0.05]),
    # layer 0, row 1, col 0: y centre 1.5/19
    (57, [1.5 / 19 - 0.05, 0.5 / 19 - 0.05, 1.5 / 19 + 0.05, 0.5 / 19 + 0.05]),
    # layer 1 (10x10), row 0, col 0: centre 0.05, scale 0.35; type 3: ratio 3
    (1083, [0.05 - 0.175, 0.05 - 0.175, 0.05 + 0.175, 0.05 + 0.175]),
    (1086, [0.05 - 0.175 / 3 ** 0.5, 0.05 - 0.175 * 3 ** 0.5, 0.05 + 0.175 / 3 ** 0.5, 0.05 + 0.175 * 3 ** 0.5]),
    # layer 1, type 5: interpolated scale sqrt(0.35 * 0.5), ratio 1
    (1088, [0.05 - 0.175 ** 0.5 / 2, 0.05 - 0.175 ** 0.5 / 2, 0.05 + 0.175 ** 0.5 / 2, 0.05 + 0.175 ** 0.5 / 2]),
    # layer 5 (1x1): centre 0.5, scale 0.95; last anchor: scale sqrt(0.95 * 1.0)
    (1911, [0.025, 0.025, 0.975, 0.975]),
    (1916, [0.5 - 0.95 ** 0.5 / 2, 0.5 - 0.95 ** 0.5 / 2, 0.5 + 0.95 ** 0.5 / 2, 0.5 + 0.95 ** 0.5 / 2]),
]


@pytest.mark.parametrize("index, expected", HAND_ANCHORS)
def test_hand_computed_anchors(index, expected):
    np.testing.assert_allclose(anchors.ssd_anchors()[index], expected, rtol=0, atol=3e-7)


def test_shape_dtype_and_layer_sizes():
    table = anchors.ssd_anchors()
    assert table.shape == (1917, 4) and table.dtype == np.float32
    assert [len(anchors.grid_anchors(s, spec)) for s, spec in
            zip(anchors.FEATURE_MAP_SIZES, anchors.layer_box_specs())] == [1083, 600, 150, 54, 24, 6]


# The float32 constants of the genuine graph: MultipleGridAnchorGenerator/div_14/x .. div_19/x (scales) and
# Sqrt/x .. Sqrt_5/x (aspect ratios), read from model.ckpt.meta.
GRAPH_SCALES = [
    [0.10000000149011612, 0.20000000298023224, 0.20000000298023224],
    [0.3499999940395355] * 5 + [0.41833001375198364],
    [0.5] * 5 + [0.570087730884552],
    [0.6499999761581421] * 5 + [0.7211102247238159],
    [0.800000011920929] * 5 + [0.8717797994613647],
    [0.949999988079071] * 5 + [0.9746794104576111],
]
GRAPH_RATIOS = [[1.0, 2.0, 0.5]] + [[1.0, 2.0, 0.5, 3.0, 0.33329999446868896, 1.0]] * 5


def test_scales_and_ratios_equal_graph_constants():
    for layer, spec in enumerate(anchors.layer_box_specs()):
        np.testing.assert_array_equal(spec[:, 0], np.array(GRAPH_SCALES[layer], np.float32), err_msg=f"layer {layer}")
        np.testing.assert_array_equal(spec[:, 1], np.array(GRAPH_RATIOS[layer], np.float32), err_msg=f"layer {layer}")


def test_full_table_bit_exact_with_tensorflow(references):
    ours, ref = anchors.ssd_anchors(), references["tf_anchors"]
    assert np.array_equal(ours, ref), _report(ours, ref)


def test_openvino_prior_sizes_are_the_ir_attributes(references):
    widths = np.concatenate([w for w, _ in anchors.openvino_prior_sizes()])
    heights = np.concatenate([h for _, h in anchors.openvino_prior_sizes()])
    np.testing.assert_array_equal(widths, references["ov_prior_widths"])
    np.testing.assert_array_equal(heights, references["ov_prior_heights"])
    assert list(widths[:3]) == [np.float32(30), np.float32(84.8528), np.float32(42.4264)]


def test_openvino_priors_bit_exact_with_openvino(references):
    ours, ref = anchors.openvino_priors(), references["ov_priors"]
    assert np.array_equal(ours, ref), _report(ours, ref)
    np.testing.assert_array_equal(references["ov_variances"], np.tile(np.float32([0.1, 0.1, 0.2, 0.2]), (1917, 1)))


def test_openvino_priors_are_the_anchors_in_xy_order():
    """Same boxes up to float rounding, with x and y swapped."""
    np.testing.assert_allclose(anchors.openvino_priors(), anchors.ssd_anchors()[:, [1, 0, 3, 2]], atol=2e-6)


def test_tables_are_computed_once_and_read_only():
    for table in (anchors.ssd_anchors, anchors.openvino_priors):
        assert table() is table()
        with pytest.raises(ValueError, match="read-only"):
            table()[0, 0] = 0.0
