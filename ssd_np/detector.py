"""The Python API: `Detector.load()` and `Detections`.

    from ssd_np import Detector
    det = Detector.load()                 # weights from `ssd-np weights fetch` (or a path)
    found = det("street.jpg")             # a path, a PIL image or an (H, W, 3) uint8 RGB array
    for name, score, box in zip(found.class_names, found.scores, found.pixel_boxes):
        print(name, score, box)           # box: [ymin, xmin, ymax, xmax] in pixels

`det.tf_outputs(rgb)` gives TF's four outputs exactly as the release graph does (`detection_boxes` (1,100,4),
`detection_scores` (1,100), `detection_classes` (1,100), `num_detections` (1,)); `det.detection_out(bgr300)`
gives the OpenVINO converted model's `detection_out` (1,1,100,7) for a 300x300 BGR input. A Detector holds
only its weights: no global state, safe to use from several threads.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ssd_np import model
from ssd_np.coco_labels import COCO_LABELS
from ssd_np.fetch import default_weights_path
from ssd_np.images import ImageInput, load_rgb
from ssd_np.weights import load_weights


@dataclass(frozen=True)
class Detections:
    """The detections of one image, best first (TF's order), with `num_detections` rows.

    boxes: (n, 4) float32 normalized [ymin, xmin, ymax, xmax] in [0, 1] (TF's `detection_boxes`).
    pixel_boxes: (n, 4) float32 the same boxes in pixels of the original image: [ymin, xmin, ymax, xmax].
    class_ids: (n,) int COCO category ids 1..90.  class_names: their COCO names.  scores: (n,) float32.
    image_size: (height, width) of the original image.
    """

    boxes: np.ndarray
    pixel_boxes: np.ndarray
    class_ids: np.ndarray
    class_names: tuple[str, ...]
    scores: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return len(self.scores)


class Detector:
    """ssd_mobilenet_v2_coco with the weights of one HDF5 file."""

    def __init__(self, weights: dict[str, np.ndarray], source: str = "in-memory weights", genuine: bool = False):
        self.layers = model.prepare(weights)  # packed once; the forward pass reads only these
        self.source = source
        self.genuine = genuine

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Detector":
        """Load weights from `path` (default: `ssd_np.fetch.default_weights_path()`), strictly checked."""
        tensors, attrs = load_weights(path if path is not None else default_weights_path())
        return cls(tensors, str(attrs["source"]), bool(attrs["genuine"]))

    def __call__(self, image: ImageInput) -> Detections:
        rgb = load_rgb(image)
        out = self.tf_outputs(rgb)
        n = int(out["num_detections"][0])
        boxes = out["detection_boxes"][0, :n]
        height, width = rgb.shape[:2]
        class_ids = out["detection_classes"][0, :n].astype(np.int64)
        return Detections(
            boxes=boxes,
            pixel_boxes=boxes * np.array([height, width, height, width], np.float32),
            class_ids=class_ids,
            class_names=tuple(COCO_LABELS[i] for i in class_ids),
            scores=out["detection_scores"][0, :n],
            image_size=(height, width),
        )

    def tf_outputs(self, rgb: np.ndarray, trace: dict | None = None) -> dict[str, np.ndarray]:
        """TF's four outputs for an (H, W, 3) uint8 RGB array; `trace` receives every intermediate."""
        return model.tf_outputs(_check_image(rgb, "rgb"), self.layers, trace)

    def detection_out(self, bgr300: np.ndarray, trace: dict | None = None) -> np.ndarray:
        """OpenVINO's `detection_out` (1, 1, 100, 7) for a (300, 300, 3) uint8 BGR array."""
        bgr300 = _check_image(bgr300, "bgr300")
        if bgr300.shape[:2] != (300, 300):
            raise ValueError(f"bgr300 must be 300x300 (the converted model's input), got "
                             f"{bgr300.shape[1]}x{bgr300.shape[0]}; resize it first "
                             f"(ssd_np.preprocess.resize_bilinear_cv2 does it as OpenCV does)")
        return model.detection_out(bgr300, self.layers, trace)


def _check_image(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 array, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)
