"""`ssd-np explain`: one self-contained HTML page that follows one image through the SSD, stage by stage.

For readers learning how a single-shot detector works. The page shows what the reference (`ssd_np.reference`,
plain NumPy) computes, read from its trace under the TF graph's node names, in the graph's order:

    1. input and preprocessing   the image, its 300x300 stretch, the values after (2/255) x - 1
    2. backbone                  channels of feature maps as heat maps; the six maps the predictors read
    3. anchors                   the six grids, the anchors of one cell each, 19x19x3 + ... + 1x1x6 = 1917
    4. predictions               box encodings decoded against anchors, class scores, the 0.3 threshold
    5. non-maximum suppression   per class: candidates, kept, suppressed (by which box, at which IoU)
    6. detections                TF's four outputs, and OpenVINO's `detection_out`

Each section names the reference function (module:function) and the TF nodes it shows. The per-class NMS
decisions come from the reference's own `postprocess.class_nms` (the function `multiclass_nms` calls), so the
kept boxes are exactly the rows of TF's outputs.

`explain(rgb, weights)` runs the reference and returns an `Explanation` (the numbers the page shows);
`render(explanation, ...)` turns it into the HTML text.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ssd_np.cli.draw import class_colour
from ssd_np.coco_labels import COCO_LABELS
from ssd_np.reference import model, postprocess, preprocess
from ssd_np.reference.anchors import ASPECT_RATIOS, FEATURE_MAP_SIZES, IMAGE_SIZE, MAX_SCALE, MIN_SCALE, \
    layer_box_specs, ssd_anchors
from ssd_np.reference.box_coder import SCALE_FACTORS
from ssd_np.reference.box_predictor import NUM_CLASSES_WITH_BACKGROUND
from ssd_np.reference.mobilenet_v2 import ARCHITECTURE, FEATURE_MAP_NODES, SCOPE
from ssd_np.report.html import CATEGORICAL, COLOURS, Box, Html, ImageRef, Mark, Rule, Section, Series, \
    SharedImages, code, figure, heat_legend, heat_rgb, hex_colour, img, join, page, paragraph, svg_boxes, \
    svg_histogram, svg_plot, swatch, table, tag

NMS_SCOPE = "Postprocessor/BatchMultiClassNonMaxSuppression/map/while/MultiClassNonMaxSuppression"
EARLY_MAPS = (f"{SCOPE}/Conv/Relu6", f"{SCOPE}/expanded_conv_5/output")  # on the way to the six maps
HEAT_CHANNELS = 4  # channels shown per feature map
HEAT_WIDTH = 116  # CSS pixels per heat map
TOP_ANCHORS = 8  # rows of the "best anchors" table (the figure draws the first 5)
RANKED = 150  # anchors in the score-by-rank plot
NMS_FIGURES = 6  # classes drawn in the NMS section (the summary table lists them all)
NMS_ROWS = 25  # candidates listed per drawn class
LABELLED = 12  # boxes labelled per figure (the best; the others have tooltips)
DISPLAY_MAX = 640  # the original image is shown at most this many pixels wide or high
SCORE_THRESHOLD, IOU_THRESHOLD = postprocess.SCORE_THRESHOLD, postprocess.IOU_THRESHOLD


@dataclass(frozen=True)
class ClassNms:
    """One class's NMS as the reference runs it (`postprocess.class_nms`). Positions index the candidates."""
    class_id: int  # COCO id: column class_id - 1 of `Postprocessor/Slice`
    above: int  # anchors with a score > 0.3 (`FilterGreaterThan_k`)
    anchors: np.ndarray  # (n,) the candidates' anchor indices, ascending (those whose clipped box has an area)
    boxes: np.ndarray  # (n, 4) clipped boxes, normalized [ymin, xmin, ymax, xmax]
    scores: np.ndarray  # (n,)
    kept: np.ndarray  # positions selected by NMS, best first
    suppressed_by: dict[int, tuple[int, float]]  # position -> (position of the kept box that suppressed it, IoU)

    def decision(self, position: int) -> str:
        """Why the candidate at `position` was kept or not, in words."""
        if position in self.suppressed_by:
            by, iou = self.suppressed_by[position]
            return f"suppressed by anchor {self.anchors[by]} (IoU {iou:.3f} > {float(IOU_THRESHOLD):.1f})"
        if position in self.kept:
            return f"kept ({_ordinal(int(np.flatnonzero(self.kept == position)[0]) + 1)} selected)"
        return f"not reached ({len(self.kept)} selected, the per-class limit)"


@dataclass(frozen=True)
class Explanation:
    """What the reference computes for one image, as the page shows it."""
    rgb: np.ndarray  # (H, W, 3) uint8, the original image
    trace: dict[str, np.ndarray]  # every tensor of `model.tf_outputs`, by TF node name
    detection_out: np.ndarray  # (1, 1, 100, 7) `model.detection_out` of the OpenCV-resized BGR image
    classes: list[ClassNms]  # the classes with at least one score > 0.3, by class id
    seconds: float  # time the reference took for both runs


