"""TF checkpoint (tensor bundle) reader and writer: the genuine index, a TF-written checkpoint, round trips,
and corrupt or unsupported input. No TensorFlow here: TF's output is the fixture in tests/data/tf_written_ckpt
(made by tools/make_tf_checkpoint_fixture.py); tools/tf_roundtrip.py checks our writer against TF itself.
"""
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest

import ssd_np.weights.checkpoint as ckpt
from ssd_np.weights.checkpoint import (DTYPES, CheckpointError, data_path, index_path, read_checkpoint, read_index,
                               write_checkpoint)
from ssd_np.weights.crc32c import crc32c, mask

REPO = Path(__file__).resolve().parents[1]
GENUINE_INDEX = REPO / "weights/model.ckpt.index"
LISTING = REPO / "tests/data/model.ckpt.index.listing.tsv"
TF_CKPT = REPO / "tests/data/tf_written_ckpt/model.ckpt"


def random_tensor(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Random bit patterns (NaN payloads, subnormals, ... included) of `dtype`, shaped `shape`."""
    raw = rng.integers(0, 256, size=int(np.prod(shape)) * dtype.itemsize, dtype=np.uint8)
    if dtype == np.bool_:
        return (raw & 1).astype(bool).reshape(shape)
    return raw.view(dtype).reshape(shape)


def small_checkpoint(tmp_path: Path) -> tuple[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    tensors = {
        "a/weights": rng.standard_normal((3, 3, 4, 2)).astype(np.float32),
        "b/biases": rng.standard_normal(5).astype(np.float32),
        "global_step": np.int64(1234),
    }
    prefix = str(tmp_path / "model.ckpt")
    write_checkpoint(prefix, tensors)
    return prefix, tensors


def flip_byte(path: str, offset: int) -> None:
    raw = bytearray(Path(path).read_bytes())
    raw[offset] ^= 0x01
    Path(path).write_bytes(bytes(raw))


def write_raw_index(path: Path, entry_proto: bytes) -> None:
    """An index holding a valid header and one tensor 't' with the given serialized BundleEntryProto."""
    path.write_bytes(ckpt._encode_table([(b"", ckpt._encode_header()), (b"t", entry_proto)]))


# --- the genuine release index ---------------------------------------------------------------------

def test_genuine_index_matches_listing():
    """All 345 entries as the listing says. The listing's crc column is the MASKED CRC32C, as stored in
    BundleEntryProto.crc32c; TensorEntry.crc32c is the plain CRC of the bytes, hence mask() below."""
    index = read_index(GENUINE_INDEX)
    rows = [line.split("\t") for line in LISTING.read_text().splitlines()]
    listed = [[e.name, e.dtype.name, "x".join(map(str, e.shape)) or "scalar", str(e.offset), str(e.size),
               str(mask(e.crc32c))] for e in index.entries]
    assert (index.num_shards, index.version) == (1, 1)
    assert len(rows) == len(listed) == 345
    mismatches = [(row, got) for row, got in zip(rows, listed) if row != got]
    print(f"genuine index vs listing: {len(mismatches)} mismatching entries of {len(rows)}")
    assert mismatches == []
    last = index.entries[-1]
    assert last.offset + last.size == 67505156  # the release data file's size (SHA256SUMS)


def test_genuine_index_reencodes_byte_identical():
    index = read_index(GENUINE_INDEX)
    items = [(b"", ckpt._encode_header())] + [(e.name.encode(), ckpt._encode_entry(e)) for e in index.entries]
    assert ckpt._encode_table(items) == GENUINE_INDEX.read_bytes()


def test_genuine_index_without_data_file():
    with pytest.raises(CheckpointError, match=r"model\.ckpt\.data-00000-of-00001 not found"):
        read_checkpoint(GENUINE_INDEX)


# --- a checkpoint written by TensorFlow ------------------------------------------------------------

def test_reads_tf_written_checkpoint():
    expected = np.load(TF_CKPT.parent / "values.npz")
    tensors = read_checkpoint(TF_CKPT)
    assert sorted(tensors) == sorted(expected.files)
    for name, value in tensors.items():
        assert value.dtype == expected[name].dtype and value.shape == expected[name].shape, name
        assert value.tobytes() == expected[name].tobytes(), name
    assert tensors["global_step"].dtype == np.int64 and tensors["global_step"].shape == ()
    assert np.isnan(tensors["BoxPredictor_0/BoxEncodingPredictor/biases"]).any()


def test_writer_reproduces_tf_files_byte_for_byte(tmp_path):
    expected = np.load(TF_CKPT.parent / "values.npz")
    prefix = tmp_path / "model.ckpt"
    write_checkpoint(prefix, {name: expected[name] for name in expected.files})
    assert Path(index_path(prefix)).read_bytes() == Path(index_path(TF_CKPT)).read_bytes()
    assert Path(data_path(prefix)).read_bytes() == Path(data_path(TF_CKPT)).read_bytes()


# --- round trips -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=lambda d: d.name)
def test_roundtrip_bit_identical(tmp_path, dtype):
    rng = np.random.default_rng(1)
    shapes = {"scalar": (), "empty": (0,), "one": (1,), "vector": (7,), "conv": (3, 3, 5, 2), "empty_4d": (2, 0, 3, 1)}
    tensors = {f"layer/{name}": random_tensor(rng, dtype, shape) for name, shape in shapes.items()}
    prefix = str(tmp_path / "model.ckpt")
    write_checkpoint(prefix, tensors)

    back = read_checkpoint(prefix)
    assert list(back) == sorted(tensors)
    for name, value in tensors.items():
        assert back[name].dtype == dtype and back[name].shape == value.shape, name
        assert back[name].tobytes() == value.tobytes(), name

    entries = read_index(prefix).entries
    assert [e.name for e in entries] == sorted(tensors)
    offset = 0
    for e in entries:
        value = tensors[e.name]
        assert (e.dtype, e.shape, e.shard_id, e.offset, e.size) == (dtype, value.shape, 0, offset, value.nbytes)
        assert e.crc32c == crc32c(value.tobytes())
        offset += e.size
    assert os.path.getsize(data_path(prefix)) == offset


def test_roundtrip_converts_byte_order_and_layout(tmp_path):
    base = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    tensors = {"big_endian": base.astype(">f4"), "strided": base[:, ::2, ::-1], "python_int": 7}
    prefix = tmp_path / "model.ckpt"
    write_checkpoint(prefix, tensors)
    back = read_checkpoint(f"{prefix}.index")  # the .index path works as well as the prefix
    assert back["big_endian"].dtype == np.float32 and np.array_equal(back["big_endian"], base)
    assert np.array_equal(back["strided"], base[:, ::2, ::-1])
    assert back["python_int"].dtype == np.int64 and back["python_int"] == 7


def test_read_selected_names_in_given_order(tmp_path):
    prefix, tensors = small_checkpoint(tmp_path)
    back = read_checkpoint(prefix, names=["global_step", "a/weights"])
    assert list(back) == ["global_step", "a/weights"]
    assert back["a/weights"].tobytes() == tensors["a/weights"].tobytes()
    with pytest.raises(CheckpointError, match="no tensor 'nope'"):
        read_checkpoint(prefix, names=["nope"])


def test_two_shards(tmp_path):
    """A bundle whose tensors live in two data files (as a sharded Saver's MergeBundles leaves it)."""
    first, second = tmp_path / "first", tmp_path / "second"
    write_checkpoint(first, {"a": np.arange(3, dtype=np.float32)})
    write_checkpoint(second, {"b": np.arange(4, dtype=np.int64)})
    entries = read_index(first).entries + tuple(dataclasses.replace(e, shard_id=1) for e in read_index(second).entries)
    header = ckpt._pb_varint(1, 2) + ckpt._pb_message(3, ckpt._pb_varint(1, 1))  # num_shards = 2, version 1
    items = [(b"", header)] + [(e.name.encode(), ckpt._encode_entry(e)) for e in entries]
    prefix = tmp_path / "merged"
    Path(index_path(prefix)).write_bytes(ckpt._encode_table(items))
    os.rename(data_path(first), data_path(prefix, 0, 2))
    os.rename(data_path(second), data_path(prefix, 1, 2))
    back = read_checkpoint(prefix)
    assert read_index(prefix).num_shards == 2
    assert np.array_equal(back["a"], np.arange(3)) and np.array_equal(back["b"], np.arange(4))


def test_overwrite_existing_checkpoint(tmp_path):
    prefix, _ = small_checkpoint(tmp_path)
    write_checkpoint(prefix, {"x": np.ones(3, np.float32)})
    assert list(read_checkpoint(prefix)) == ["x"]
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt.data-00000-of-00001", "model.ckpt.index"]


def test_index_with_several_data_blocks(tmp_path):
    """3000 long names make a ~350 KB index: two 256 KiB data blocks, each read and CRC-checked."""
    rng = np.random.default_rng(2)
    tensors = {f"long/{rng.bytes(48).hex()}/{i}": np.float32(i) for i in range(3000)}
    prefix = str(tmp_path / "model.ckpt")
    write_checkpoint(prefix, tensors)
    assert os.path.getsize(index_path(prefix)) > ckpt.BLOCK_SIZE
    back = read_checkpoint(prefix)
    assert list(back) == sorted(tensors) and all(back[k] == v for k, v in tensors.items())

    flip_byte(index_path(prefix), ckpt.BLOCK_SIZE + 1000)  # inside the second data block
    with pytest.raises(CheckpointError, match=r"data block at offset [1-9]\d* fails its CRC32C check"):
        read_index(prefix)


# --- bad input -------------------------------------------------------------------------------------

def test_missing_index(tmp_path):
    with pytest.raises(CheckpointError, match=r"model\.ckpt\.index not found; pass the checkpoint prefix"):
        read_index(tmp_path / "model.ckpt")


def test_missing_data_file(tmp_path):
    prefix, _ = small_checkpoint(tmp_path)
    os.remove(data_path(prefix))
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001 not found; .* copy them together"):
        read_checkpoint(prefix)


@pytest.mark.parametrize("keep", [10, 100, -1, -10])
def test_truncated_index(tmp_path, keep):
    prefix, _ = small_checkpoint(tmp_path)
    path = index_path(prefix)
    Path(path).write_bytes(Path(path).read_bytes()[:keep])
    with pytest.raises(CheckpointError, match=r"model\.ckpt\.index: .*(truncated|shorter).*copy it again") as error:
        read_index(prefix)
    assert path in str(error.value)


def test_flipped_byte_in_index_block(tmp_path):
    prefix, _ = small_checkpoint(tmp_path)
    flip_byte(index_path(prefix), 20)  # inside the first (only) data block
    with pytest.raises(CheckpointError, match=r"data block at offset 0 fails its CRC32C check \(stored 0x[0-9a-f]{8}, "
                                              r"computed 0x[0-9a-f]{8}\)"):
        read_index(prefix)


@pytest.mark.parametrize("block", ["metaindex", "index"])
def test_flipped_byte_in_metaindex_or_index_block(tmp_path, block):
    prefix, _ = small_checkpoint(tmp_path)
    footer = Path(index_path(prefix)).read_bytes()[-ckpt.FOOTER_SIZE:]
    metaindex_handle, pos = ckpt._read_handle(footer, 0)
    index_handle, _ = ckpt._read_handle(footer, pos)
    offset = (metaindex_handle if block == "metaindex" else index_handle)[0]
    flip_byte(index_path(prefix), offset)
    with pytest.raises(CheckpointError, match=rf": {block} block at offset {offset} fails its CRC32C check"):
        read_index(prefix)


def test_bad_footer_magic(tmp_path):
    prefix, _ = small_checkpoint(tmp_path)
    flip_byte(index_path(prefix), os.path.getsize(index_path(prefix)) - 1)
    magic = r"bad table magic number 0xda4775248b80fb57 \(expected 0xdb4775248b80fb57\)"
    with pytest.raises(CheckpointError, match=magic):
        read_index(prefix)


def test_truncated_data_file(tmp_path):
    prefix, _ = small_checkpoint(tmp_path)
    path = data_path(prefix)
    Path(path).write_bytes(Path(path).read_bytes()[:-1])
    with pytest.raises(CheckpointError, match=r"data-00000-of-00001 is truncated: tensor 'global_step' needs bytes "
                                              r"\[308, 316\), the file has 315"):
        read_checkpoint(prefix)


def test_flipped_byte_in_tensor(tmp_path):
    prefix, tensors = small_checkpoint(tmp_path)
    entry = next(e for e in read_index(prefix).entries if e.name == "b/biases")
    flip_byte(data_path(prefix), entry.offset + 3)
    expected = f"{crc32c(tensors['b/biases'].tobytes()):#010x}"
    with pytest.raises(CheckpointError, match=rf"tensor 'b/biases' fails its CRC32C check \(index says {expected}, "
                                              rf"data gives 0x[0-9a-f]{{8}}\)"):
        read_checkpoint(prefix)
    assert list(read_checkpoint(prefix, names=["a/weights"])) == ["a/weights"]  # intact tensors still readable


def test_unsupported_dtype_in_index(tmp_path):
    write_raw_index(tmp_path / "s.index", ckpt._pb_varint(1, 7) + ckpt._pb_message(2, b""))  # DT_STRING
    with pytest.raises(CheckpointError, match="tensor 't' has TF DataType enum 7; supported: 1 \\(float32\\)"):
        read_index(tmp_path / "s")


def test_size_shape_inconsistency_in_index(tmp_path):
    shape = ckpt._pb_message(2, ckpt._pb_varint(1, 2))  # (2,)
    write_raw_index(tmp_path / "s.index", ckpt._pb_varint(1, 1) + ckpt._pb_message(2, shape) + ckpt._pb_varint(5, 4))
    message = r"tensor 't': size 4 bytes does not match its float32 shape \(2,\) \(8 bytes\)"
    with pytest.raises(CheckpointError, match=message):
        read_index(tmp_path / "s")


def test_partitioned_tensor_in_index(tmp_path):
    write_raw_index(tmp_path / "s.index", ckpt._pb_varint(1, 1) + ckpt._pb_message(2, b"") + ckpt._pb_message(7, b""))
    with pytest.raises(CheckpointError, match="tensor 't' is partitioned"):
        read_index(tmp_path / "s")


# --- writer failures leave nothing behind ----------------------------------------------------------

@pytest.mark.parametrize("bad", [np.array(["x"], dtype=object), np.zeros(2, np.complex64), np.array(["ab"])],
                         ids=["object", "complex64", "str"])
def test_writer_rejects_unsupported_dtype(tmp_path, bad):
    tensors = {"a": np.zeros(2, np.float32), "b": bad, "c": np.zeros(2, np.float32)}
    with pytest.raises(CheckpointError, match=rf"tensor 'b' has dtype {bad.dtype}, .* convert it to one of"):
        write_checkpoint(tmp_path / "model.ckpt", tensors)
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_empty_name(tmp_path):
    with pytest.raises(CheckpointError, match="tensor name '' is not a non-empty string"):
        write_checkpoint(tmp_path / "model.ckpt", {"a": np.zeros(1, np.float32), "": np.zeros(1, np.float32)})
    assert list(tmp_path.iterdir()) == []


def test_writer_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    def fail(items):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "_encode_table", fail)  # after the data file is written
    with pytest.raises(OSError, match="disk full"):
        small_checkpoint(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_writer_failure_between_renames_leaves_nothing(tmp_path, monkeypatch):
    real_replace, calls = os.replace, []

    def replace_once(src, dst):
        calls.append(dst)
        if len(calls) > 1:
            raise OSError("rename failed")
        real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace_once)
    with pytest.raises(OSError, match="rename failed"):
        small_checkpoint(tmp_path)
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []
