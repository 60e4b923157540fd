"""Where the tools find things: this repository, and the shared data folder beside the checkout.

`shared/` (the genuine release's small files, the COCO development images and annotations) lies beside the
repository by default (`../shared`); set SSD_NP_SHARED to use another folder. Only tools need it: the tests use
the copies in tests/data.
"""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SSD_NP_SHARED") or ROOT.parent / "shared")
RELEASE = SHARED / "release" / "ssd_mobilenet_v2_coco_2018_03_29"
COCO = SHARED / "coco"
PIPELINE_CONFIG = ROOT / "weights" / "pipeline.config"  # the release's own, shipped in this repository
