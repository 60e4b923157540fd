"""Weights: the release's variable manifest, export from a TF checkpoint or the release archive to HDF5,
and the strict loader.

The manifest (`weights/manifest.tsv`, installed as `ssd_np.weights.release`) lists the 344 float32 variables of
`ssd_mobilenet_v2_coco_2018_03_29/model.ckpt`, with their shapes and the CRC32C of the genuine tensors, read
from the genuine `model.ckpt.index` by `tools/make_manifest.py`.

HDF5 weights file (format version 1):
- one float32 dataset per TF variable name (h5py turns the ``/`` in the name into groups), in TF's layout
  (conv ``(kh, kw, cin, cout)``, depthwise ``(kh, kw, c, 1)``, batch norm and biases ``(c,)``);
- each dataset has the attribute ``crc32c``: the CRC32C of its little-endian bytes;
- file attributes: ``format`` = "ssd_np-weights", ``format_version`` = 1, ``model`` = the release name,
  ``source`` (e.g. "release archive sha256 b938…", "stand-in, seed 1, profile sparse"),
  ``genuine`` (True only when every tensor's CRC32C equals the manifest's).

The loader is strict: every manifest name present exactly once with its shape and dtype, no extra datasets,
every stored CRC32C recomputed. Any violation raises `WeightsError` naming the key and what was expected.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import h5py
import numpy as np

from ssd_np.atomic import atomic_path
from ssd_np.weights.checkpoint import read_checkpoint
from ssd_np.weights.crc32c import crc32c

MODEL_NAME = "ssd_mobilenet_v2_coco_2018_03_29"
FORMAT = "ssd_np-weights"
FORMAT_VERSION = 1


WEIGHTS_ENV = "SSD_NP_WEIGHTS"


class WeightsError(ValueError):
    """A weights file or checkpoint that is not what ssd_np expects."""


@dataclass(frozen=True)
class Manifest:
    """The release's float variables: name -> shape and name -> CRC32C (unmasked) of the genuine tensor."""

    shapes: dict[str, tuple[int, ...]]
    crc32c: dict[str, int]


def _read_manifest() -> Manifest:
    shapes, crcs = {}, {}
    text = resources.files("ssd_np.weights.release").joinpath("manifest.tsv").read_text()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, shape, crc = line.split("\t")
        shapes[name] = tuple(int(d) for d in shape.split("x")) if shape != "scalar" else ()
        crcs[name] = int(crc)
    return Manifest(shapes, crcs)


MANIFEST = _read_manifest()


def release_sha256(filename: str) -> str:
    """The reference sha256 of a release file, from the release's SHA256SUMS (shipped as `ssd_np.weights.release`)."""
    for line in resources.files("ssd_np.weights.release").joinpath("SHA256SUMS").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1] == filename:
            return fields[0]
    raise KeyError(filename)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tensor_crc32c(array: np.ndarray) -> int:
    """CRC32C of the tensor's little-endian float32 bytes (what TF's checkpoint stores, unmasked)."""
    return crc32c(np.ascontiguousarray(array, dtype="<f4").view(np.uint8).reshape(-1))


def check_tensors(tensors: dict[str, np.ndarray], origin: str) -> bool:
    """Check names, shapes and dtypes against the manifest; return True when every CRC equals the genuine one.

    `global_step` (present in TF checkpoints) is allowed and ignored. Raises WeightsError naming the first
    problem.
    """
    names = set(tensors) - {"global_step"}
    missing = sorted(set(MANIFEST.shapes) - names)
    extra = sorted(names - set(MANIFEST.shapes))
    if missing:
        raise WeightsError(f"{origin}: missing variable {missing[0]!r} ({len(missing)} missing in all); "
                           f"expected the {len(MANIFEST.shapes)} variables of {MODEL_NAME}")
    if extra:
        raise WeightsError(f"{origin}: unexpected variable {extra[0]!r} ({len(extra)} extra in all); "
                           f"is this a checkpoint of another model than {MODEL_NAME}?")
    genuine = True
    for name, shape in MANIFEST.shapes.items():
        array = tensors[name]
        if array.dtype != np.float32:
            raise WeightsError(f"{origin}: variable {name!r} has dtype {array.dtype}, expected float32")
        if tuple(array.shape) != shape:
            raise WeightsError(f"{origin}: variable {name!r} has shape {tuple(array.shape)}, expected {shape}")
        genuine = genuine and tensor_crc32c(array) == MANIFEST.crc32c[name]
    return genuine


def write_h5(tensors: dict[str, np.ndarray], out: str | os.PathLike, source: str) -> bool:
    """Check `tensors` against the manifest and write them to the HDF5 file `out` atomically.

    Returns whether the weights are the genuine release weights.
    """
    genuine = check_tensors(tensors, source)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["model"] = MODEL_NAME
        f.attrs["source"] = source
        f.attrs["genuine"] = genuine
        for name in MANIFEST.shapes:
            ds = f.create_dataset(name, data=tensors[name])
            ds.attrs["crc32c"] = np.uint32(tensor_crc32c(tensors[name]))
    return genuine


