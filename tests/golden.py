"""Reading the goldens made by tools/make_golden.py (real TF 2.17.1 and OpenVINO 2024.6 on the genuine graph).

A golden is `tests/data/golden/seed<N>/<image stem>.npz`: arrays under their TF graph node names
(`detection_boxes`, ..., `concat`, and for the layer golden every block output), OpenVINO's under
`openvino/...`, metadata as JSON under `__meta__/json`. Sparse arrays (`__sparse__/<name>/{index,value}`) are
rebuilt here: entries not stored are below the golden's `sparse_floor`, where no post-processing path reads
their value, and are filled with the floor.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import DATA

GOLDEN = DATA / "golden"
SHAPES = {"concat_1": (1, 1917, 91), "openvino/class_logits": (1917, 91)}


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("seed*/*.npz"))


def golden_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


@lru_cache(maxsize=None)
def load_golden(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(path) as z:
        meta = json.loads(str(z["__meta__/json"]))
        arrays = {k: z[k] for k in z.files if not k.startswith("__")}
        for name, shape in SHAPES.items():
            if f"__sparse__/{name}/index" in z.files:
                dense = np.full(int(np.prod(shape)), np.float32(meta["sparse_floor"]), np.float32)
                dense[z[f"__sparse__/{name}/index"]] = z[f"__sparse__/{name}/value"]
                arrays[name] = dense.reshape(shape)
    return arrays, meta


def golden_rgb(meta: dict) -> np.ndarray:
    return np.asarray(Image.open(DATA / "images" / meta["image"]).convert("RGB"))
