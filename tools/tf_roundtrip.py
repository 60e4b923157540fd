"""Check ssd_np.weights.checkpoint.write_checkpoint against real TensorFlow.

Needs the reference venv (TensorFlow 2.17.1) and the genuine graph from ../shared (tools/paths.py):

    .venv-ref/bin/python tools/tf_roundtrip.py [--meta PATH/model.ckpt.meta]

1. Writes, with OUR writer, a checkpoint of the release's 344 variables (names and shapes from
   tests/data/model.ckpt.index.listing.tsv) filled with seeded random float32 values, plus
   global_step (int64 scalar).
2. TF reads it with tf.train.load_checkpoint: same names, dtypes, shapes, bit-identical values.
3. TF restores it into the genuine inference graph (model.ckpt.meta, import_meta_graph + saver.restore):
   every graph variable bit-identical to what we wrote.
4. TF writes the same tensors with its own writer (the SaveV2 op, names in sorted order as
   tf.compat.v1.train.Saver passes them): our .index and .data files are byte-identical to TF's.
5. Same as 2 and 4 for extra tensors: every dtype our writer supports, scalar and empty shapes, and
   3000 long names, so that the index spans two 256 KiB data blocks.

Prints one line per check and a PASS/FAIL summary; exits 1 on any failure.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
import tensorflow as tf  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from ssd_np.weights.checkpoint import DTYPES, data_path, index_path, write_checkpoint  # noqa: E402

LISTING = REPO / "tests/data/model.ckpt.index.listing.tsv"
from paths import RELEASE  # noqa: E402

GENUINE_META = str(RELEASE / "model.ckpt.meta")


def genuine_standin(seed: int = 0) -> dict[str, np.ndarray]:
    """The release's variables (names, shapes, dtypes from the listing) with seeded random values."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for line in LISTING.read_text().splitlines():
        name, dtype, shape = line.split("\t")[:3]
        dims = () if shape == "scalar" else tuple(int(d) for d in shape.split("x"))
        if dtype == "int64":
            tensors[name] = np.asarray(rng.integers(0, 10**6, size=dims), dtype=np.int64)
        else:
            tensors[name] = rng.standard_normal(dims).astype(dtype)
    return tensors


def extra_tensors(seed: int = 1) -> dict[str, np.ndarray]:
    """One tensor per supported dtype (including scalar and empty shapes) plus 3000 long-named scalars."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for dtype in DTYPES.values():
        for shape in [(), (0,), (3, 0, 2), (5, 7)]:
            raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
            values = raw.view(dtype).reshape(shape) if dtype != np.bool_ else (raw & 1).astype(bool).reshape(shape)
            tensors[f"dtypes/{dtype.name}/{'x'.join(map(str, shape)) or 'scalar'}"] = values
    for i in range(3000):
        tensors[f"long/{rng.bytes(48).hex()}/{i}"] = np.float32(i)
    return tensors


def check_load_checkpoint(prefix: str, tensors: dict[str, np.ndarray]) -> list[str]:
    reader = tf.train.load_checkpoint(prefix)
    dtypes, shapes = reader.get_variable_to_dtype_map(), reader.get_variable_to_shape_map()
    if set(dtypes) != set(tensors):
        return [f"names differ: {sorted(set(dtypes) ^ set(tensors))[:3]}"]
    failures = []
    for name, ours in tensors.items():
        theirs = reader.get_tensor(name)
        if dtypes[name].as_numpy_dtype != ours.dtype or tuple(shapes[name]) != ours.shape:
            failures.append(f"{name}: TF says {dtypes[name].name}{tuple(shapes[name])}, wrote {ours.dtype}{ours.shape}")
        elif np.asarray(theirs).tobytes() != ours.tobytes():
            failures.append(f"{name}: values differ")
    return failures


def check_restore_into_graph(prefix: str, meta: str, tensors: dict[str, np.ndarray]) -> tuple[list[str], int]:
    failures = []
    with tf.Graph().as_default() as graph:
        saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        variables = [op for op in graph.get_operations() if op.type == "VariableV2"]
        with tf.compat.v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            restored = sess.run({op.name: op.outputs[0] for op in variables})
    if set(restored) != set(tensors):
        failures.append(f"graph variables and checkpoint tensors differ: {sorted(set(restored) ^ set(tensors))[:3]}")
    for name in sorted(set(restored) & set(tensors)):
        value, ours = restored[name], tensors[name]
        if value.dtype != ours.dtype or value.shape != ours.shape:
            failures.append(f"{name}: restored {value.dtype}{value.shape}, wrote {ours.dtype}{ours.shape}")
        elif value.tobytes() != ours.tobytes():
            failures.append(f"{name}: values differ")
    return failures, len(restored)


def save_with_tf(prefix: str, tensors: dict[str, np.ndarray]) -> None:
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[name]) for name in names])


def check_same_bytes(ours: str, theirs: str) -> list[str]:
    failures = []
    for path in (index_path, data_path):
        a, b = Path(path(ours)).read_bytes(), Path(path(theirs)).read_bytes()
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            failures.append(f"{Path(path(ours)).name}: {len(a)} vs TF's {len(b)} bytes, first difference at {first}")
    return failures


def report(label: str, failures: list[str]) -> bool:
    print(f"[{'PASS' if not failures else 'FAIL'}] {label}")
    for failure in failures[:10]:
        print(f"       {failure}")
    return not failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meta", default=GENUINE_META, help="the genuine model.ckpt.meta")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case, tensors in [("genuine", genuine_standin()), ("extra", extra_tensors())]:
            ours, theirs = f"{tmp}/{case}_ours/model.ckpt", f"{tmp}/{case}_tf/model.ckpt"
            write_checkpoint(ours, tensors)
            size = os.path.getsize(data_path(ours))
            print(f"{case}: wrote {len(tensors)} tensors with ssd_np.weights.checkpoint, data {size} bytes, "
                  f"index {os.path.getsize(index_path(ours))} bytes")
            results.append(report(f"{case}: tf.train.load_checkpoint reads all {len(tensors)} tensors bit-identical",
                                  check_load_checkpoint(ours, tensors)))
            if case == "genuine":
                failures, count = check_restore_into_graph(ours, args.meta, tensors)
                results.append(report(f"{case}: saver.restore into {Path(args.meta).name}: {count} graph variables "
                                      f"bit-identical", failures))
            save_with_tf(theirs, tensors)
            results.append(report(f"{case}: .index and .data byte-identical to TF's SaveV2 output",
                                  check_same_bytes(ours, theirs)))
    print(f"SUMMARY: {'PASS' if all(results) else 'FAIL'} ({sum(results)} of {len(results)} checks passed)")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
