"""Weights manifest, stand-in weights, HDF5 export and the strict loader."""
import hashlib

import h5py
import numpy as np
import pytest

from ssd_np.weights.checkpoint import read_index, write_checkpoint
from ssd_np.weights.standin import normal, standin_weights, uniform
from ssd_np.weights.hdf5 import (MANIFEST, WeightsError, export_checkpoint, load_weights, require_genuine,
                            write_h5)
from conftest import ROOT

# sha256 of all 344 tensors' little-endian bytes, concatenated in manifest order; the same with numpy 2.4 and 1.26
# (measured in both venvs), pinned so that any change in the generator or across machines is caught.
STANDIN_SHA256 = {
    (1, "sparse"): "eaf70a2e1ca32c510a0b7b4e53bb7e05ec544036c3a922829bd0e85254d86ff7",
    (2, "dense"): "d9d8f9b50250eecc90f912935cbf53e31224ccb292e0cce60c04ac74540807e3",
}


def tensors_sha256(tensors):
    h = hashlib.sha256()
    for name in MANIFEST.shapes:
        h.update(np.ascontiguousarray(tensors[name], dtype="<f4").tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def seed1():
    return standin_weights(1, "sparse")


def test_manifest_is_the_genuine_index():
    entries = {e.name: e for e in read_index(ROOT / "weights" / "model.ckpt.index").entries}
    assert set(entries) - set(MANIFEST.shapes) == {"global_step"}
    for name, shape in MANIFEST.shapes.items():
        assert entries[name].shape == shape, name
        assert entries[name].crc32c == MANIFEST.crc32c[name], name
    assert len(MANIFEST.shapes) == 344


@pytest.mark.parametrize("seed, profile", sorted(STANDIN_SHA256))
def test_standin_weights_are_pinned(seed, profile):
    tensors = standin_weights(seed, profile)
    assert {k: v.shape for k, v in tensors.items()} == MANIFEST.shapes
    assert all(v.dtype == np.float32 for v in tensors.values())
    assert tensors_sha256(tensors) == STANDIN_SHA256[seed, profile]


def test_standin_generator_uses_exact_arithmetic_only():
    u = uniform(7, "stream", 10_000)
    assert u.min() >= 0 and u.max() < 1
    assert np.all(u * 2.0**53 == np.floor(u * 2.0**53))  # exact multiples of 2**-53
    z = normal(7, "stream", 100_000)
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert not np.array_equal(uniform(7, "stream", 100), uniform(8, "stream", 100))
    assert not np.array_equal(uniform(7, "stream", 100), uniform(7, "other", 100))


def test_standin_rejects_bad_arguments():
    with pytest.raises(ValueError, match="profile"):
        standin_weights(1, "noisy")
    with pytest.raises(ValueError, match="seed"):
        standin_weights(-1)


def test_h5_round_trip(tmp_path, seed1):
    path = tmp_path / "w.h5"
    assert write_h5(seed1, path, "stand-in, seed 1, profile sparse") is False
    loaded, attrs = load_weights(path)
    assert attrs["source"] == "stand-in, seed 1, profile sparse" and attrs["genuine"] is False
    assert tensors_sha256(loaded) == tensors_sha256(seed1)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_export_checkpoint(tmp_path, seed1):
    prefix = tmp_path / "ckpt" / "model.ckpt"
    write_checkpoint(prefix, {**seed1, "global_step": np.int64(0)})
    assert export_checkpoint(prefix, tmp_path / "w.h5") is False
    loaded, attrs = load_weights(tmp_path / "w.h5")
    assert attrs["source"].startswith("checkpoint model.ckpt, data sha256 ")
    assert tensors_sha256(loaded) == tensors_sha256(seed1)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("FeatureExtractor/MobilenetV2/Conv/weights"), "missing variable 'FeatureExtractor/MobilenetV2/Conv/weights'"),
    (lambda t: t.__setitem__("Extra/weights", np.zeros(3, np.float32)), "unexpected variable 'Extra/weights'"),
    (lambda t: t.__setitem__("BoxPredictor_0/BoxEncodingPredictor/biases", np.zeros(13, np.float32)),
     r"'BoxPredictor_0/BoxEncodingPredictor/biases' has shape \(13,\), expected \(12,\)"),
    (lambda t: t.__setitem__("BoxPredictor_0/BoxEncodingPredictor/biases", np.zeros(12, np.float64)),
     "'BoxPredictor_0/BoxEncodingPredictor/biases' has dtype float64, expected float32"),
])
def test_export_rejects_other_models(tmp_path, seed1, change, message):
    tensors = dict(seed1)
    change(tensors)
    prefix = tmp_path / "model.ckpt"
    write_checkpoint(prefix, tensors)
    with pytest.raises(WeightsError, match=message):
        export_checkpoint(prefix, tmp_path / "out" / "w.h5")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_stand_in_is_not_genuine(seed1):
    with pytest.raises(WeightsError, match="tensor 'BoxPredictor_0/BoxEncodingPredictor/biases' has CRC32C"):
        require_genuine(seed1, "test")


def _edit(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.__delitem__("FeatureExtractor/MobilenetV2/Conv/weights"),
     "missing dataset 'FeatureExtractor/MobilenetV2/Conv/weights'"),
    (lambda f: f.create_dataset("Extra/biases", data=np.zeros(3, np.float32)), "unexpected dataset 'Extra/biases'"),
    (lambda f: f["BoxPredictor_1/ClassPredictor/biases"].__setitem__(0, 5.0),
     "'BoxPredictor_1/ClassPredictor/biases' fails its CRC32C check"),
    (lambda f: f.attrs.__setitem__("model", "ssd_inception_v2"), "not an ssd_np weights file"),
    (lambda f: f.attrs.__setitem__("format_version", 99), "format version 99"),
])
def test_loader_is_strict(tmp_path, seed1, edit, message):
    path = tmp_path / "w.h5"
    write_h5(seed1, path, "stand-in")
    _edit(path, edit)
    with pytest.raises(WeightsError, match=message):
        load_weights(path)


def test_loader_wrong_shape(tmp_path, seed1):
    path = tmp_path / "w.h5"
    write_h5(seed1, path, "stand-in")

    def reshape(f):
        del f["BoxPredictor_0/BoxEncodingPredictor/biases"]
        f.create_dataset("BoxPredictor_0/BoxEncodingPredictor/biases", data=np.zeros(4, np.float32))
    _edit(path, reshape)
    with pytest.raises(WeightsError, match=r"'BoxPredictor_0/BoxEncodingPredictor/biases' is float32\(4,\), "
                                           r"expected float32\(12,\)"):
        load_weights(path)


def test_loader_missing_and_unreadable_files(tmp_path):
    with pytest.raises(WeightsError, match="not found; run `ssd-np weights fetch`"):
        load_weights(tmp_path / "absent.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(WeightsError, match="not a readable HDF5 file"):
        load_weights(tmp_path / "junk.h5")
