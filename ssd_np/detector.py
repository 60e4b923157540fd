"""The Python API: `Detector.load()` and `Detections`.

    from ssd_np import Detector
    det = Detector.load()                 # weights from `ssd-np weights fetch` (or a path)
    found = det("street.jpg")             # a path, a PIL image or an (H, W, 3) uint8 RGB array
    for name, score, box in zip(found.class_names, found.scores, found.pixel_boxes):
        print(name, score, box)           # box: [ymin, xmin, ymax, xmax] in pixels

`det(image, format="openvino")` gives the detections of the OpenVINO converted model (the image resized to
300x300 as OpenCV's `cv2.resize` does, OpenVINO's post-processing: ordered by class, then score).
`det.tf_outputs(rgb)` gives TF's four outputs exactly as the release graph does (`detection_boxes` (1,100,4),
`detection_scores` (1,100), `detection_classes` (1,100), `num_detections` (1,)); `det.detection_out(bgr300)`
gives the OpenVINO converted model's `detection_out` (1,1,100,7) for a 300x300 BGR input. A Detector holds
only its prepared weights: no global state, safe to use from several threads. It runs the fast engine; the
readable reference of the same graph is `ssd_np.reference`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ssd_np import model
from ssd_np.coco_labels import COCO_LABELS
from ssd_np.engine import warmup
from ssd_np.images import ImageInput, load_rgb
from ssd_np.reference.preprocess import INPUT_SIZE, resize_bilinear_cv2
from ssd_np.weights.hdf5 import default_weights_path, load_weights

FORMATS = ("tf", "openvino")


@dataclass(frozen=True)
class Detections:
    """The detections of one image in its format's order (TF: best first; OpenVINO: by class, then score).

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

    def __init__(self, weights: dict[str, np.ndarray], source: str = "in-memory weights", genuine: bool = False,
                 release_weights: bool = False):
        """release_weights: empty `weights` layer by layer while packing it (see `engine.network.prepare`)."""
        self.layers = model.prepare(weights, release_weights)  # packed once; the forward pass reads only these
        self.source = source
        self.genuine = genuine

    @classmethod
    def load(cls, path: str | os.PathLike | None = None) -> "Detector":
        """Load weights from `path` (default: `ssd_np.weights.hdf5.default_weights_path()`), strictly checked."""
        warmup.start_compiling()  # a first run: half of the kernels compile in another process meanwhile
        tensors, attrs = load_weights(path if path is not None else default_weights_path())
        return cls(tensors, str(attrs["source"]), bool(attrs["genuine"]), release_weights=True)

    def __call__(self, image: ImageInput, format: str = "tf") -> Detections:
        """The detections of one image (a path, a PIL image or an (H, W, 3) uint8 RGB array), best first for
        `format="tf"` (TF's outputs), by class then score for `format="openvino"` (the converted model's)."""
        if format not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
        rgb = load_rgb(image)
        height, width = rgb.shape[:2]
        if format == "tf":
            out = self.tf_outputs(rgb)
            n = int(out["num_detections"][0])
            boxes, scores = out["detection_boxes"][0, :n], out["detection_scores"][0, :n]
            class_ids = out["detection_classes"][0, :n].astype(np.int64)
        else:
            rows = model.detection_out(resize_bilinear_cv2(rgb, INPUT_SIZE, INPUT_SIZE), self.layers)[0, 0]
            rows = rows[:np.argmax(rows[:, 0] == -1) if (rows[:, 0] == -1).any() else len(rows)]  # (n, 7)
            boxes, scores, class_ids = rows[:, [4, 3, 6, 5]], rows[:, 2], rows[:, 1].astype(np.int64)
        return Detections(
            boxes=boxes,
            pixel_boxes=boxes * np.array([height, width, height, width], np.float32),
            class_ids=class_ids,
            class_names=tuple(COCO_LABELS[i] for i in class_ids),
            scores=scores,
            image_size=(height, width),
        )

    def tf_outputs(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """TF's four outputs for an (H, W, 3) uint8 RGB array."""
        return model.tf_outputs(_check_image(rgb, "rgb"), self.layers)

    def detection_out(self, bgr300: np.ndarray) -> np.ndarray:
        """OpenVINO's `detection_out` (1, 1, 100, 7) for a (300, 300, 3) uint8 BGR array."""
        bgr300 = _check_image(bgr300, "bgr300")
        if bgr300.shape[:2] != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"bgr300 must be 300x300 (the converted model's input), got "
                             f"{bgr300.shape[1]}x{bgr300.shape[0]}; resize it first "
                             f"(ssd_np.reference.preprocess.resize_bilinear_cv2 does it as OpenCV does)")
        return model.detection_out(np.ascontiguousarray(bgr300[:, :, ::-1]), self.layers)


def _check_image(array: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 array, got {array.dtype} {array.shape}")
    return np.ascontiguousarray(array)
