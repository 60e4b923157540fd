"""Self-contained HTML: one file that opens in any browser with no network, no scripts and no fonts to fetch.

Everything a page shows is inside it: images as PNG data URIs (`png_data_uri`), plots as inline SVG
(`svg_histogram`, `svg_plot`), boxes drawn as SVG over an image (`svg_boxes`), tables (`table`), and one inline
style sheet (`page`). Every function returns `Html`, text that is already HTML; any other text given to them is
escaped (`escape`), so file names and labels cannot break the page.

Coordinates: images are (H, W, 3) uint8 RGB arrays; boxes are `[ymin, xmin, ymax, xmax]` in the image's
pixels (y down, x right), as `Detections.pixel_boxes`. Plots map data to pixels with y up.

An image drawn several times (e.g. under different boxes) is stored once: `SharedImages.add` returns an
`ImageRef` that `svg_boxes` draws with SVG `<use>`, and `page(..., shared=...)` writes the image once.
"""
from __future__ import annotations

import base64
import html
import io
import math
from typing import Iterable, NamedTuple, Sequence

import numpy as np
from PIL import Image


class Html(str):
    """Text that is already HTML: `escape` and the builders below insert it unchanged."""


def escape(text: object) -> Html:
    """`text` as HTML: `Html` as is, anything else converted with `str` and escaped (& < > " ')."""
    return text if isinstance(text, Html) else Html(html.escape(str(text)))


def join(parts: Iterable[object], separator: str = "\n") -> Html:
    """Concatenate `parts`, escaping those that are not `Html`."""
    return Html(separator.join(escape(part) for part in parts))


def tag(name: str, content: object = "", **attributes: object) -> Html:
    """`<name attr="value" ...>content</name>`; attribute values are escaped, `class_` is written `class`."""
    attrs = "".join(f' {key.rstrip("_").replace("_", "-")}="{escape(value)}"'
                    for key, value in attributes.items() if value is not None)
    return Html(f"<{name}{attrs}>{escape(content)}</{name}>")


# --- colours ------------------------------------------------------------------------------------------------

# Roles used consistently on every page (colour-blind safe pairs: blue/orange, green/red-purple).
COLOURS = {
    "accent": "#1f5f99",  # headings, links, the main series
    "kept": "#1a9850",  # what survives a step
    "dropped": "#c2185b",  # what a step removes
    "threshold": "#d62728",  # thresholds and limits
    "muted": "#8a8a8a",
}
# Distinct colours for items of one figure (Tableau 10).
CATEGORICAL = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
               "#9c755f", "#bab0ac")
# Viridis sampled at 9 points: dark blue (low) to yellow (high), readable in gray and by colour-blind readers.
_HEAT = np.array([[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129],
                  [92, 200, 99], [170, 220, 50], [253, 231, 37]], np.float64)


