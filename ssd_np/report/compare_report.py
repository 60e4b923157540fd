"""`ssd-np compare --html REPORT.html`: the comparison of two traces as one self-contained page.

Sections, built with the toolkit `html.py` (no network, no scripts):
1. Verdict: pass or fail, the preset and its rule, where divergence starts, the local failures (--isolate), the
   detection verdicts.
2. Error by depth: per tensor in graph order, the scale-relative error max|c - r| / max|r| (log scale) and the
   SQNR in dB, the candidate's total error against the reference and, with --isolate, its local error against
   the reference node recomputed from the candidate's own inputs; the first divergence and the local failures
   are circled.
3. Layout findings: conventions undone before comparing (NCHW, BGR, xy boxes, ...), tensors only one trace has,
   metadata hashes that differ.
4. Detections: the reference's detections (solid) and the candidate's (dashed) drawn on the traced image, the
   matched pairs with their deltas, unmatched and extra detections; `concat`, `concat_1` (before NMS) on their own.
5. Every tensor: the table `ssd-np compare` prints, with the local columns.
The report reads a `compare.Report` (and its DetectionVerdicts) only; it draws on the image named by
`report.isolation["image"]` when there is one, else on a gray 300x300 canvas.
"""
from __future__ import annotations

import itertools

import numpy as np

from ssd_np.coco_labels import COCO_LABELS
from ssd_np.reference.mobilenet_v2 import SCOPE
from ssd_np.report.html import (COLOURS, Box, Html, Mark, Rule, Section, Series, SharedImages, code, figure, join,
                                page, paragraph, svg_boxes, svg_plot, swatch, table, tag)
from ssd_np.verify.compare import LAYOUTS, Report, TensorResult

SQNR_CAP_DB = 150.0   # identical tensors have infinite SQNR: plotted at the cap
DRAWING_WIDTH = 760   # the traced image with the detections, in CSS pixels
FEATURE_SCOPE = SCOPE + "/"   # shortened in the table of every tensor
REFERENCE_COLOUR, CANDIDATE_COLOUR = COLOURS["accent"], "#e66101"   # blue / orange: the two traces
STATUS_COLOURS = {"ok": COLOURS["kept"], "detections": COLOURS["kept"], "layout": CANDIDATE_COLOUR,
                  "fail": COLOURS["dropped"], "shape": COLOURS["dropped"]}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _status(t: TensorResult | None) -> Html:
    if t is None:
        return Html("-")
    text = {"ok": "ok", "detections": "by detections", "layout": f"layout {t.layout}", "fail": "FAIL",
            "shape": "SHAPE"}[t.status]
    if t.status == "fail" and t.layout:
        text += f" [{t.layout}]"
    return join([tag("strong", text, style=f"color: {STATUS_COLOURS[t.status]}"),
                 tag("span", f" {t.hint}", class_="small") if t.hint else ""], "")


def _verdict_section(report: Report) -> Html:
    first = report.first_failure
    parts = [paragraph(tag("strong", "PASS" if report.passed else "FAIL",
                           style=f"color: {COLOURS['kept'] if report.passed else COLOURS['dropped']}"),
                       f" (exit status {report.exit_code}): {len(report.compared)} tensors compared with the "
                       f"{report.preset.name} preset, ", code(report.preset.rule), "."),
             paragraph("reference: ", code(report.reference_label), tag("br", ""), "candidate: ",
                       code(report.candidate_label))]
    if first is not None:
        parts.append(paragraph(tag("strong", "Divergence starts at "), code(f"#{first.index} {first.name}"),
                               f" (max rel {_fmt(first.max_rel, '.3g')}, SQNR {_fmt(first.sqnr_db, '.1f')} dB)"
                               + (f"; {first.hint}" if first.hint else "")))
    if report.local:
        failures = report.local_failures
        parts.append(paragraph(
            tag("strong", f"Isolation: {len(failures)} local failure(s)"),
            f" among {len(report.local)} candidate tensors, each compared with the reference node recomputed from "
            f"the candidate's own inputs: ",
            join([code(t.name) for t in failures], ", ") if failures else
            "none: every difference is inherited from the inputs."))
    for verdict in report.detections:
        parts.append(paragraph(tag("strong", f"Detections ({verdict.format} format): "), verdict.summary(),
                               f" (candidate's detections from {verdict.source})."))
    if report.meta_reference.get("weights_genuine") is False or str(
            report.meta_reference.get("weights_source", "")).startswith("stand-in"):
        parts.append(tag("div", "The reference was traced with stand-in weights: its detections mean nothing about "
                                "real images; they only check that two runtimes compute the same thing.",
                         class_="info"))
    return join(parts)