def explain(rgb: np.ndarray, weights: dict[str, np.ndarray]) -> Explanation:
    """Run the reference on one (H, W, 3) uint8 RGB image: TF's outputs with the full trace, OpenVINO's
    `detection_out` (as an OpenVINO user feeds it: `cv2.resize` to 300x300, BGR), and per-class NMS decisions."""
    start = time.perf_counter()
    trace: dict[str, np.ndarray] = {}
    model.tf_outputs(rgb, weights, trace)
    bgr300 = np.ascontiguousarray(preprocess.resize_bilinear_cv2(rgb)[:, :, ::-1])
    detection_out = model.detection_out(bgr300, weights)
    boxes, scores = trace["Postprocessor/Decode/transpose_1"], trace["Postprocessor/Slice"][0]  # (1917, 4), (1917, 90)
    classes = []
    for k in range(scores.shape[1]):
        above = int(np.count_nonzero(scores[:, k] > SCORE_THRESHOLD))
        if above:
            suppressed_by: dict[int, tuple[int, float]] = {}
            anchors, clipped, class_scores, kept = postprocess.class_nms(boxes, scores[:, k], suppressed_by)
            classes.append(ClassNms(k + 1, above, anchors, clipped, class_scores, kept, suppressed_by))
    return Explanation(rgb, trace, detection_out, classes, time.perf_counter() - start)


# --- small formatting helpers ---------------------------------------------------------------------------------

def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _name(class_id: int) -> str:
    return COCO_LABELS.get(int(class_id), str(int(class_id)))


def _values(values: np.ndarray, digits: int = 4) -> str:
    return ", ".join(f"{float(v):.{digits}f}" for v in values)


def _shape(shape: tuple[int, ...]) -> str:
    return "×".join(str(s) for s in shape)


def _reference(functions: list[str], nodes: list[str]) -> Html:
    """The "computed by" box: reference functions and TF node names."""
    return tag("div", join([tag("strong", "Reference: "), join((code(f) for f in functions), ", "),
                            Html("<br>"), tag("strong", "TF nodes: "), join((code(n) for n in nodes), ", ")], ""),
               class_="ref")


def _node_suffix(k: int) -> str:
    """TF's suffix of the k-th (0-based) copy of a node in the per-class loop: "" for 0, else "_k"."""
    return f"_{k}" if k else ""


def _scaled(boxes: np.ndarray, image: ImageRef) -> np.ndarray:
    """Normalized [ymin, xmin, ymax, xmax] -> pixels of `image`."""
    return np.asarray(boxes, np.float64) * [image.height, image.width, image.height, image.width]


def _margin(boxes: np.ndarray) -> float:
    """The room (fraction of the image) that normalized `boxes` need beyond the image, rounded up to 0.05."""
    beyond = max(0.0, -float(np.min(boxes)), float(np.max(boxes)) - 1.0)
    return float(np.ceil(beyond / 0.05) * 0.05) + (0.02 if beyond else 0.0)


def anchor_layout() -> list[tuple[int, int, int]]:
    """Per feature map: (grid size, anchors per cell, index of its first anchor in the 1917)."""
    layout, first = [], 0
    for size, specs in zip(FEATURE_MAP_SIZES, layer_box_specs()):
        layout.append((size, len(specs), first))
        first += size * size * len(specs)
    return layout


def locate_anchor(index: int) -> tuple[int, int, int, int]:
    """Anchor index -> (feature map, row, column, anchor type): index = first + (row * size + col) * A + type."""
    for layer, (size, per_cell, first) in reversed(list(enumerate(anchor_layout()))):
        if index >= first:
            cell, kind = divmod(index - first, per_cell)
            return (layer, *divmod(cell, size), kind)
    raise ValueError(f"anchor index {index} < 0")


def network_stride(node: str) -> int:
    """Input pixels per step of the map `node` (`SCOPE/<layer>/...`): the product of the strides before it.
    An `expansion_output` comes before its block's (strided) depthwise convolution."""
    layer, stride = node.split("/")[2], 1
    for name, _kind, layer_stride, _expansion, _out in ARCHITECTURE:
        if name == layer:
            return stride if node.endswith("expansion_output") else stride * layer_stride
        stride *= layer_stride
    raise ValueError(f"{node} is not a layer of {SCOPE}")


# --- the sections -------------------------------------------------------------------------------------------