def hex_colour(rgb: Sequence[int]) -> str:
    """(r, g, b) 0..255 -> "#rrggbb"."""
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def heat_rgb(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """(H, W) values -> (H, W, 3) uint8 heat map: lo (and below) dark blue, hi (and above) yellow (viridis)."""
    t = np.clip((np.asarray(values, np.float64) - lo) / ((hi - lo) or 1.0), 0.0, 1.0) * (len(_HEAT) - 1)
    below = np.minimum(np.floor(t).astype(np.int64), len(_HEAT) - 2)
    frac = (t - below)[..., None]
    return np.rint(_HEAT[below] * (1 - frac) + _HEAT[below + 1] * frac).astype(np.uint8)


def heat_legend(lo: float, hi: float, label: str, width: int = 220) -> Html:
    """A colour bar for `heat_rgb(values, lo, hi)`: the colours from lo to hi, with lo and hi printed under it."""
    steps = 44
    colours = heat_rgb(np.linspace(0.0, 1.0, steps)[None], 0.0, 1.0)[0]  # (steps, 3)
    bar = join(tag("rect", x=round(i * width / steps, 2), y=16, width=round(width / steps + 0.5, 2), height=10,
                   fill=hex_colour(c)) for i, c in enumerate(colours))
    texts = join([tag("text", label, x=0, y=11, class_="lbl"), tag("text", _number(lo), x=0, y=38, class_="lbl"),
                  tag("text", _number(hi), x=width, y=38, text_anchor="end", class_="lbl")])
    return tag("svg", join([bar, texts]), width=max(width, 7 * len(label)), height=42, class_="legend")


# --- images -------------------------------------------------------------------------------------------------

def png_data_uri(rgb: np.ndarray) -> str:
    """An (H, W, 3) uint8 RGB array as a `data:image/png;base64,...` URI."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def img(rgb: np.ndarray, alt: str, width: int | None = None, pixelated: bool = False) -> Html:
    """An `<img>` of `rgb`, shown `width` CSS pixels wide (default: its own width). `pixelated` enlarges small
    arrays (e.g. a 19x19 feature map) with sharp cells instead of blur."""
    return tag("img", src=png_data_uri(rgb), alt=alt, width=width or rgb.shape[1],
               class_="pixelated" if pixelated else None)


class ImageRef(NamedTuple):
    """An image stored once in the page (`SharedImages.add`): its element id and size in pixels."""
    id: str
    height: int
    width: int


class SharedImages:
    """Images drawn several times on a page, stored once (in an invisible SVG that `svg_boxes` refers to)."""

    def __init__(self) -> None:
        self._images: list[Html] = []

    def add(self, name: str, rgb: np.ndarray) -> ImageRef:
        ref = ImageRef(f"img-{len(self._images)}-{name}", rgb.shape[0], rgb.shape[1])
        self._images.append(tag("image", "", id=ref.id, href=png_data_uri(rgb), width=ref.width, height=ref.height))
        return ref

    def defs(self) -> Html:
        return tag("svg", tag("defs", join(self._images)), width=0, height=0, class_="defs", aria_hidden="true")


class Box(NamedTuple):
    """A rectangle drawn over an image: `[ymin, xmin, ymax, xmax]` in the image's pixels, a colour ("#rrggbb"),
    an optional label on a tab at its top left, a dashed or solid outline, a fill (e.g. "rgba(0,0,0,0.2)") and a
    tooltip."""
    ymin: float
    xmin: float
    ymax: float
    xmax: float
    colour: str
    label: str = ""
    dashed: bool = False
    fill: str = "none"
    tooltip: str = ""


def svg_boxes(image: ImageRef, boxes: Sequence[Box], width: int, margin: float = 0.0,
              grid: tuple[int, int] | None = None, faded: bool = False) -> Html:
    """`image` shown `width` pixels wide with `boxes` drawn over it.

    margin: extra room around the image as a fraction of its size, for boxes that reach beyond it (the image's
    border is then outlined); grid: (rows, cols) cell lines over the image; faded: the image at half contrast so
    the boxes stand out. Lines and labels keep their size whatever the image's size.
    """
    scale = width / (image.width * (1 + 2 * margin))
    left, top = margin * image.width * scale, margin * image.height * scale
    height = image.height * (1 + 2 * margin) * scale

    def x(v: float) -> float:
        return round(left + v * scale, 2)

    def y(v: float) -> float:
        return round(top + v * scale, 2)

    parts = [tag("use", href=f"#{image.id}", transform=f"translate({left:.2f} {top:.2f}) scale({scale:.6f})",
                 opacity=0.55 if faded else None)]
    if margin:
        parts.append(tag("rect", x=x(0), y=y(0), width=x(image.width) - x(0), height=y(image.height) - y(0),
                         class_="frame"))
    if grid:
        rows, cols = grid
        parts += [tag("line", x1=x(0), x2=x(image.width), y1=y(image.height * r / rows), y2=y(image.height * r / rows),
                      class_="grid") for r in range(1, rows)]
        parts += [tag("line", y1=y(0), y2=y(image.height), x1=x(image.width * c / cols), x2=x(image.width * c / cols),
                      class_="grid") for c in range(1, cols)]
    for box in boxes:
        rect = tag("rect", tag("title", box.tooltip) if box.tooltip else "", x=x(box.xmin), y=y(box.ymin),
                   width=max(x(box.xmax) - x(box.xmin), 0.5), height=max(y(box.ymax) - y(box.ymin), 0.5),
                   stroke=box.colour, fill=box.fill, class_="box dashed" if box.dashed else "box")
        parts.append(rect)
        if box.label:  # on a filled tab above the box's top left corner (inside it at the top edge)
            tab_w, tab_h = 7 * len(box.label) + 6, 15
            tab_x = min(max(x(box.xmin), 0), width - tab_w)
            tab_y = y(box.ymin) - tab_h if y(box.ymin) >= tab_h else y(box.ymin)
            parts += [tag("rect", x=tab_x, y=tab_y, width=tab_w, height=tab_h, fill=box.colour),
                      tag("text", box.label, x=tab_x + 3, y=tab_y + 11.5, fill=_ink(box.colour), class_="boxlabel")]
    return tag("svg", join(parts), width=width, height=round(height), viewBox=f"0 0 {width} {round(height)}",
               class_="boxes")


def _ink(colour: str) -> str:
    """Black or white, whichever reads better on the "#rrggbb" `colour` (white for other colour syntaxes)."""
    if len(colour) != 7 or not colour.startswith("#"):
        return "#fff"
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


# --- plots --------------------------------------------------------------------------------------------------

class Series(NamedTuple):
    """One data series of `svg_plot`: a line through the points and/or a dot on each."""
    label: str
    x: Sequence[float]
    y: Sequence[float]
    colour: str
    line: bool = True
    dots: bool = False


class Rule(NamedTuple):
    """A horizontal (in `svg_plot`) or vertical (in `svg_histogram`) dashed line at `value`, in the legend."""
    value: float
    label: str
    colour: str = COLOURS["threshold"]


class Mark(NamedTuple):
    """One point of `svg_plot` circled and labelled (e.g. the first value over a tolerance)."""
    x: float
    y: float
    label: str
    colour: str = COLOURS["threshold"]


def _number(v: float) -> str:
    """A tick or range label: 0.25, 1e-05, 20,000."""
    return f"{v:,.0f}" if abs(v) >= 1000 and float(v).is_integer() else f"{v:.4g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (steps 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step + 1e-9) + 1)]


class _Frame:
    """Plot area of a `width` x `height` SVG: data ranges to pixels (log10 for y when `log_y`), axes, legend."""
    LEFT, RIGHT, TOP, BOTTOM = 66, 16, 30, 42

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float], log_y: bool, width: int,
                 height: int):
        self.x_range, self.log_y, self.width, self.height = x_range, log_y, width, height
        self.y_range = tuple(math.log10(v) for v in y_range) if log_y else y_range

    def x(self, v: float) -> float:
        lo, hi = self.x_range
        return round(self.LEFT + (v - lo) / ((hi - lo) or 1) * (self.width - self.LEFT - self.RIGHT), 2)

    def y(self, v: float) -> float:
        lo, hi = self.y_range
        v = math.log10(v) if self.log_y else v
        return round(self.height - self.BOTTOM - (v - lo) / ((hi - lo) or 1) * (self.height - self.TOP - self.BOTTOM),
                     2)

    def axes(self, x_label: str, y_label: str) -> list[Html]:
        bottom, right = self.height - self.BOTTOM, self.width - self.RIGHT
        if self.log_y:
            y_ticks = [10.0 ** e for e in range(math.ceil(self.y_range[0]), math.floor(self.y_range[1]) + 1)]
        else:
            y_ticks = nice_ticks(*self.y_range)
        parts = [tag("line", x1=self.LEFT, x2=right, y1=bottom, y2=bottom, class_="axis"),
                 tag("line", x1=self.LEFT, x2=self.LEFT, y1=self.TOP, y2=bottom, class_="axis")]
        for t in nice_ticks(*self.x_range, count=8):
            parts += [tag("line", x1=self.x(t), x2=self.x(t), y1=bottom, y2=bottom + 4, class_="axis"),
                      tag("text", _number(t), x=self.x(t), y=bottom + 16, text_anchor="middle", class_="lbl")]
        for t in y_ticks:
            parts += [tag("line", x1=self.LEFT, x2=right, y1=self.y(t), y2=self.y(t), class_="gridline"),
                      tag("text", _number(t), x=self.LEFT - 6, y=self.y(t) + 4, text_anchor="end", class_="lbl")]
        parts += [tag("text", x_label, x=(self.LEFT + right) / 2, y=self.height - 6, text_anchor="middle",
                      class_="axislabel"),
                  tag("text", y_label, x=0, y=0, text_anchor="middle", class_="axislabel",
                      transform=f"translate(13 {(self.TOP + bottom) / 2}) rotate(-90)")]
        return parts

    def legend(self, entries: Sequence[tuple[str, str, str]]) -> Html:
        """entries: (label, colour, kind "bar" | "line" | "dash" | "dot"), in a row above the plot."""
        parts, x = [], self.LEFT
        for label, colour, kind in entries:
            if kind == "bar":
                parts.append(tag("rect", x=x, y=8, width=12, height=10, fill=colour))
            elif kind == "dot":
                parts.append(tag("circle", cx=x + 6, cy=13, r=4, fill=colour))
            else:
                parts.append(tag("line", x1=x, x2=x + 14, y1=13, y2=13, stroke=colour, stroke_width=2,
                                 stroke_dasharray="4 3" if kind == "dash" else None))
            parts.append(tag("text", label, x=x + 18, y=17, class_="lbl"))
            x += 30 + 6.5 * len(label)
        return join(parts)

    def svg(self, parts: list[Html], title: str) -> Html:
        return tag("svg", join([tag("title", title), *parts]), width=self.width, height=self.height,
                   viewBox=f"0 0 {self.width} {self.height}", class_="plot", role="img")


def svg_histogram(values: np.ndarray, edges: Sequence[float], x_label: str, y_label: str = "count",
                  rule: Rule | None = None, log_y: bool = False, bar_label: str = "count",
                  width: int = 640, height: int = 240) -> Html:
    """A histogram of `values` over the bins `edges` (as `np.histogram`), with an optional vertical `rule`
    (e.g. a threshold; bins at or above it are drawn in the rule's colour). `log_y`: counts on a log scale
    (empty bins are not drawn)."""
    counts, edges = np.histogram(values, bins=np.asarray(edges, np.float64))
    top = max(int(counts.max()), 1)
    frame = _Frame((edges[0], edges[-1]), (0.8 if log_y else 0, top * 1.5 if log_y else top * 1.08), log_y, width,
                   height)
    bars = []
    for count, lo, hi in zip(counts, edges[:-1], edges[1:]):
        if count == 0:
            continue
        colour = rule.colour if rule is not None and lo >= rule.value else COLOURS["accent"]
        y0 = frame.y(0.8 if log_y else 0)
        bars.append(tag("rect", tag("title", f"{_number(lo)} to {_number(hi)}: {count}"), x=frame.x(lo),
                        y=frame.y(count), width=max(frame.x(hi) - frame.x(lo) - 1, 1), height=y0 - frame.y(count),
                        fill=colour))
    legend = [(bar_label, COLOURS["accent"], "bar")]
    if rule is not None:
        bars.append(tag("line", x1=frame.x(rule.value), x2=frame.x(rule.value), y1=frame.TOP,
                        y2=height - frame.BOTTOM, stroke=rule.colour, class_="rule"))
        legend.append((rule.label, rule.colour, "dash"))
    return frame.svg([*frame.axes(x_label, y_label), *bars, frame.legend(legend)], f"histogram of {x_label}")


def svg_plot(series: Sequence[Series], x_label: str, y_label: str, rules: Sequence[Rule] = (),
             marks: Sequence[Mark] = (), log_y: bool = False, width: int = 640, height: int = 240) -> Html:
    """A line and/or dot plot of `series`, with horizontal `rules` (e.g. a threshold, a tolerance) and labelled
    `marks`. `log_y`: y on a log scale (values <= 0 are left out)."""
    xs = [float(v) for s in series for v in s.x] + [m.x for m in marks]
    ys = [float(v) for s in series for v in s.y] + [r.value for r in rules] + [m.y for m in marks]
    if log_y:
        ys = [v for v in ys if v > 0] or [1.0]
        y_range = (10 ** math.floor(math.log10(min(ys))), 10 ** math.ceil(math.log10(max(ys))))
    else:
        y_range = (min(min(ys), 0.0), max(ys) * 1.08 or 1.0)
    frame = _Frame((min(xs), max(xs)), y_range, log_y, width, height)
    parts, legend = frame.axes(x_label, y_label), []
    for s in series:
        points = [(frame.x(a), frame.y(b)) for a, b in zip(s.x, s.y) if b > 0 or not log_y]
        if s.line:
            parts.append(tag("polyline", points=" ".join(f"{a},{b}" for a, b in points), stroke=s.colour,
                             class_="series"))
        if s.dots:
            parts += [tag("circle", cx=a, cy=b, r=3, fill=s.colour) for a, b in points]
        legend.append((s.label, s.colour, "line" if s.line else "dot"))
    for rule in rules:
        parts.append(tag("line", x1=frame.LEFT, x2=width - frame.RIGHT, y1=frame.y(rule.value),
                         y2=frame.y(rule.value), stroke=rule.colour, class_="rule"))
        legend.append((rule.label, rule.colour, "dash"))
    for mark in marks:
        parts += [tag("circle", cx=frame.x(mark.x), cy=frame.y(mark.y), r=7, stroke=mark.colour, class_="mark"),
                  tag("text", mark.label, x=frame.x(mark.x) + 10, y=frame.y(mark.y) - 8, fill=mark.colour,
                      class_="lbl")]
    return frame.svg([*parts, frame.legend(legend)], f"{y_label} by {x_label}")


# --- text and layout ----------------------------------------------------------------------------------------

_NUMERIC = set("0123456789.-+e,%x× ")


def table(header: Sequence[object], rows: Iterable[Sequence[object]], id: str | None = None,
          caption: object = None) -> Html:
    """A table; cells that read as numbers (e.g. "0.4213", "-3", "19×19") are right-aligned."""
    def cell(name: str, value: object) -> Html:
        text = str(value)
        numeric = not isinstance(value, Html) and text and set(text) <= _NUMERIC and any(c.isdigit() for c in text)
        return tag(name, value, class_="num" if numeric else None)

    head = tag("thead", tag("tr", join(cell("th", h) for h in header)))
    body = tag("tbody", join(tag("tr", join(cell("td", v) for v in row)) for row in rows))
    return tag("table", join([tag("caption", caption) if caption is not None else "", head, body]), id=id)


def swatch(colour: str, dashed: bool = False) -> Html:
    """A small coloured square (solid) or outline (dashed), for legends in text and tables."""
    style = f"border: 2px dashed {colour}" if dashed else f"background: {colour}; border: 2px solid {colour}"
    return tag("span", "", class_="swatch", style=style)


def figure(content: object, caption: object) -> Html:
    return tag("figure", join([content, tag("figcaption", caption)]))


def code(text: object) -> Html:
    return tag("code", text)


def paragraph(*parts: object) -> Html:
    """A paragraph from text and `Html` parts (e.g. `code`), concatenated as given."""
    return tag("p", join(parts, ""))


class Section(NamedTuple):
    """One section of `page`: `id` is its anchor (#id) in the table of contents."""
    id: str
    title: str
    body: Html


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #222; background: #fff; margin: 0; line-height: 1.5; }
main { max-width: 1060px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.9em; margin: 0.2em 0 0.3em; color: #123; }
h2 { font-size: 1.45em; margin: 2.2em 0 0.4em; padding-bottom: 0.2em; border-bottom: 3px solid #1f5f99; color: #123; }
h3 { font-size: 1.1em; margin: 1.5em 0 0.3em; color: #1f5f99; }
p { margin: 0.5em 0; max-width: 52em; }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono", monospace;
              font-size: 0.88em; }
p code, li code, td code { background: #f1f3f5; padding: 0 3px; border-radius: 3px; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 10px 14px; overflow-x: auto; font-size: 0.85em; }
nav { background: #f6f8fa; border: 1px solid #e1e4e8; padding: 8px 16px; margin: 14px 0; }
nav ol { margin: 4px 0; padding-left: 22px; columns: 2; }
a { color: #1f5f99; }
.ref { font-size: 0.9em; color: #444; background: #eef4fa; border-left: 4px solid #1f5f99; padding: 6px 12px;
       margin: 10px 0; }
.warning { background: #fde8e8; border: 3px solid #d62728; color: #5c0b0b; padding: 12px 18px; margin: 14px 0;
           font-size: 1.05em; }
.warning strong { color: #b00; font-size: 1.1em; }
.info { background: #fff8e1; border-left: 4px solid #e6a100; padding: 6px 12px; margin: 10px 0; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 10px 0; }
figcaption { font-size: 0.85em; color: #555; max-width: 36em; margin-top: 4px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 0.86em; }
caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
th, td { border-bottom: 1px solid #e1e4e8; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; border-bottom: 2px solid #c8ccd0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #fafbfc; }
img.pixelated { image-rendering: pixelated; }
img, svg.boxes, svg.plot { max-width: 100%; height: auto; }
svg.defs { position: absolute; }
svg text { font-family: system-ui, Arial, sans-serif; }
svg .lbl { font-size: 11px; fill: #333; }
svg .axislabel { font-size: 12px; fill: #222; font-weight: 600; }
svg .axis { stroke: #555; stroke-width: 1; }
svg .gridline { stroke: #e6e6e6; stroke-width: 1; }
svg .series { fill: none; stroke-width: 2; }
svg .rule { stroke-width: 2; stroke-dasharray: 6 4; }
svg .mark { fill: none; stroke-width: 2; }
svg .frame { fill: none; stroke: #222; stroke-width: 1.5; }
svg .grid { stroke: #fff; stroke-opacity: 0.8; stroke-width: 1; }
svg .box { stroke-width: 2.5; }
svg .box.dashed { stroke-width: 2; stroke-dasharray: 6 4; }
svg .boxlabel { font-size: 11px; font-weight: 600; }
.swatch { display: inline-block; width: 12px; height: 12px; vertical-align: -1px; margin-right: 4px;
          box-sizing: border-box; }
.heat { display: inline-block; text-align: center; font-size: 0.8em; color: #444; margin: 0 6px 8px 0; }
.small { font-size: 0.85em; color: #555; }
"""


def page(title: str, sections: Sequence[Section], header: Html = Html(""), shared: SharedImages | None = None) -> str:
    """A complete HTML document: `title` as h1, `header` (e.g. a warning and a summary), a table of contents,
    then the numbered `sections`; `shared` images are written once at the start of the body."""
    contents = tag("nav", join([tag("strong", "Contents"),
                                tag("ol", join(tag("li", tag("a", s.title, href=f"#{s.id}")) for s in sections))]))
    body = join([shared.defs() if shared else "", tag("h1", title), header, contents,
                 *(tag("section", join([tag("h2", f"{i}. {s.title}"), s.body]), id=s.id)
                   for i, s in enumerate(sections, 1))])
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"{tag('main', body)}\n</body>\n</html>\n")
