"""Write weights/manifest.tsv from the genuine release index (runtime venv; no TensorFlow needed).

    python3 tools/make_manifest.py [INDEX]   # default: weights/model.ckpt.index

Reads every entry of the genuine `model.ckpt.index` with ssd_np's own tensor_bundle reader and writes the
344 float32 variables (name, shape, CRC32C of the genuine tensor, unmasked) in the index's key order.
"""
import sys
from pathlib import Path

from ssd_np.weights.checkpoint import read_index

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    index = sys.argv[1] if len(sys.argv) > 1 else ROOT / "weights" / "model.ckpt.index"
    lines = [
        "# The float32 variables of ssd_mobilenet_v2_coco_2018_03_29/model.ckpt (global_step omitted).",
        "# name<TAB>shape (dims joined by x)<TAB>CRC32C of the genuine tensor's bytes (unmasked; the index stores",
        "# it masked). Made by tools/make_manifest.py from the genuine model.ckpt.index.",
    ]
    for entry in read_index(index).entries:
        if entry.name == "global_step":
            continue
        assert entry.dtype == "float32", entry  # the reader returns the CRC unmasked
        lines.append(f"{entry.name}\t{'x'.join(map(str, entry.shape))}\t{entry.crc32c}")
    (ROOT / "weights" / "manifest.tsv").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines) - 3} variables to weights/manifest.tsv")


if __name__ == "__main__":
    main()