def _input_section(ex: Explanation, original: ImageRef, resized: ImageRef) -> Section:
    height, width = ex.rgb.shape[:2]
    tensors = [("image_tensor", ex.rgb[None].astype(np.float32)),
               *((n, ex.trace[n]) for n in ("Preprocessor/map/TensorArrayStack/TensorArrayGatherV3",
                                            "Preprocessor/mul", "Preprocessor/sub"))]
    rows = [(code(name), _shape(t.shape), f"{t.min():.4f}", f"{t.max():.4f}", f"{t.mean():.4f}") for name, t in tensors]
    sub = ex.trace["Preprocessor/sub"]
    body = join([
        _reference(["ssd_np.reference.preprocess:preprocess", "ssd_np.reference.preprocess:resize_bilinear_tf"],
                   ["image_tensor", "Preprocessor/map/TensorArrayStack/TensorArrayGatherV3", "Preprocessor/mul",
                    "Preprocessor/sub"]),
        paragraph(f"The network takes one fixed input size, 300×300 pixels. The image ({width}×{height}) is "
                  f"resized to it with TF1's bilinear ResizeBilinear: x is scaled by 300/{width} = "
                  f"{IMAGE_SIZE / width:.3f} and y by 300/{height} = {IMAGE_SIZE / height:.3f}, so the aspect ratio "
                  "is not kept and the image is stretched or squeezed (",
                  code("fixed_shape_resizer"), " in ", code("pipeline.config"), ")."),
        paragraph("Why stretch rather than pad? The model was trained on images stretched in exactly this way, so "
                  "it expects stretched objects; and a box found in the 0..1 coordinates of the stretched image "
                  "maps back to the original by multiplying by its height and width, with no padding to undo."),
        tag("div", join([figure(svg_boxes(original, [], max(min(original.width, 480), 240)),
                                f"The original image, {width}×{height} pixels."),
                         figure(svg_boxes(resized, [], 300),
                                "The network's input: the same image stretched to 300×300 (values rounded to "
                                "0..255 for display).")]), class_="row"),
        paragraph("Then every value v (0..255) becomes (2/255)·v − 1, in [−1, 1]: ", code("Preprocessor/mul"),
                  " and ", code("Preprocessor/sub"), ". MobileNetV2 was trained on inputs in this range."),
        table(["tensor", "shape", "min", "max", "mean"], rows, id="value-range"),
        figure(svg_histogram(sub.ravel(), np.linspace(-1, 1, 52), "value after (2/255)·v − 1",
                             "values", bar_label=f"the {sub.size:,} values of Preprocessor/sub (R, G and B)"),
               "Histogram of the network's input values."),
    ])
    return Section("input", "Input and preprocessing", body)


def _heat_maps(title: Html, node: str, feature_map: np.ndarray) -> Html:
    """The HEAT_CHANNELS channels of (H, W, C) `feature_map` that vary most over the image, as heat maps on
    one colour scale (the map's own min to max), under `title`."""
    spread, peak = feature_map.std(axis=(0, 1)), feature_map.max(axis=(0, 1))
    channels = np.lexsort((peak, spread))[::-1][:HEAT_CHANNELS]  # most varied first; ties: highest peak
    lo, hi = float(feature_map.min()), float(feature_map.max())
    cells = [tag("div", join([img(heat_rgb(feature_map[:, :, c], lo, hi), f"{node} channel {c}", HEAT_WIDTH, True),
                              Html("<br>"), f"channel {c}"]), class_="heat") for c in channels]
    return tag("div", join([tag("h3", title), tag("div", join([*cells, heat_legend(lo, hi, "value", 160)], ""),
                                                   class_="row")]))


def _backbone_section(ex: Explanation) -> Section:
    maps = [ex.trace[node][0] for node in FEATURE_MAP_NODES]
    rows = [(i, code(node), _shape(m.shape), network_stride(node), f"{IMAGE_SIZE / m.shape[0]:.1f}")
            for i, (node, m) in enumerate(zip(FEATURE_MAP_NODES, maps))]
    sizes = [IMAGE_SIZE] + [ex.trace[f"{SCOPE}/{name}/output" if kind == "expanded_conv" else f"{SCOPE}/{name}/Relu6"]
                            .shape[1] for name, kind, stride, _e, _o in ARCHITECTURE if stride == 2]
    early = join(_heat_maps(join([code(node), f" — {_shape(ex.trace[node].shape[1:])}"], ""), node, ex.trace[node][0])
                 for node in EARLY_MAPS)
    six = join(_heat_maps(join([f"Map {i}: ", code(node), f" — {_shape(m.shape)}"], ""), node, m)
               for i, (node, m) in enumerate(zip(FEATURE_MAP_NODES, maps)))
    body = join([
        _reference(["ssd_np.reference.mobilenet_v2:feature_maps"], list(FEATURE_MAP_NODES)),
        paragraph("The backbone, MobileNetV2 plus four extra layers SSD adds, turns the image into feature maps: "
                  "grids of vectors in which every channel is a learned detector of some pattern. Each stride-2 "
                  "layer halves the grid (SAME padding rounds up): ", " → ".join(map(str, sizes)), "."),
        paragraph("Early maps are large and respond to edges and colours; deeper maps are coarse and respond to "
                  "whole object parts. SSD reads six maps, from fine (19×19: small objects) to coarse (1×1: an "
                  "object filling the image): two from MobileNetV2 itself, four from the extra layers ",
                  code("layer_19_*"), ". Each 3×3 box predictor (section 4) looks at one of them."),
        table(["map", "TF node (read by BoxPredictor_<map>)", "shape H×W×C", "network stride (px)",
               "cell = 300/H (px)"], rows, id="feature-maps"),
        paragraph(f"Below, {HEAT_CHANNELS} channels of each map: those that vary most over the image (for the "
                  "1×1 map, the strongest). Dark is low, yellow high, on one scale per map (printed beside it); "
                  "ReLU6 keeps the six maps' values in 0..6. First two maps on the way there:"),
        early, six,
    ])
    return Section("backbone", "Backbone: feature maps", body)