def _depth_plots(report: Report) -> Html:
    compared = report.compared
    index = {t.name: t.index for t in compared}
    local = [(index[t.name], t) for t in report.local.values() if t.name in index]

    def series(metric, label, colour, rows):
        points = [(i, metric(t)) for i, t in rows if metric(t) is not None]
        return Series(label, [p[0] for p in points], [p[1] for p in points], colour, line=True, dots=len(points) < 60)

    def sqnr(t):
        return None if t.sqnr_db is None else min(t.sqnr_db, SQNR_CAP_DB)

    def rel(t):
        return t.max_rel

    rows = [(t.index, t) for t in compared]
    first = report.first_failure
    failures = [(index[t.name], t) for t in report.local_failures if t.name in index]
    plots = []
    for metric, label, log_y in ((rel, "max rel = max|c - r| / max|r|", True), (sqnr, "SQNR (dB)", False)):
        all_series = [series(metric, "candidate vs reference (total)", REFERENCE_COLOUR, rows)]
        if local:
            all_series.append(series(metric, "candidate vs recomputed from its inputs (local)", CANDIDATE_COLOUR,
                                     local))
        local_indices = {i for i, _ in failures}
        marks = []
        if first is not None and metric(first) is not None:
            also = " (local failure)" if first.index in local_indices else ""
            marks.append(Mark(first.index, metric(first), f"divergence starts: #{first.index}{also}"))
        marks += [Mark(i, metric(t), f"local failure #{i}", COLOURS["dropped"]) for i, t in failures
                  if (first is None or i != first.index) and metric(t) is not None and (not log_y or metric(t) > 0)]
        rules = ([Rule(report.preset.min_sqnr_db, f"preset minimum {report.preset.min_sqnr_db:g} dB")]
                 if metric is sqnr and report.preset.min_sqnr_db is not None else [])
        if any(len(s.x) for s in all_series):
            plots.append(svg_plot(all_series, "tensor # (graph order)", label, rules=rules, marks=marks,
                                  log_y=log_y, width=960, height=280))
    note = paragraph("Zero errors are not drawn on the log scale; identical tensors (infinite SQNR) are drawn at "
                     f"{SQNR_CAP_DB:g} dB. A layer that is wrong itself shows a local error as large as its "
                     "total error; a layer that only inherits error has a small local error.")
    return join([*plots, note])


def _layout_section(report: Report) -> Html:
    items = []
    for layout, names in report.layouts.items():
        described = "; ".join(LAYOUTS[part] for part in layout.split("+"))
        items.append(tag("li", join([code(layout), f": {described} ({len(names)} tensor(s), first ",
                                     code(names[0]), ")"], "")))
    if report.only_candidate:
        items.append(tag("li", f"only in the candidate ({len(report.only_candidate)}): "
                               + ", ".join(report.only_candidate[:20])))
    missing = report.only_reference
    if missing:
        items.append(tag("li", f"{len(missing)} reference tensor(s) not in the candidate (first: {missing[0]})"))
    if report.missing_required:
        items.append(tag("li", "required final output(s) missing: " + ", ".join(report.missing_required)))
    if report.meta_differences:
        items.append(tag("li", "metadata hashes differ (different image or weights?): "
                               + ", ".join(report.meta_differences)))
    if not items:
        return paragraph("No layout difference: every common tensor is in the trace format's convention.")
    return join([paragraph("A layout difference still fails: the trace format fixes the convention. Each tensor "
                           "was compared after undoing its own."), tag("ul", join(items))])


def _label(class_id: int) -> str:
    return COCO_LABELS.get(int(class_id), str(class_id))


def _image(report: Report) -> np.ndarray:
    path = report.isolation.get("image") if report.isolation else None
    if path:
        from ssd_np.images import load_rgb

        return load_rgb(path)
    return np.full((300, 300, 3), 200, np.uint8)


def _detection_boxes(verdict, height: int, width: int) -> list[Box]:
    """Reference boxes solid (labelled with their row number in the table), candidate boxes dashed; detections
    without a partner in their own colours, labelled with class and score."""
    def box(detections, i, colour, dashed, what, label):
        ymin, xmin, ymax, xmax = detections.boxes[i] * [height, width, height, width]
        name = f"{_label(detections.classes[i])} {detections.scores[i]:.2f}"
        return Box(ymin, xmin, ymax, xmax, colour, name if label is None else label, dashed,
                   tooltip=f"{what} #{i}: {name}")

    unmatched, extra = set(verdict.unmatched), set(verdict.extra)
    boxes = [box(verdict.candidate, j, COLOURS["threshold"] if j in extra else CANDIDATE_COLOUR, True,
                 "candidate" + (" (extra)" if j in extra else ""), None if j in extra else "")
             for j in range(len(verdict.candidate))]
    boxes += [box(verdict.reference, i, COLOURS["dropped"] if i in unmatched else REFERENCE_COLOUR, False,
                  "reference" + (" (unmatched)" if i in unmatched else ""), None if i in unmatched else str(i))
              for i in range(len(verdict.reference))]
    return boxes


