"""What `ssd-np compare --isolate` adds to the comparison: each layer's own error apart from inherited error.

`Diagnosis(isolate, weights, image).extend(report, reference, candidate)` fills a `compare.Report` (whose
detection verdicts `compare.main_compare` has already added):
- with --isolate: `report.local`, each candidate tensor against the reference node recomputed from the candidate's
  own inputs (`isolate.recompute`), compared with the same preset, and `report.local_detections`, the candidate's
  final outputs against ssd_np's post-processing of the candidate's own `concat`, `concat_1`;
- `report.isolation`: the image and weights used (the image also when not isolating, for the HTML drawing).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssd_np.verify.compare import Report, TraceError, compare_traces, in_reference_shape, judge_at_detection_level
from ssd_np.verify.detections import OWN_OUTPUTS, detection_verdicts
from ssd_np.verify.isolate import check_weights, recompute, traced_image


def candidate_inputs(reference: dict, candidate: dict) -> dict[str, np.ndarray]:
    """The candidate's tensors that the reference also has, in the reference's shape (shape conventions undone,
    values as the candidate computed them), float32."""
    inputs = {}
    for name, c in candidate.items():
        if name in reference:
            shaped = in_reference_shape(name, np.asarray(reference[name]), np.asarray(c))
            if shaped is not None:
                inputs[name] = np.asarray(shaped, np.float32)
    return inputs


@dataclass
class Diagnosis:
    """The options of the extended comparison: --isolate with its --weights and --image."""

    isolate: bool = False
    weights: str | Path | None = None
    image: str | Path | None = None

    def _image(self, report: Report) -> Path | None:
        traces = [("candidate", Path(report.candidate_label), report.meta_candidate),
                  ("reference", Path(report.reference_label), report.meta_reference)]
        if self.isolate:
            return traced_image(self.image, traces)
        try:                                   # only for drawing: no image is no error
            return traced_image(self.image, traces)
        except TraceError:
            return None

    def extend(self, report: Report, reference: dict, candidate: dict) -> None:
        image = self._image(report)
        report.isolation = {"image": None if image is None else str(image)}
        if self.isolate:
            self._isolate(report, reference, candidate, image)

    def _isolate(self, report: Report, reference: dict, candidate: dict, image: Path) -> None:
        from ssd_np.images import load_rgb
        from ssd_np.weights.hdf5 import default_weights_path, load_weights

        weights_path = Path(self.weights) if self.weights else default_weights_path()
        if weights_path.is_file():
            check_weights(weights_path, report.meta_reference)
        weights, _ = load_weights(weights_path)
        isolate(report, reference, candidate, load_rgb(image), weights)
        report.isolation["weights"] = str(weights_path)


def isolate(report: Report, reference: dict, candidate: dict, rgb: np.ndarray, weights: dict) -> None:
    """Fill `report.local` (and `local_detections`): every candidate tensor against the reference node recomputed
    from the candidate's own inputs, for the (H, W, 3) uint8 RGB image and the weights the reference used."""
    inputs = candidate_inputs(reference, candidate)
    recomputed = recompute(rgb, weights, inputs)
    local_reference = {name: value for name, value in recomputed.items() if name in candidate}
    if not local_reference:
        raise TraceError("--isolate: no candidate tensor is a node the reference computes")
    local = compare_traces(local_reference, candidate, preset=report.preset.local(), required=())
    report.local_detections = [verdict for verdict in detection_verdicts(recomputed, candidate, report.preset)
                               if verdict.source == OWN_OUTPUTS]   # the candidate's post-processing alone
    if report.judge_detections:
        judge_at_detection_level(local.results, report.local_detections)
    report.local = {t.name: t for t in local.compared}
    report.isolation.update(substituted=len(inputs), recomputed=len(local_reference))