def _anchors_section(resized: ImageRef) -> Section:
    anchors = ssd_anchors()  # (1917, 4)
    layout = anchor_layout()
    counts = [size * size * per_cell for size, per_cell, _ in layout]
    panels = []
    for layer, ((size, per_cell, first), specs) in enumerate(zip(layout, layer_box_specs())):
        row = col = (size - 1) // 2
        cell = first + (row * size + col) * per_cell + np.arange(per_cell)
        step = IMAGE_SIZE / size
        boxes = [Box(row * step, col * step, (row + 1) * step, (col + 1) * step, "#ffffff",
                     fill="rgba(255,255,255,0.45)", tooltip=f"cell (row {row}, col {col})")]
        boxes += [Box(*_scaled(anchors[i], resized), CATEGORICAL[t], tooltip=f"anchor {i}: type {t}")
                  for t, i in enumerate(cell)]
        types = [(join([swatch(CATEGORICAL[t]), t], ""), f"{scale:.4f}", f"{ratio:.4f}",
                  f"{IMAGE_SIZE * scale / np.sqrt(ratio):.1f} × {IMAGE_SIZE * scale * np.sqrt(ratio):.1f}")
                 for t, (scale, ratio) in enumerate(specs)]
        panels.append(tag("div", join([
            tag("h3", f"Map {layer}: {size}×{size} grid, {per_cell} anchors per cell"),
            svg_boxes(resized, boxes, 320, margin=_margin(anchors[cell]), grid=(size, size), faded=True),
            table(["type", "scale s", "aspect a = w/h", "h × w (px of 300)"], types,
                  caption=f"anchors {cell[0]}..{cell[-1]} of cell (row {row}, col {col}); this map: anchors "
                          f"{first}..{first + counts[layer] - 1}")])))
    total = " + ".join(f"{size}×{size}×{per_cell}" for size, per_cell, _ in layout)
    count_rows = [(i, f"{size}×{size}", per_cell, f"{size}×{size}×{per_cell}", n, first, first + n - 1)
                  for i, ((size, per_cell, first), n) in enumerate(zip(layout, counts))]
    count_rows.append(("all", "", "", "", sum(counts), 0, sum(counts) - 1))
    ratios = ", ".join(f"{r:g}" for r in ASPECT_RATIOS)
    body = join([
        _reference(["ssd_np.reference.anchors:ssd_anchors", "ssd_np.reference.anchors:grid_anchors",
                    "ssd_np.reference.anchors:layer_box_specs"],
                   ["MultipleGridAnchorGenerator/*", "Concatenate/concat"]),
        paragraph("An anchor is a fixed box the model starts from: for every anchor it predicts how to move and "
                  "resize it (section 4) and how likely each class is inside. Anchors sit on the cells of the six "
                  "grids, centred on each cell, several shapes per cell."),
        paragraph("Shapes come from ", code("pipeline.config"), " (", code("ssd_anchor_generator"),
                  f"): min_scale {MIN_SCALE}, max_scale {MAX_SCALE}, aspect ratios {ratios}. Map i has the scale "
                  f"s_i = {MIN_SCALE} + ({MAX_SCALE} − {MIN_SCALE})·i/5 (a fraction of the image side) and an "
                  "anchor of height s/√a and width s·√a for each aspect ratio a, plus one square anchor of scale "
                  "√(s_i·s_(i+1)). The first map keeps only three: (0.1, 1), (0.2, 2) and (0.2, 0.5) (",
                  code("reduce_boxes_in_lowest_layer"), ")."),
        paragraph("Coordinates are normalized [ymin, xmin, ymax, xmax] in 0..1 of the (stretched) input, so "
                  "square anchors are square on the 300×300 input, not on the original image. Large anchors reach "
                  "beyond the image (the black frame). Each panel shows the grid and the anchors of its middle "
                  "cell."),
        tag("div", join(panels), class_="row"),
        table(["map", "grid", "anchors per cell", "size×size×A", "anchors", "first index", "last index"],
              count_rows, id="anchor-counts", caption="How many anchors"),
        tag("pre", f"{total}\n= {' + '.join(map(str, counts))} = {sum(counts)} anchors "
                   f"(Concatenate/concat: {_shape(anchors.shape)})"),
        paragraph("Anchor index = first index of its map + (row × size + column) × anchors per cell + type: the "
                  "order in which the predictors' outputs are reshaped and concatenated."),
    ])
    return Section("anchors", "Anchors", body)