def _detections_section(report: Report, shared: SharedImages) -> Html:
    parts = []
    if report.detections:
        rgb = _image(report)
        image = shared.add("traced", rgb)
        legend = join([swatch(REFERENCE_COLOUR), "reference ", swatch(CANDIDATE_COLOUR, dashed=True), "candidate ",
                       swatch(COLOURS["dropped"]), "reference without partner ",
                       swatch(COLOURS["threshold"], dashed=True), "candidate extra"], "")
    for verdict in report.detections:
        boxes = _detection_boxes(verdict, rgb.shape[0], rgb.shape[1])
        parts.append(tag("h3", f"{verdict.format} format: {'PASS' if verdict.passed else 'FAIL'}"))
        parts.append(paragraph(verdict.summary(), f". The candidate's detections come from {verdict.source}."))
        parts.append(figure(svg_boxes(image, boxes, width=DRAWING_WIDTH), legend))
        rows = [[m.reference, m.candidate, _label(m.label), f"{verdict.reference.scores[m.reference]:.4f}",
                 f"{m.score_delta:+.2e}", f"{m.iou:.4f}", f"{m.box_delta:.2e}",
                 "yes" if verdict.agrees(m) else tag("strong", "NO", style=f"color: {COLOURS['dropped']}")]
                for m in verdict.matches]
        rows += [[i, "-", _label(verdict.reference.classes[i]), f"{verdict.reference.scores[i]:.4f}", "-", "-", "-",
                  "borderline" if verdict.borderline(verdict.reference, i) else "unmatched"]
                 for i in verdict.unmatched]
        rows += [["-", j, _label(verdict.candidate.classes[j]), f"{verdict.candidate.scores[j]:.4f}", "-", "-", "-",
                  "borderline" if verdict.borderline(verdict.candidate, j) else "extra"] for j in verdict.extra]
        parts.append(table(["ref #", "cand #", "class", "ref score", "score delta", "IoU", "box delta", "agrees"],
                           rows, caption=f"matched by class and IoU >= {verdict.preset.match_iou:g}; agree when "
                                         f"|score delta| <= {verdict.preset.score_atol:g} and box delta <= "
                                         f"{verdict.preset.box_atol:g}"))
    for verdict in report.local_detections:
        parts.append(paragraph(tag("strong", "Post-processing alone: "), "the candidate's outputs against ssd_np's "
                               "post-processing of the candidate's own concat, concat_1: ", verdict.summary()))
    pre_nms = [t for t in report.compared if t.name in ("concat", "concat_1")]
    if pre_nms:
        parts.append(table(["tensor", "max rel", "cosine", "SQNR dB", "status"],
                           [[code(t.name), _fmt(t.max_rel, ".3g"), _fmt(t.cosine, ".6f"), _fmt(t.sqnr_db, ".1f"),
                             _status(t)] for t in pre_nms], caption="before NMS, compared on their own"))
    if not parts:
        return paragraph("No detection verdict: the reference or the candidate has no final outputs (nor concat, "
                         "concat_1).")
    return join(parts)


def _tensor_table(report: Report) -> Html:
    first = report.first_failure
    header = ["#", "tensor", "shape", "max abs", "max rel", "cosine", "SQNR dB", "mismatch", "status"]
    if report.local:
        header += ["local SQNR dB", "local"]
    rows = []
    for missing, run in itertools.groupby(report.results, key=lambda t: t.status == "missing"):
        run = list(run)
        if missing:
            rows.append(["", tag("em", f"... {len(run)} tensor(s) not in the candidate"), *[""] * (len(header) - 2)])
            continue
        for t in run:
            short = t.name.replace(FEATURE_SCOPE, "…/")
            name = tag("strong" if t is first else "span", short, title=t.name)
            row = [t.index, name, "×".join(map(str, t.shape)), _fmt(t.max_abs, ".2e"), _fmt(t.max_rel, ".2e"),
                   _fmt(t.cosine, ".6f"), _fmt(t.sqnr_db, ".1f"),
                   "-" if t.mismatch is None else f"{100 * t.mismatch:.3g}%", _status(t)]
            if report.local:
                local = report.local.get(t.name)
                row += [_fmt(local and local.sqnr_db, ".1f"), _status(local)]
            rows.append(row)
    return join([paragraph(code("…/"), " stands for ", code(FEATURE_SCOPE), "."), table(header, rows, id="tensors")])


def render(report: Report) -> str:
    """The whole page for `report` (a complete HTML document)."""
    shared = SharedImages()
    sections = [Section("depth", "Error by depth", _depth_plots(report)),
                Section("layouts", "Layout findings", _layout_section(report)),
                Section("detections", "Detections", _detections_section(report, shared)),
                Section("tensors", "Every tensor", _tensor_table(report))]
    title = f"ssd-np compare: {'PASS' if report.passed else 'FAIL'}"
    return page(title, sections, header=_verdict_section(report), shared=shared)