def export_checkpoint(prefix: str | os.PathLike, out: str | os.PathLike) -> bool:
    """Export a TF checkpoint (`prefix`.index + `prefix`.data-00000-of-00001) to HDF5. Returns `genuine`.

    A checkpoint whose data file is the genuine release (by sha256) must also match the manifest's CRCs
    tensor by tensor (already checked by the reader against the index; checked again against the manifest).
    """
    tensors = read_checkpoint(prefix)
    data_sha = sha256_file(f"{prefix}.data-00000-of-00001")
    is_release = data_sha == release_sha256("model.ckpt.data-00000-of-00001")
    if is_release:
        require_genuine(tensors, f"checkpoint {prefix}")
        source = f"release checkpoint, data sha256 {data_sha}"
    else:
        source = f"checkpoint {Path(prefix).name}, data sha256 {data_sha}"
    return write_h5(tensors, out, source)


def require_genuine(tensors: dict[str, np.ndarray], origin: str) -> None:
    """Raise WeightsError naming the first tensor whose CRC32C differs from the genuine release's."""
    check_tensors(tensors, origin)
    for name in MANIFEST.shapes:
        actual = tensor_crc32c(tensors[name])
        if actual != MANIFEST.crc32c[name]:
            raise WeightsError(f"{origin}: tensor {name!r} has CRC32C {actual:#010x}, the genuine release has "
                               f"{MANIFEST.crc32c[name]:#010x}; the file is corrupt or not the release")


def default_weights_path() -> Path:
    """Where `ssd-np weights fetch` writes and `Detector.load()` reads the weights.

    `$SSD_NP_WEIGHTS` if set, else `$XDG_CACHE_HOME/ssd_np/<model>.h5` (XDG_CACHE_HOME defaults to ~/.cache).
    """
    if os.environ.get(WEIGHTS_ENV):
        return Path(os.environ[WEIGHTS_ENV]).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "ssd_np" / f"{MODEL_NAME}.h5"


def load_weights(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Load an ssd_np HDF5 weights file strictly. Returns (tensors by TF variable name, file attributes).

    Every problem raises one WeightsError naming the file: a missing file or a folder; a file that is not
    HDF5; any error of the HDF5 library while opening, walking or reading it (a corrupt file: h5py raises
    OSError, RuntimeError, KeyError, ValueError, TypeError... from deep inside); and every strictness check.
    `attrs["genuine"]` is recomputed from the tensors' CRC32Cs and must agree with the stored attribute.
    """
    path = Path(path)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a weights file; give the path of the .h5 file")
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found; run `ssd-np weights fetch`, or export a checkpoint "
                           f"with `ssd-np weights export --checkpoint PREFIX --out {path}`")
    try:
        return _read_weights(path)
    except WeightsError:
        raise
    except Exception as e:  # the HDF5 library's errors on a corrupt file have no common type
        reason = (str(e).splitlines() or [""])[0][:200] or type(e).__name__
        raise WeightsError(f"{path}: not a readable HDF5 file: corrupt or truncated ({reason}); "
                           f"re-download or re-export it") from None


def _read_weights(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    with h5py.File(path, "r") as f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
        if attrs.get("format") != FORMAT or attrs.get("model") != MODEL_NAME:
            raise WeightsError(f"{path}: not an ssd_np weights file for {MODEL_NAME} (format={attrs.get('format')!r}, "
                               f"model={attrs.get('model')!r}); export one with `ssd-np weights export`")
        if attrs.get("format_version") != FORMAT_VERSION:
            raise WeightsError(f"{path}: weights format version {attrs.get('format_version')!r}, this ssd_np reads "
                               f"version {FORMAT_VERSION}; re-export the weights")
        datasets: dict[str, h5py.Dataset] = {}
        f.visititems(lambda name, obj: datasets.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
        tensors, genuine = {}, True
        for name, shape in MANIFEST.shapes.items():
            if name not in datasets:
                raise WeightsError(f"{path}: missing dataset {name!r} (expected shape {shape})")
            ds = datasets[name]
            if ds.dtype != np.float32 or ds.shape != shape:
                raise WeightsError(f"{path}: dataset {name!r} is {ds.dtype}{ds.shape}, expected float32{shape}")
            if "crc32c" not in ds.attrs:
                raise WeightsError(f"{path}: dataset {name!r} has no CRC32C attribute; the file is corrupt or was "
                                   f"not written by ssd_np, re-export it")
            stored = int(ds.attrs["crc32c"])
            array = ds[()]
            actual = tensor_crc32c(array)
            if actual != stored:
                raise WeightsError(f"{path}: dataset {name!r} fails its CRC32C check (stored {stored:#010x}, data "
                                   f"gives {actual:#010x}); the file is corrupt, re-export it")
            genuine = genuine and actual == MANIFEST.crc32c[name]
            tensors[name] = array
        extra = sorted(set(datasets) - set(MANIFEST.shapes))
        if extra:
            raise WeightsError(f"{path}: unexpected dataset {extra[0]!r} ({len(extra)} extra in all); "
                               f"expected exactly the {len(MANIFEST.shapes)} variables of {MODEL_NAME}")
        if attrs.get("genuine") is not genuine:
            raise WeightsError(f"{path}: the file's attribute genuine={attrs.get('genuine')!r} contradicts its tensors "
                               f"(which are {'' if genuine else 'not '}the release's); the file is corrupt, re-export it")
    return tensors, attrs