def _decode_example(ex: Explanation, index: int) -> Html:
    """Box decoding written out with the numbers of one anchor."""
    ymin, xmin, ymax, xmax = (float(v) for v in ex.trace["Concatenate/concat"][index])
    ty, tx, th, tw = (float(v) for v in ex.trace["concat"][0, index, 0])
    ha, wa = ymax - ymin, xmax - xmin
    yca, xca = ymin + ha / 2, xmin + wa / 2
    sy, sx, sh, sw = (float(s) for s in SCALE_FACTORS)
    yc, xc = ty / sy * ha + yca, tx / sx * wa + xca
    h, w = np.exp(th / sh) * ha, np.exp(tw / sw) * wa
    decoded = ex.trace["Postprocessor/Decode/transpose_1"][index]
    return tag("pre", "\n".join([
        f"anchor {index}:  [ymin, xmin, ymax, xmax] = [{_values([ymin, xmin, ymax, xmax])}]",
        f"   ha = ymax − ymin = {ha:.4f}    wa = xmax − xmin = {wa:.4f}",
        f"   yca = ymin + ha/2 = {yca:.4f}   xca = xmin + wa/2 = {xca:.4f}",
        f"encoding (concat):  [ty, tx, th, tw] = [{_values([ty, tx, th, tw])}]",
        f"   yc = ty/{sy:g} · ha + yca = {yc:.4f}     xc = tx/{sx:g} · wa + xca = {xc:.4f}",
        f"   h  = exp(th/{sh:g}) · ha  = {h:.4f}     w  = exp(tw/{sw:g}) · wa  = {w:.4f}",
        f"box = [yc − h/2, xc − w/2, yc + h/2, xc + w/2] = "
        f"[{_values([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2])}]",
        f"      Postprocessor/Decode/transpose_1[{index}] = [{_values(decoded)}]   (TF's float32 arithmetic)"]))


