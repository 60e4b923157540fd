"""Bad weights files and checkpoints: every problem is one `WeightsError` / `CheckpointError` line naming the file,
never an HDF5 library exception or a traceback; seeded single-bit-flip fuzzing of an HDF5 weights file and of a
checkpoint index, each flip giving a clean error or exactly the original tensors."""
import os
import shutil

import h5py
import numpy as np
import pytest

from conftest import DATA
from ssd_np.detector import Detector
from ssd_np.weights import hdf5
from ssd_np.weights.checkpoint import CheckpointError, read_checkpoint
from ssd_np.weights.crc32c import crc32c
from ssd_np.weights.hdf5 import MANIFEST, Manifest, WeightsError, load_weights, write_h5

CKPT = DATA / "tf_written_ckpt"


@pytest.fixture
def weights_copy(tmp_path, standin_h5):
    path = tmp_path / "w.h5"
    shutil.copy(standin_h5, path)
    return path


def one_error(err, *fragments):
    assert len(err) == 1 and err[0].startswith("ssd-np: error: "), err
    for fragment in fragments:
        assert fragment in err[0], (fragment, err[0])


def test_folder_given_as_weights(tmp_path, run_main):
    with pytest.raises(WeightsError, match=f"{tmp_path}: is a folder, not a weights file"):
        load_weights(tmp_path)
    status, _, err = run_main("weights", "info", tmp_path)
    assert status == 2
    one_error(err, str(tmp_path), "is a folder")


def test_missing_crc_attribute(weights_copy):
    name = next(iter(MANIFEST.shapes))
    with h5py.File(weights_copy, "r+") as f:
        del f[name].attrs["crc32c"]
    with pytest.raises(WeightsError, match=f"dataset '{name}' has no CRC32C attribute") as e:
        load_weights(weights_copy)
    assert "-0x1" not in str(e.value)


def test_genuine_attribute_must_agree_with_the_tensors(weights_copy):
    with h5py.File(weights_copy, "r+") as f:
        f.attrs["genuine"] = True  # a stand-in claiming to be the release
    with pytest.raises(WeightsError, match=r"attribute genuine=True contradicts its tensors \(which are not the release"):
        load_weights(weights_copy)


@pytest.mark.parametrize("cut", [0.5, 0.001])
def test_truncated_weights_file(weights_copy, run_main, cut):
    size = weights_copy.stat().st_size
    with open(weights_copy, "r+b") as f:
        f.truncate(int(size * cut))
    status, out, err = run_main("weights", "info", weights_copy)
    assert status == 2 and out == ""
    one_error(err, str(weights_copy), "not a readable HDF5 file: corrupt or truncated")
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        Detector.load(weights_copy)


def test_corrupt_metadata_is_one_line(weights_copy, run_main):
    """Zeroed object headers: h5py raises RuntimeError / KeyError / OSError from deep inside; one line each."""
    data = bytearray(weights_copy.read_bytes())
    data[96:2048] = bytes(2048 - 96)  # after the superblock: the root group's header and its B-tree
    weights_copy.write_bytes(data)
    status, _, err = run_main("weights", "info", weights_copy)
    assert status == 2
    one_error(err, str(weights_copy), "not a readable HDF5 file")
    status, _, err = run_main("detect", DATA / "images" / "tiny_37x23.png", "--weights", weights_copy)
    assert status == 2
    one_error(err, str(weights_copy), "not a readable HDF5 file")


@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**64 + 5)])
def test_standin_seed_out_of_range(tmp_path, run_main, seed):
    status, out, err = run_main("weights", "standin", "--seed", seed, "--out", tmp_path / "w.h5")
    assert status == 2 and out == ""
    one_error(err, "--seed: stand-in seed must be an integer in [0, 2**63)", seed)
    assert list(tmp_path.iterdir()) == []


# --- seeded bit-flip fuzzing --------------------------------------------------------------------------------------


def flip_and_load(path, positions, rng, load, expected, clean_errors, named=None):
    """Flip one random bit at each of `positions` in turn (restoring it after), load, and classify: a clean
    error (one line naming `named`, default `path`), or exactly `expected`. Anything else fails the test.
    Returns (errors, correct) counts."""
    errors = correct = 0
    fd = os.open(path, os.O_RDWR)
    try:
        for pos in positions:
            original = os.pread(fd, 1, pos)
            os.pwrite(fd, bytes([original[0] ^ (1 << int(rng.integers(8)))]), pos)
            try:
                result = load(path)
            except clean_errors as e:
                assert "\n" not in str(e) and str(named or path) in str(e), str(e)
                errors += 1
            else:
                expected(result, pos)
                correct += 1
            finally:
                os.pwrite(fd, original, pos)
    finally:
        os.close(fd)
    return errors, correct


