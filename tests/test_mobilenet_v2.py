"""ssd_np.mobilenet_v2 and ssd_np.box_predictor: the architecture table against the release's variables, the
residual blocks against the graph, and the whole forward pass against a plain NumPy twin built from the kernels'
reference functions.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DATA
from ssd_np import box_predictor, kernels, mobilenet_v2, model, winograd
from ssd_np.standin import standin_weights

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


def twin_forward(x: np.ndarray, weights: dict) -> list[np.ndarray]:
    """The network from the kernels' plain-NumPy twins, following the table directly."""
    def bn(y, scope, relu6=True):
        p = f"{SCOPE}/{scope}/BatchNorm"
        scale, shift = kernels.batch_norm_params(weights[f"{p}/gamma"], weights[f"{p}/beta"],
                                                 weights[f"{p}/moving_mean"], weights[f"{p}/moving_variance"])
        y = kernels.batch_norm_ref(y, scale, shift)
        return kernels.relu6_ref(y) if relu6 else y

    def conv(y, scope, stride=1, relu6=True):
        return bn(kernels.conv2d_ref(y, weights[f"{SCOPE}/{scope}/weights"], stride), scope, relu6)

    def depthwise(y, scope, stride):
        return bn(kernels.depthwise3x3_ref(y, weights[f"{SCOPE}/{scope}/depthwise_weights"], stride), scope)

    maps = []
    y = x
    for name, kind, stride, expansion, out in mobilenet_v2.ARCHITECTURE:
        if kind == "conv":
            y = conv(y, name, stride)
        elif kind == "expanded_conv":
            e = conv(y, f"{name}/expand") if expansion != 1 else y
            if name == "expanded_conv_13":
                maps.append(e)
            z = conv(depthwise(e, f"{name}/depthwise", stride), f"{name}/project", relu6=False)
            y = z + y if stride == 1 and y.shape[2] == out else z
        elif kind == "pointwise":
            y = conv(y, name)
            if name == "Conv_1":
                maps.append(y)
        else:
            y = conv(depthwise(y, f"{name}_depthwise", stride), name)
            maps.append(y)
    return maps


@pytest.fixture(scope="module")
def network():
    weights = standin_weights(1, "sparse")
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, (300, 300, 3)).astype(np.float32)
    trace: dict = {}
    maps = mobilenet_v2.feature_maps(x, weights, trace)  # the variables: prepared on the fly
    boxes, logits = box_predictor.predict(maps, weights, trace)
    return x, weights, trace, maps, boxes, logits


def test_fast_path_equals_traced_path(network):
    # Without a trace the epilogues (batch norm, ReLU6, residual add, biases) run fused in the kernels; with a trace
    # they run as separate NumPy ops on the raw sums. Same float32 operations on the same sums: same bits.
    x, weights, _, maps, boxes, logits = network
    layers = model.prepare(weights)
    fast_maps = mobilenet_v2.feature_maps(x, layers)
    for node, ours, traced in zip(mobilenet_v2.FEATURE_MAP_NODES, fast_maps, maps):
        np.testing.assert_array_equal(ours, traced, err_msg=node)
    fast_boxes, fast_logits = box_predictor.predict(fast_maps, layers)
    np.testing.assert_array_equal(fast_boxes, boxes)
    np.testing.assert_array_equal(fast_logits, logits)


