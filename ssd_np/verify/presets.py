"""Tolerance presets for `ssd-np compare --preset fp32|fp16|int8`: when is a candidate's tensor close enough?

A preset says how far a correct build of the model, at that precision, may drift from the reference:

- per tensor, either the elementwise rule `|c - r| <= atol + rtol * |r|` (fp32: float32 runtimes differ only in
  summation order), or, for reduced-precision builds whose every element carries rounding noise, two whole-tensor
  measures (`min_sqnr_db`, `min_cosine`, defined in `compare.py`):
      SQNR = 10 log10(sum r^2 / sum (c - r)^2) dB,   cosine = <r, c> / (|r| |c|);
- per detection (`detections.py`): detections are paired by class and IoU >= `match_iou`; a pair agrees when
  its score differs by at most `score_atol` and each box coordinate (normalized) by at most `box_atol`; a
  detection without a partner is tolerated only when its score is within `score_atol` of the 0.3 threshold
  (a detection that a correct build may keep or drop).

Two SQNR bounds per reduced-precision preset: the *total* error of a tensor (against the reference) accumulates
over every layer before it, while the *local* error (--isolate: against the reference node fed the candidate's
own inputs) is one layer's own rounding, much smaller; `local()` is the preset for local errors.

Values, from `tools/measure_presets.py` (stand-in weights seed 1, the 17 test images at 300x300; the command
and its output are in the docs). The stand-in's random filters amplify noise in the last, 1x1 layers more than
trained weights would, so the total bounds are loose; the local bounds are what catch a wrong layer:
- fp32: TF 2.17 against the reference differs by at most 1.65e-4 absolute (2.8e-5 of a layer's scale,
  `tests/data/golden/tf_spread.json`); the elementwise rule with atol 5e-4, rtol 1e-4 leaves a 3x margin; scores
  and boxes move by float noise only: 5e-4 for both.
- fp16: worst of the reference run with float16 weights and float16 storage of every tensor (harsher than the
  float16-weight OpenVINO IR: total >= 31.1 dB, local >= 71.8 dB): total SQNR >= 17.9 dB, cosine >= 0.9918;
  local SQNR >= 65.5 dB; detections |score delta| <= 0.016, boxes <= 0.0058, every verdict passing. Bounds: total 15 dB / 0.99, local 50 dB /
  0.99999, score 0.03, boxes 0.015.
- int8 (provisional: stand-in weights only): a full-integer TFLite build (TF's converter, representative
  dataset of 24 COCO images): total SQNR down to 2.9 dB (cosine 0.769) in the 1x1 box predictor, local SQNR
  >= 28.8 dB (cosine 0.99934); matched detections |score delta| <= 0.161, boxes <= 0.215. Bounds: total 0 dB /
  0.7, local 20 dB / 0.995, score 0.2, boxes 0.25; 32 of 34 detection verdicts pass (one image keeps a
  detection the reference does not, beyond the borderline band).
A planted fault that scales one layer by 1.02 has SQNR 20 log10(1 / 0.02) = 34 dB in that layer: the fp16
local bound (50 dB) catches it; int8's (20 dB) cannot: a 2 % change is below one int8 layer's own rounding.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Preset:
    """How close a candidate must be: per tensor (elementwise, or SQNR and cosine) and per detection."""

    name: str
    atol: float                      # elementwise rule |c - r| <= atol + rtol * |r| (also the mismatch column)
    rtol: float
    min_sqnr_db: float | None = None   # when set, a tensor passes on SQNR >= min_sqnr_db and cosine >= min_cosine
    min_cosine: float | None = None
    score_atol: float = 5e-4         # detections: |score delta|
    box_atol: float = 5e-4           # detections: max |coordinate delta|, normalized coordinates
    match_iou: float = 0.5           # detections of the same class pair when IoU >= match_iou
    local_min_sqnr_db: float | None = None   # --isolate: a tensor's local error (one layer's own rounding)
    local_min_cosine: float | None = None

    @property
    def rule(self) -> str:
        if self.min_sqnr_db is None:
            return f"|c - r| <= {self.atol:g} + {self.rtol:g} * |r|"
        return f"SQNR >= {self.min_sqnr_db:g} dB and cosine >= {self.min_cosine:g}"

    def local(self) -> "Preset":
        """The preset for local errors (--isolate): a correct layer fed its own inputs adds only its own rounding,
        so reduced-precision presets hold local errors to a stricter SQNR than the accumulated total."""
        if self.local_min_sqnr_db is None:
            return self
        return replace(self, name=f"{self.name} (local)", min_sqnr_db=self.local_min_sqnr_db,
                       min_cosine=self.local_min_cosine)


FP32 = Preset("fp32", atol=5e-4, rtol=1e-4)
FP16 = Preset("fp16", atol=5e-3, rtol=5e-3, min_sqnr_db=15.0, min_cosine=0.99, score_atol=0.03, box_atol=0.015,
              local_min_sqnr_db=50.0, local_min_cosine=0.99999)
INT8 = Preset("int8", atol=0.1, rtol=0.1, min_sqnr_db=0.0, min_cosine=0.7, score_atol=0.2, box_atol=0.25,
              match_iou=0.5, local_min_sqnr_db=20.0, local_min_cosine=0.995)
PRESETS = {preset.name: preset for preset in (FP32, FP16, INT8)}


def elementwise(atol: float, rtol: float) -> Preset:
    """A preset with only the elementwise rule (`--atol`, `--rtol` without `--preset`)."""
    return Preset("custom" if (atol, rtol) != (FP32.atol, FP32.rtol) else "fp32", atol, rtol)