def metadata_positions(path):
    """Byte offsets of the HDF5 file that are not tensor data (superblock, object headers, B-trees, heaps)."""
    is_metadata = np.ones(path.stat().st_size, dtype=bool)
    with h5py.File(path, "r") as f:
        for name in MANIFEST.shapes:
            ds = f[name]
            start = ds.id.get_offset()
            is_metadata[start:start + ds.id.get_storage_size()] = False
    return np.flatnonzero(is_metadata)


def test_fuzz_small_hdf5_weights(tmp_path, monkeypatch):
    """300 bit flips anywhere in a small weights file (the loader run against a 12-variable manifest, so each
    load takes milliseconds): same HDF5 layout code, attributes and checks as the real file."""
    rng = np.random.default_rng(13)
    names = list(MANIFEST.shapes)[::29][:12]
    tensors = {n: rng.standard_normal((2, 3) if i % 2 else (5,)).astype(np.float32) for i, n in enumerate(names)}
    monkeypatch.setattr(hdf5, "MANIFEST", Manifest({n: t.shape for n, t in tensors.items()},
                                                   {n: hdf5.tensor_crc32c(t) for n, t in tensors.items()}))
    path = tmp_path / "small.h5"
    write_h5(tensors, path, "fuzz")
    _, attrs = load_weights(path)

    def expected(result, pos):
        loaded, loaded_attrs = result
        assert all(np.array_equal(loaded[n], tensors[n]) for n in names), pos
        assert {k: v for k, v in loaded_attrs.items() if k != "source"} == \
            {k: v for k, v in attrs.items() if k != "source"}, pos  # "source" is free text, unchecked

    positions = rng.integers(0, path.stat().st_size, 300)
    errors, correct = flip_and_load(path, positions, rng, load_weights, expected, WeightsError)
    assert errors + correct == 300 and errors >= 30  # 48 with this seed (h5py 3.16): much of a small file is slack


def test_fuzz_standin_hdf5_metadata(weights_copy, standin_h5):
    """24 bit flips in the metadata of a real stand-in weights file (68 MB, 344 datasets): `weights info`,
    `detect` and `Detector.load` all go through load_weights."""
    rng = np.random.default_rng(2026)
    reference, attrs = load_weights(standin_h5)

    def expected(result, pos):
        loaded, loaded_attrs = result
        assert all(np.array_equal(loaded[n], reference[n]) for n in MANIFEST.shapes), pos
        assert {k: v for k, v in loaded_attrs.items() if k != "source"} == \
            {k: v for k, v in attrs.items() if k != "source"}, pos

    positions = rng.choice(metadata_positions(weights_copy), 24, replace=False)
    errors, correct = flip_and_load(weights_copy, positions, rng, load_weights, expected, WeightsError)
    assert errors + correct == 24 and errors > 0


def test_fuzz_checkpoint_index(tmp_path):
    """300 bit flips over a TF-written checkpoint index: CheckpointError, or exactly the tensors TF wrote."""
    for name in ("model.ckpt.index", "model.ckpt.data-00000-of-00001"):
        shutil.copy(CKPT / name, tmp_path / name)
    values = dict(np.load(CKPT / "values.npz"))
    prefix = tmp_path / "model.ckpt"
    index = tmp_path / "model.ckpt.index"

    def expected(result, pos):
        assert set(result) == set(values), pos
        for name, value in values.items():
            assert result[name].dtype == value.dtype and result[name].tobytes() == value.tobytes(), (pos, name)

    rng = np.random.default_rng(7)
    positions = rng.integers(0, index.stat().st_size, 300)
    errors, correct = flip_and_load(index, positions, rng, lambda _: read_checkpoint(prefix), expected,
                                    CheckpointError, named=prefix)
    assert errors + correct == 300 and errors > 250
    assert crc32c(np.frombuffer(index.read_bytes(), np.uint8)) == \
        crc32c(np.frombuffer((CKPT / "model.ckpt.index").read_bytes(), np.uint8))  # every flip undone