def test_prepare_packs_every_layer(network):
    _, weights, trace, _, _, _ = network
    layers = model.prepare(weights)
    # every convolution (1 + 16 expand + 17 project + 5 pointwise + 4 separable) and depthwise (17 + 4) layer of the
    # backbone, and one convolution per box predictor map: Winograd on the 19x19 and 10x10 maps, direct on the others
    assert sum(isinstance(v, kernels.Conv) for v in layers.values()) == 43 + 4
    assert sum(isinstance(v, kernels.Depthwise) for v in layers.values()) == 21
    assert [i for i in range(6) if isinstance(layers[f"BoxPredictor_{i}"], winograd.Winograd)] == [0, 1]
    conv = layers["expanded_conv_3/expand"]
    assert isinstance(conv, kernels.Conv) and (conv.kh, conv.kw, conv.cin, conv.cout) == (1, 1, 24, 144)
    np.testing.assert_array_equal(conv.scale[:144], trace[f"{SCOPE}/expanded_conv_3/expand/BatchNorm/batchnorm/mul"])
    np.testing.assert_array_equal(conv.shift[:144], trace[f"{SCOPE}/expanded_conv_3/expand/BatchNorm/batchnorm/sub"])
    head = layers["BoxPredictor_1"]
    assert (head.cin, head.cout) == (1280, 6 * 4 + 6 * 91)
    np.testing.assert_array_equal(head.bias[:24], weights["BoxPredictor_1/BoxEncodingPredictor/biases"])
    np.testing.assert_array_equal(head.bias[24:570], weights["BoxPredictor_1/ClassPredictor/biases"])
    head = layers["BoxPredictor_2"]
    assert (head.kh, head.cin, head.cout) == (3, 512, 6 * 4 + 6 * 91)
    np.testing.assert_array_equal(head.shift[:24], weights["BoxPredictor_2/BoxEncodingPredictor/biases"])
    np.testing.assert_array_equal(head.shift[24:570], weights["BoxPredictor_2/ClassPredictor/biases"])


def test_feature_maps_shapes_and_trace(network):
    _, _, trace, maps, boxes, logits = network
    assert [m.shape for m in maps] == [(s, s, c) for s, c in zip(FEATURE_SIZES, FEATURE_CHANNELS)]
    for node, m in zip(mobilenet_v2.FEATURE_MAP_NODES, maps):
        np.testing.assert_array_equal(trace[node], m[None])
    assert all(v.dtype == np.float32 for v in trace.values())
    assert trace[f"{SCOPE}/Conv/Relu6"].shape == (1, 150, 150, 32)
    assert trace[f"{SCOPE}/expanded_conv_2/add"].shape == (1, 75, 75, 24)
    assert f"{SCOPE}/expanded_conv_3/add" not in trace
    assert boxes.shape == (1917, 4) and logits.shape == (1917, 91)
    assert trace["concat"].shape == (1, 1917, 1, 4) and trace["concat_1"].shape == (1, 1917, 91)


def test_box_predictor_concat_order(network):
    _, _, trace, _, boxes, logits = network
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


def test_network_vs_numpy_twin(network):
    # The twin sums convolutions in float64 (one rounding); the kernels in float32. Differences grow through
    # the 17 blocks like TF's own (oneDNN on vs off: up to 2.8e-5 of a map's scale, tests/data/golden/tf_spread.json).
    x, weights, _, maps, boxes, logits = network
    twin_maps = twin_forward(x, weights)
    for node, ours, twin in zip(mobilenet_v2.FEATURE_MAP_NODES, maps, twin_maps):
        rel = np.abs(ours - twin).max() / np.abs(twin).max()
        print(f"{node}: max diff / max |twin| = {rel:.2e}")
        assert rel < 1e-4
    twin_boxes, twin_logits = [], []
    for i, fm in enumerate(twin_maps):
        for head, depth, out in (("BoxEncodingPredictor", 4, twin_boxes), ("ClassPredictor", 91, twin_logits)):
            y = kernels.conv2d_ref(fm, weights[f"BoxPredictor_{i}/{head}/weights"], 1)
            out.append((y + weights[f"BoxPredictor_{i}/{head}/biases"]).reshape(-1, depth))
    for name, ours, twin in (("concat", boxes, np.concatenate(twin_boxes)),
                             ("concat_1", logits, np.concatenate(twin_logits))):
        rel = np.abs(ours - twin).max() / np.abs(twin).max()
        print(f"{name}: max diff / max |twin| = {rel:.2e}")
        assert rel < 1e-4


def test_bad_input_raises():
    with pytest.raises(ValueError, match="preprocessed"):
        mobilenet_v2.feature_maps(np.zeros((300, 300, 3), np.uint8), {})
    with pytest.raises(ValueError, match="6 feature maps"):
        box_predictor.predict([], {})
