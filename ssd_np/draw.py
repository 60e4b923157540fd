"""Annotated copies of images: boxes, COCO names and scores drawn with Pillow only.

Sizes scale with the image so the result is readable from a 37x23 thumbnail to a 40-megapixel photo:
with s = sqrt(H * W), the box line is max(1, round(s / 320)) pixels wide and the label font (Pillow's default
font, `ImageFont.load_default(size)`) is max(10, round(s / 36)) pixels high. Each label sits on a filled
background in its class colour, above the box when there is room, else just inside its top edge, and is moved
left so it stays inside the image. Colours: one per class id, hues spread by the golden ratio so neighbouring
ids differ; text black or white, whichever contrasts more. The best detection is drawn last (on top).
"""
from __future__ import annotations

import colorsys
import functools

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ssd_np.coco_labels import COCO_LABELS


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A saturated RGB colour for a class id; different ids get clearly different hues."""
    hue = (class_id * 0.6180339887) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


@functools.lru_cache(maxsize=32)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def draw_detections(rgb: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, scores: np.ndarray) -> Image.Image:
    """A copy of `rgb` (H, W, 3) uint8 with the detections drawn on it.

    boxes: (n, 4) [ymin, xmin, ymax, xmax] in pixels; class_ids: (n,) COCO ids; scores: (n,), best first.
    """
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    height, width = rgb.shape[:2]
    scale = float(np.sqrt(height * width))
    line = max(1, round(scale / 320))
    font = _font(max(10, round(scale / 36)))
    pen = ImageDraw.Draw(image)
    for box, class_id, score in reversed(list(zip(boxes, class_ids, scores))):
        colour = class_colour(int(class_id))
        ymin, xmin, ymax, xmax = (float(v) for v in box)
        x0, y0 = min(max(round(xmin), 0), width - 1), min(max(round(ymin), 0), height - 1)
        x1, y1 = min(max(round(xmax), x0), width - 1), min(max(round(ymax), y0), height - 1)
        pen.rectangle([x0, y0, x1, y1], outline=colour, width=line)
        _label(pen, f"{COCO_LABELS.get(int(class_id), str(int(class_id)))} {float(score):.2f}",
               x0, y0, colour, font, width)
    return image


def _label(pen: ImageDraw.ImageDraw, text: str, x: int, y: int, colour: tuple[int, int, int],
           font: ImageFont.ImageFont | ImageFont.FreeTypeFont, image_width: int) -> None:
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    pad = max(1, (bottom - top) // 5)
    w, h = right - left + 2 * pad, bottom - top + 2 * pad
    x = max(0, min(x, image_width - w))
    y = y - h if y - h >= 0 else y
    pen.rectangle([x, y, x + w - 1, y + h - 1], fill=colour)
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    pen.text((x + pad - left, y + pad - top), text, fill=(0, 0, 0) if luma > 140 else (255, 255, 255), font=font)