def _predictions_section(ex: Explanation, resized: ImageRef, detected_anchors: set[int]) -> Section:
    scores = ex.trace["Postprocessor/Slice"][0]  # (1917, 90)
    best = scores.max(axis=1)  # (1917,)
    best_class = scores.argmax(axis=1) + 1
    ranked = np.argsort(-best, kind="stable")
    top = ranked[:TOP_ANCHORS]
    anchors, decoded = ex.trace["Concatenate/concat"], ex.trace["Postprocessor/Decode/transpose_1"]
    encodings = ex.trace["concat"][0, :, 0]  # (1917, 4)
    above = int(np.count_nonzero(best > SCORE_THRESHOLD))
    drawn = top[:5]
    boxes = []
    for rank, i in enumerate(drawn):
        colour = CATEGORICAL[rank]
        boxes += [Box(*_scaled(anchors[i], resized), colour, dashed=True, tooltip=f"#{rank + 1}: anchor {i}"),
                  Box(*_scaled(decoded[i], resized), colour, label=f"#{rank + 1}",
                      tooltip=f"#{rank + 1}: decoded box of anchor {i}, {_name(best_class[i])} {best[i]:.3f}")]
    rows = []
    for rank, i in enumerate(top):
        layer, row, col, kind = locate_anchor(int(i))
        rows.append((join([swatch(CATEGORICAL[rank]) if rank < len(drawn) else "", rank + 1], ""), i,
                     f"map {layer}, cell ({row}, {col}), type {kind}", _values(anchors[i], 3),
                     _values(encodings[i], 3), _values(decoded[i], 3), _name(best_class[i]), f"{best[i]:.4f}"))
    heads = [(i, _shape(ex.trace[f"BoxPredictor_{i}/BoxEncodingPredictor/BiasAdd"].shape[1:]),
              _shape(ex.trace[f"BoxPredictor_{i}/ClassPredictor/BiasAdd"].shape[1:]))
             for i in range(len(FEATURE_MAP_NODES))]
    shown = ranked[:RANKED]
    detected = [r for r, i in enumerate(shown) if int(i) in detected_anchors]
    marks = [Mark(float(above), float(best[ranked[above - 1]]), f"{above} anchors over {float(SCORE_THRESHOLD):.1f}")] \
        if 0 < above < RANKED else []
    body = join([
        _reference(["ssd_np.reference.box_predictor:predict", "ssd_np.reference.box_coder:decode",
                    "ssd_np.reference.box_coder:scores"],
                   ["BoxPredictor_<i>/BoxEncodingPredictor/BiasAdd", "BoxPredictor_<i>/ClassPredictor/BiasAdd",
                    "concat", "concat_1", "Postprocessor/Decode/transpose_1", "Postprocessor/convert_scores",
                    "Postprocessor/Slice"]),
        paragraph("On each of the six maps, two 3×3 convolutions predict, for every anchor of every cell, 4 box "
                  f"numbers [ty, tx, th, tw] and {NUM_CLASSES_WITH_BACKGROUND} class logits (class 0 is "
                  "background). Their outputs are reshaped to one row per anchor and concatenated: ",
                  code("concat"), " (1917 × 4) and ", code("concat_1"), f" (1917 × {NUM_CLASSES_WITH_BACKGROUND})."),
        table(["map", "BoxEncodingPredictor H×W×(A·4)", "ClassPredictor H×W×(A·91)"], heads, id="heads"),
        paragraph("The box numbers say how to move the anchor's centre (in units of its size, divided by 10) and "
                  "how to scale its height and width (exponentially, divided by 5); each class score is the "
                  "sigmoid of its logit, independently of the other classes:"),
        tag("pre", "ha = ymax_a − ymin_a        wa = xmax_a − xmin_a        (the anchor's height and width)\n"
                   "yca = ymin_a + ha/2         xca = xmin_a + wa/2         (its centre)\n"
                   "yc = ty/10 · ha + yca       xc = tx/10 · wa + xca       (the box's centre)\n"
                   "h  = exp(th/5) · ha         w  = exp(tw/5) · wa         (its size)\n"
                   "box = [yc − h/2, xc − w/2, yc + h/2, xc + w/2]\n"
                   "score[class] = sigmoid(logit[class]) = 1 / (1 + exp(−logit[class]))"),
        tag("h3", "The anchor with the highest class score, worked out"),
        _decode_example(ex, int(top[0])),
        tag("h3", f"The {TOP_ANCHORS} best anchors"),
        paragraph("Each anchor's best class score (background excluded), highest first. In the figure, each of the "
                  "first five anchors is dashed and its decoded box solid, in the same colour."),
        figure(svg_boxes(resized, boxes, 480, margin=_margin(np.concatenate([anchors[drawn], decoded[drawn]])),
                         faded=True),
               join([swatch(COLOURS["muted"], dashed=True), "anchor  ", swatch(COLOURS["muted"]),
                     "decoded box (on the 300×300 input)"], "")),
        table(["rank", "anchor", "where", "anchor box", "encoding ty, tx, th, tw", "decoded box", "best class",
               "score"], rows, id="top-anchors"),
        tag("h3", "How few anchors pass the threshold"),
        paragraph(f"Of the {len(best)} anchors, {above} have a class score above {float(SCORE_THRESHOLD):.1f} "
                  "(the post-processing's score threshold); all others are dropped before NMS. Most anchors are "
                  "background: their best class score is close to 0."),
        tag("div", join([
            figure(svg_histogram(best, np.linspace(0, 1, 51), "best class score of the anchor", "anchors (log)",
                                 rule=Rule(float(SCORE_THRESHOLD), f"score threshold {float(SCORE_THRESHOLD):.1f}"),
                                 log_y=True, bar_label="anchors", width=500),
                   f"Best class score of each of the {len(best)} anchors (counts on a log scale)."),
            figure(svg_plot([Series("best class score", np.arange(1, len(shown) + 1), best[shown],
                                    COLOURS["accent"]),
                             Series("anchor of a final detection", [r + 1 for r in detected],
                                    [best[shown[r]] for r in detected], COLOURS["kept"], line=False, dots=True)],
                            "rank", "score", rules=[Rule(float(SCORE_THRESHOLD), "threshold")], marks=marks,
                            width=500),
                   f"The {len(shown)} best anchors by score: the curve falls below the threshold quickly.")]),
            class_="row"),
    ])
    return Section("predictions", "Predictions: boxes and class scores", body)


