"""The self-contained HTML toolkit (`ssd_np.report.html`): escaping, colours, PNG data URIs, plot and box
geometry, tables and the page skeleton, checked by value."""
import base64
import io
import re

import numpy as np
from PIL import Image

from ssd_np.report import html


def test_escape_and_tag():
    assert html.escape('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    already = html.Html("<b>bold</b>")
    assert html.escape(already) is already
    assert html.tag("text", "a<b", class_="lbl", text_anchor="end", skipped=None) == \
        '<text class="lbl" text-anchor="end">a&lt;b</text>'
    assert html.join(["x<", html.Html("<br>")], "") == "x&lt;<br>"
    assert html.paragraph("see ", html.code("a<b"), ".") == "<p>see <code>a&lt;b</code>.</p>"


def test_heat_colours():
    rgb = html.heat_rgb(np.array([[-5.0, 0.0, 0.5, 1.0, 7.0]]), 0.0, 1.0)  # (1, 5, 3)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 5, 3)
    assert rgb[0].tolist() == [[68, 1, 84], [68, 1, 84], [33, 144, 141], [253, 231, 37], [253, 231, 37]]
    assert html.heat_rgb(np.full((2, 2), 3.0), 3.0, 3.0).tolist() == [[[68, 1, 84]] * 2] * 2  # a flat map
    assert html.hex_colour((255, 0, 16)) == "#ff0010"
    assert html._ink("#ffff00") == "#000" and html._ink("#1f5f99") == "#fff"


def test_png_data_uri_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    uri = html.png_data_uri(rgb)
    assert uri.startswith("data:image/png;base64,")
    decoded = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    np.testing.assert_array_equal(decoded, rgb)
    assert 'class="pixelated"' in html.img(rgb, "x", 70, pixelated=True) and 'width="70"' in html.img(rgb, "x", 70)


def test_nice_ticks():
    assert html.nice_ticks(0, 1) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert html.nice_ticks(-1, 1) == [-1, -0.5, 0, 0.5, 1]
    assert html.nice_ticks(1, 150, count=8) == [20, 40, 60, 80, 100, 120, 140]
    assert html.nice_ticks(3, 3) == [3]


def test_histogram_bars_and_rule():
    values = np.array([0.05, 0.1, 0.1, 0.35, 0.95])
    svg = html.svg_histogram(values, np.linspace(0, 1, 11), "score", rule=html.Rule(0.3, "threshold"))
    bars = re.findall(r'<rect [^>]*fill="([^"]+)"><title>([0-9.]+) to ([0-9.]+): (\d+)</title>', svg)
    assert [(lo, hi, int(n)) for _, lo, hi, n in bars] == [("0", "0.1", 1), ("0.1", "0.2", 2), ("0.3", "0.4", 1),
                                                          ("0.9", "1", 1)]
    assert [colour for colour, lo, _, _ in bars] == [html.COLOURS["accent"]] * 2 + [html.COLOURS["threshold"]] * 2
    assert ">threshold</text>" in svg and 'class="rule"' in svg


def test_plot_log_scale_and_marks():
    x, y = np.arange(1, 6), np.array([1e-6, 1e-4, 0.0, 1e-2, 1.0])
    svg = html.svg_plot([html.Series("max abs diff", x, y, "#123456", dots=True)], "layer", "difference",
                        rules=[html.Rule(1e-3, "tolerance")], marks=[html.Mark(4, 1e-2, "first over")], log_y=True)
    points = re.search(r'<polyline points="([^"]+)"', svg).group(1).split()
    assert len(points) == 4  # the 0 is left out on a log scale
    assert svg.count('<circle cx=') == 4 + 1 and ">first over</text>" in svg and ">tolerance</text>" in svg
    assert ">1e-06</text>" in svg and ">1</text>" in svg  # decades from 1e-6 to 1
    ys = [float(p.split(",")[1]) for p in points]
    assert ys == sorted(ys, reverse=True)  # larger values higher up
    heights = np.diff(ys)
    np.testing.assert_allclose(heights[1:] / heights[0], [1.0, 1.0], rtol=0.01)  # 1e-4 .. 1e-2 .. 1: two decades


def test_boxes_geometry():
    images = html.SharedImages()
    ref = images.add("photo", np.zeros((100, 200, 3), np.uint8))
    assert ref == html.ImageRef("img-0-photo", 100, 200)
    svg = html.svg_boxes(ref, [html.Box(10, 20, 30, 40, "#ff0000", label="cat 0.9", dashed=True)], 400)
    assert 'width="400" height="200"' in svg and f'href="#{ref.id}"' in svg
    assert '<rect x="40.0" y="20.0" width="40.0" height="40.0" stroke="#ff0000" fill="none" class="box dashed">' in svg
    assert ">cat 0.9</text>" in svg
    framed = html.svg_boxes(ref, [html.Box(0, 0, 100, 200, "#00ff00")], 240, margin=0.1, grid=(2, 4))
    # scale 240 / (200 * 1.2) = 1: the image starts at (20, 10)
    assert '<rect x="20.0" y="10.0" width="200.0" height="100.0" class="frame">' in framed
    assert framed.count('class="grid"') == 1 + 3
    defs = images.defs()
    assert defs.startswith('<svg width="0" height="0" class="defs"') and f'id="{ref.id}"' in defs


def test_table_and_page():
    table = html.table(["name", "count", "size"], [["a<b", 3, "19×19×3"], [html.Html("<i>x</i>"), "-0.5", "1, 2"]],
                       id="t", caption="C")
    cells = re.findall(r"<td( class=\"num\")?>(.*?)</td>", table)
    assert cells == [("", "a&lt;b"), (' class="num"', "3"), (' class="num"', "19×19×3"), ("", "<i>x</i>"),
                     (' class="num"', "-0.5"), (' class="num"', "1, 2")]
    assert table.startswith('<table id="t"><caption>C</caption>')
    images = html.SharedImages()
    images.add("x", np.zeros((2, 2, 3), np.uint8))
    text = html.page("A & B", [html.Section("one", "First", html.Html("<p>1</p>")),
                               html.Section("two", "Second", html.Html("<p>2</p>"))], html.Html("<p>head</p>"), images)
    assert text.startswith("<!DOCTYPE html>") and "<title>A &amp; B</title>" in text
    assert text.index('class="defs"') < text.index("<h1>A &amp; B</h1>") < text.index("<p>head</p>") < \
        text.index("<nav>") < text.index('<section id="one"><h2>1. First</h2>') < text.index('<h2>2. Second</h2>')
    assert '<a href="#one">First</a>' in text and "http" not in text
