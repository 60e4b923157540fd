"""The network: the reference's architecture table against the release's variables and the graph, the reference's
trace (shapes, concat order), and the engine's network (`ssd_np/engine/network.py`) against the reference on a
random input: prepared layers, feature maps, box encodings and logits.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA
from ssd_np.engine import conv, depthwise, network
from ssd_np.reference import box_predictor, mobilenet_v2
from ssd_np.weights.standin import standin_weights

SCOPE = mobilenet_v2.SCOPE
FEATURE_CHANNELS = (576, 1280, 512, 256, 256, 128)
FEATURE_SIZES = (19, 10, 5, 3, 2, 1)


def listing() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (DATA / "model.ckpt.index.listing.tsv").read_text().splitlines():
        name, dtype, shape = line.split("\t")[:3]
        if dtype == "float32":
            shapes[name] = tuple(int(d) for d in shape.split("x"))
    return shapes


def test_architecture_uses_every_variable_once():
    ours = mobilenet_v2.variable_shapes()
    heads = box_predictor.variable_shapes(FEATURE_CHANNELS)
    assert not set(ours) & set(heads)
    release = listing()
    assert len(release) == 344
    assert {**ours, **heads} == release


def test_residual_blocks_match_graph():
    # The graph has `expanded_conv_N/add` exactly for these blocks (grep '/add\\t' in the graph's node dump).
    expected = {2, 4, 5, 7, 8, 9, 11, 12, 14, 15}
    found = set()
    channels = 3
    for name, kind, stride, _expansion, out in mobilenet_v2.ARCHITECTURE:
        if kind == "expanded_conv" and mobilenet_v2.has_residual(stride, channels, out):
            found.add(int(name.rsplit("_", 1)[1]))
        channels = out
    assert found == expected


@pytest.fixture(scope="module")
def reference_run():
    weights = standin_weights(1, "sparse")
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (300, 300, 3)).astype(np.float32)
    trace: dict = {}
    maps = mobilenet_v2.feature_maps(x, weights, trace)
    boxes, logits = box_predictor.predict(maps, weights, trace)
    return x, weights, trace, maps, boxes, logits


def test_prepare_packs_every_layer(reference_run):
    _, weights, trace, _, _, _ = reference_run
    layers = network.prepare(weights)
    # every convolution (1 + 16 expand + 17 project + 5 pointwise + 4 separable) and depthwise (17 + 4) layer of the
    # backbone, and one function per box predictor map: Winograd on the 19x19 and 10x10 maps, direct on the others
    assert sum(isinstance(v, conv.Conv) for v in layers.values()) == 43
    assert sum(isinstance(v, depthwise.Depthwise) for v in layers.values()) == 21
    heads = [layers[f"BoxPredictor_{i}"] for i in range(6)]
    assert [i for i, h in enumerate(heads) if "wg" in h.keywords] == list(network.WINOGRAD_MAPS) == [0, 1]
    layer = layers["expanded_conv_3/expand"]
    assert (layer.kh, layer.kw, layer.cin, layer.cout) == (1, 1, 24, 144)
    np.testing.assert_array_equal(layer.scale[:144], trace[f"{SCOPE}/expanded_conv_3/expand/BatchNorm/batchnorm/mul"])
    np.testing.assert_array_equal(layer.shift[:144], trace[f"{SCOPE}/expanded_conv_3/expand/BatchNorm/batchnorm/sub"])
    wg = heads[1].keywords["wg"]
    assert (wg.cin, wg.cout) == (1280, 6 * 4 + 6 * 91)
    np.testing.assert_array_equal(wg.bias[:24], weights["BoxPredictor_1/BoxEncodingPredictor/biases"])
    np.testing.assert_array_equal(wg.bias[24:570], weights["BoxPredictor_1/ClassPredictor/biases"])
    direct = heads[2].keywords["conv"]
    assert (direct.kh, direct.cin, direct.cout) == (3, 512, 6 * 4 + 6 * 91)
    np.testing.assert_array_equal(direct.shift[:24], weights["BoxPredictor_2/BoxEncodingPredictor/biases"])
    np.testing.assert_array_equal(direct.shift[24:570], weights["BoxPredictor_2/ClassPredictor/biases"])


def test_feature_maps_shapes_and_trace(reference_run):
    _, _, trace, maps, boxes, logits = reference_run
    assert [m.shape for m in maps] == [(s, s, c) for s, c in zip(FEATURE_SIZES, FEATURE_CHANNELS)]
    for node, m in zip(mobilenet_v2.FEATURE_MAP_NODES, maps):
        np.testing.assert_array_equal(trace[node], m[None])
    assert all(v.dtype == np.float32 for v in trace.values())
    assert trace[f"{SCOPE}/Conv/Relu6"].shape == (1, 150, 150, 32)
    assert trace[f"{SCOPE}/expanded_conv_2/add"].shape == (1, 75, 75, 24)
    assert f"{SCOPE}/expanded_conv_3/add" not in trace
    assert boxes.shape == (1917, 4) and logits.shape == (1917, 91)
    assert trace["concat"].shape == (1, 1917, 1, 4) and trace["concat_1"].shape == (1, 1917, 91)


def test_box_predictor_concat_order(reference_run):
    _, _, trace, _, boxes, logits = reference_run
    start = 0
    for i, (size, anchors) in enumerate(zip(FEATURE_SIZES, box_predictor.ANCHORS_PER_LOCATION)):
        n = size * size * anchors
        box_map = trace[f"BoxPredictor_{i}/BoxEncodingPredictor/BiasAdd"][0]  # (H, W, A * 4)
        class_map = trace[f"BoxPredictor_{i}/ClassPredictor/BiasAdd"][0]  # (H, W, A * 91)
        # anchor (y, x, a) is row (y * W + x) * A + a
        y, x, a = size - 1, 0, anchors - 1
        row = start + (y * size + x) * anchors + a
        np.testing.assert_array_equal(boxes[row], box_map[y, x, 4 * a:4 * a + 4])
        np.testing.assert_array_equal(logits[row], class_map[y, x, 91 * a:91 * a + 91])
        start += n
    assert start == 1917


def test_engine_network_vs_reference(reference_run):
    # Both sum convolutions in float32, in different orders (the engine as TF's GEMM does, the reference in BLAS's
    # order): the maps differ like TF's own settings do (up to 2.8e-5 of a map's scale,
    # tests/data/golden/tf_spread.json); the goldens check both against TF (test_golden.py, test_engine.py).
    x, weights, _, maps, boxes, logits = reference_run
    layers = network.prepare(weights)
    engine_maps = network.feature_maps(x, layers)
    for node, ours, twin in zip(mobilenet_v2.FEATURE_MAP_NODES, engine_maps, maps):
        rel = np.abs(ours - twin).max() / np.abs(twin).max()
        print(f"{node}: max diff / max |reference| = {rel:.2e}")
        assert ours.shape == twin.shape and rel < 1e-4
    engine_boxes, engine_logits = network.predict(engine_maps, layers)
    for name, ours, twin in (("concat", engine_boxes, boxes), ("concat_1", engine_logits, logits)):
        rel = np.abs(ours - twin).max() / np.abs(twin).max()
        print(f"{name}: max diff / max |reference| = {rel:.2e}")
        assert ours.shape == twin.shape and rel < 1e-4


def test_bad_input_raises():
    with pytest.raises(ValueError, match="preprocessed"):
        network.feature_maps(np.zeros((300, 300, 3), np.uint8), {})
    with pytest.raises(ValueError, match="6 feature maps"):
        network.predict([], {})