def _nms_section(ex: Explanation, original: ImageRef) -> Section:
    summary = [(c.class_id, _name(c.class_id), c.above, c.above - len(c.anchors), len(c.anchors), len(c.kept),
                len(c.suppressed_by), len(c.anchors) - len(c.kept) - len(c.suppressed_by)) for c in ex.classes]
    drawn = sorted(ex.classes, key=lambda c: (-len(c.suppressed_by), -len(c.anchors), c.class_id))[:NMS_FIGURES]
    panels = []
    for c in sorted(drawn, key=lambda c: c.class_id):
        k = c.class_id - 1
        order = np.argsort(-c.scores, kind="stable")  # NMS's priority order
        pixels = _scaled(c.boxes, original)
        boxes = [Box(*pixels[p], COLOURS["dropped"], dashed=True, tooltip=f"anchor {c.anchors[p]}: {c.decision(p)}")
                 for p in order[::-1] if p not in c.kept]
        boxes += [Box(*pixels[p], COLOURS["kept"], label=f"{c.scores[p]:.2f}" if rank < LABELLED else "",
                      tooltip=f"anchor {c.anchors[p]}: {c.decision(p)}, score {c.scores[p]:.4f}")
                  for rank, p in reversed(list(enumerate(c.kept)))]
        rows = [(c.anchors[p], f"{c.scores[p]:.4f}", _values(c.boxes[p], 3), c.decision(int(p)))
                for p in order[:NMS_ROWS]]
        more = f" (the first {NMS_ROWS} of {len(order)})" if len(order) > NMS_ROWS else ""
        panels.append(tag("div", join([
            tag("h3", f"{_name(c.class_id)} (class {c.class_id}): {_count(len(c.anchors), 'candidate')}, "
                      f"{len(c.kept)} kept, {len(c.suppressed_by)} suppressed"),
            tag("p", join(["TF nodes (k = ", k, "): ", code(f"FilterGreaterThan{_node_suffix(k)}"), ", ",
                           code(f"ClipToWindow{_node_suffix(k)}"), ", ",
                           code(f"non_max_suppression{_node_suffix(k)}/NonMaxSuppressionV2"), " under ",
                           code(NMS_SCOPE)], ""), class_="small"),
            tag("div", join([svg_boxes(original, boxes, 420),
                             table(["anchor", "score", "clipped box", "decision"], rows, id=f"nms-class-{c.class_id}",
                                   caption=f"Candidates by score{more}")]), class_="row")])))
    total_kept = sum(len(c.kept) for c in ex.classes)
    body = join([
        _reference(["ssd_np.reference.postprocess:class_nms (called by multiclass_nms)",
                    "ssd_np.reference.nms:non_max_suppression_v2", "ssd_np.reference.nms:iou_tf"],
                   [f"{NMS_SCOPE}/FilterGreaterThan_k", f"{NMS_SCOPE}/ClipToWindow_k",
                    f"{NMS_SCOPE}/non_max_suppression_k/NonMaxSuppressionV2"]),
        paragraph("Neighbouring anchors often find the same object, so the decoded boxes come in clusters. "
                  "Non-maximum suppression keeps the best box of each cluster. It runs separately for each of the "
                  "90 classes (k = 0..89 in the node names, no suffix for k = 0):"),
        tag("ol", join([
            tag("li", f"candidates: the anchors whose score for this class is above {float(SCORE_THRESHOLD):.1f} "
                      "(FilterGreaterThan_k), in anchor order;"),
            tag("li", "their decoded boxes are clipped to the image [0, 1] (ClipToWindow_k); a box left with no "
                      "area is dropped;"),
            tag("li", "greedy selection (NonMaxSuppressionV2): take the highest-scoring candidate left, keep it, and "
                      f"remove every remaining candidate whose IoU (intersection over union) with it is above "
                      f"{float(IOU_THRESHOLD):.1f}; repeat until none is left or 100 are kept."),
        ])),
        paragraph(f"{len(ex.classes)} classes have candidates; {sum(len(c.anchors) for c in ex.classes)} candidates "
                  f"in all, {total_kept} kept."),
        table(["class", "name", "score > 0.3", "dropped by clipping", "candidates", "kept", "suppressed",
               "not reached"], summary, id="nms-summary", caption="Per class"),
        paragraph(join([f"The {len(drawn)} classes with the most suppressions (then the most candidates), drawn on "
                        "the original image: ", swatch(COLOURS["kept"]), f"kept (the best {LABELLED} labelled with "
                        "their scores), ", swatch(COLOURS["dropped"], dashed=True),
                        "suppressed; hover a box for its decision."], "")),
        join(panels),
    ])
    return Section("nms", "Non-maximum suppression", body)


def _detections_section(ex: Explanation, original: ImageRef) -> Section:
    count = int(ex.trace["num_detections"][0])
    boxes = ex.trace["detection_boxes"][0, :count]
    scores = ex.trace["detection_scores"][0, :count]
    classes = ex.trace["detection_classes"][0, :count].astype(int)
    drawn = [Box(*b, hex_colour(class_colour(c)), label=f"{_name(c)} {s:.2f}" if rank < LABELLED else "",
                 tooltip=f"{_name(c)} {s:.4f}")
             for rank, (b, c, s) in reversed(list(enumerate(zip(_scaled(boxes, original), classes, scores))))]
    height, width = ex.rgb.shape[:2]
    pixel_boxes = _scaled(boxes, ImageRef("", height, width))
    rows = [(i, c, _name(c), f"{s:.4f}", _values(b), _values(p, 1))
            for i, (c, s, b, p) in enumerate(zip(classes, scores, boxes, pixel_boxes))]
    out = ex.detection_out[0, 0]  # (100, 7)
    ended = out[:, 0] == -1
    out_count = int(np.argmax(ended)) if ended.any() else len(out)
    out_rows = [(i, f"{r[0]:g}", f"{r[1]:g}", _name(r[1]) if r[0] >= 0 else "(end of list)", f"{r[2]:.4f}",
                 _values(r[3:])) for i, r in enumerate(out[:out_count + 1])]
    kept = sum(len(c.kept) for c in ex.classes)
    body = join([
        _reference(["ssd_np.reference.postprocess:tf_outputs", "ssd_np.reference.model:detection_out"],
                   [f"{NMS_SCOPE}/SortByField/TopKV2", "detection_boxes", "detection_scores", "detection_classes",
                    "num_detections", "DetectionOutput (OpenVINO)"]),
        paragraph(f"The {kept} boxes kept by the per-class NMS are sorted by score over all classes (TopKV2, ties to "
                  "the earlier class), and the best 100 are kept. They are TF's four outputs, padded with zeros to 100 "
                  f"rows: here num_detections = {count}. Boxes are the clipped ones, normalized [ymin, xmin, ymax, "
                  "xmax]; multiplied by the original image's height and width they give pixels."),
        figure(svg_boxes(original, drawn, 640),
               join([f"The {_count(count, 'detection')} on the original image ({width}×{height}), one colour per "
                     "class as ", code("ssd-np detect --draw"), " draws them",
                     f"; the best {LABELLED} labelled (hover a box for its class and score)." if count > LABELLED
                     else "."], "")),
        table(["row", "detection_classes", "name", "detection_scores", "detection_boxes (normalized)",
               "in pixels (ymin, xmin, ymax, xmax)"], rows, id="tf-outputs",
              caption=f"TF's outputs (the first num_detections = {count} rows)"),
        tag("h3", "The same model as OpenVINO computes it: detection_out"),
        paragraph("OpenVINO's converted model ends in one ", code("DetectionOutput"), " layer with one output, ",
                  code("detection_out"), " (1 × 1 × 100 × 7): rows [image_id, label, confidence, xmin, ymin, "
                  "xmax, ymax], x before y, grouped by class, and the row after the last detection has image_id −1. "
                  "Its input is what an OpenVINO user feeds: the image resized to 300×300 by OpenCV (in uint8) and "
                  "in BGR order, and its exp and sigmoid differ from TF's in the last bits, so its scores and boxes "
                  "can differ slightly from TF's; it also applies its 100-box limit per class before NMS. "
                  f"Here it reports {_count(out_count, 'detection')}, TF {count}."),
        table(["row", "image_id", "label", "name", "confidence", "xmin, ymin, xmax, ymax"], out_rows,
              id="detection-out", caption="detection_out (rows up to the end marker)"),
    ])
    return Section("detections", "Detections", body)


def _display_copy(rgb: np.ndarray) -> np.ndarray:
    """The original image at most DISPLAY_MAX pixels wide or high (boxes are drawn in normalized coordinates)."""
    height, width = rgb.shape[:2]
    scale = DISPLAY_MAX / max(height, width)
    if scale >= 1:
        return rgb
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))


def _weights_warning(source: str, genuine: bool) -> Html:
    if source.startswith("stand-in"):
        return tag("div", join([
            tag("strong", "STAND-IN WEIGHTS: these detections are not real."), " ",
            f"The weights ({source}) are seeded random numbers in the genuine model's shapes, made to test the "
            "code. Every map, score and box below is what the model computes with them: the mechanics are real, "
            "the objects found are not. Get the genuine weights with ", code("ssd-np weights fetch"), "."], ""),
            class_="warning")
    if not genuine:
        return tag("div", join([tag("strong", "These are not the genuine release weights."), " ",
                                f"The weights ({source}) differ from ssd_mobilenet_v2_coco_2018_03_29's, so the "
                                "detections are not the released model's."], ""), class_="warning")
    return Html("")


def render(ex: Explanation, image_name: str, weights_name: str, source: str, genuine: bool) -> str:
    """The explain page for `ex` (from `explain`): one self-contained HTML document."""
    shared = SharedImages()
    original = shared.add("original", _display_copy(ex.rgb))
    resized_uint8 = np.clip(np.rint(ex.trace["Preprocessor/map/TensorArrayStack/TensorArrayGatherV3"][0]), 0, 255)
    resized = shared.add("input", resized_uint8.astype(np.uint8))
    detected_anchors = {int(c.anchors[p]) for c in ex.classes for p in c.kept}
    height, width = ex.rgb.shape[:2]
    count = int(ex.trace["num_detections"][0])
    stand_in = source.startswith("stand-in")
    header = join([
        _weights_warning(source, genuine),
        paragraph(f"This page follows the image {image_name} ({width}×{height}) through ssd_mobilenet_v2_coco "
                  f"(TensorFlow release 2018_03_29), weights {weights_name}, stage by stage in the order of the "
                  f"graph. Everything shown is computed by ssd_np's plain-NumPy reference (", code("ssd_np.reference"),
                  f"), in {ex.seconds:.2f} s, and named after the TF graph nodes that compute the same tensors; "
                  f"the fast engine behind ", code("ssd-np detect"), " gives the same numbers. Result: ",
                  tag("strong", f"{count} detection{'s' if count != 1 else ''}"),
                  " (stand-in weights: not real)." if stand_in else "."),
    ])
    sections = [_input_section(ex, original, resized), _backbone_section(ex), _anchors_section(resized),
                _predictions_section(ex, resized, detected_anchors), _nms_section(ex, original),
                _detections_section(ex, original)]
    title = f"How SSD sees {image_name}" + (" (stand-in weights: detections not real)" if stand_in else "")
    return page(title, sections, header, shared)
