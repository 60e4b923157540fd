"""TensorFlow checkpoints (the V2 "tensor bundle" format) read and written in pure Python + NumPy.

Mirrors `tensorflow/core/util/tensor_bundle/tensor_bundle.cc` (BundleWriter, BundleReader) with the
LevelDB-style table of `tensorflow/core/lib/io/` (now `tsl/lib/io/`): `table_builder.cc`, `block_builder.cc`,
`format.cc`, and the protos of `tensorflow/core/protobuf/tensor_bundle.proto`. No protobuf or TF dependency.

A checkpoint `PREFIX` is two files (one data shard, as tf.compat.v1.train.Saver writes):

`PREFIX.data-00000-of-00001`: the tensors' raw little-endian bytes, C order, back to back (no padding), in
key order. `PREFIX.data-SSSSS-of-NNNNN` for shard SSSSS of NNNNN.

`PREFIX.index`: an SSTable mapping key -> serialized proto, keys sorted bytewise:
    data block* | metaindex block (empty) | index block | footer (48 bytes)
  - block = entries | restarts uint32[R] | R uint32, followed by a 5-byte trailer:
    type byte (0 = uncompressed) + fixed32 mask(crc32c(block contents + type byte)).
  - entry = varint shared | varint non_shared | varint value_len | key[shared:] | value; the key shares
    `shared` leading bytes with the previous key, except at restart points (every 16th entry in data
    blocks, every entry in the index block) where shared = 0. A data block is closed once its size
    estimate (bytes + 4 * (R + 1)) reaches 256 KiB.
  - index block: one entry per data block, key = a short separator >= the block's last key and < the
    next block's first key (the last block: the short successor of its last key), value = block handle.
  - block handle = varint64 offset | varint64 size (size excludes the trailer).
  - footer = metaindex handle | index handle | zero padding to 40 bytes | fixed64 magic
    0xdb4775248b80fb57 (little-endian).
  - key "" -> BundleHeaderProto {num_shards = 1; endianness = 2 (0 = LITTLE); version = 3 {producer = 1;
    min_consumer = 2}}.
  - key = tensor name -> BundleEntryProto {dtype = 1 (TF DataType enum); shape = 2 {dim = 2 {size = 1}};
    shard_id = 3; offset = 4; size = 5; crc32c = 6 (fixed32, masked CRC32C of the tensor bytes);
    slices = 7 (partitioned tensors: not supported)}.

API: `read_index(prefix) -> BundleIndex` (header fields + `TensorEntry`s in key order),
`read_checkpoint(prefix, names=None) -> {name: array}`, `write_checkpoint(prefix, {name: array})`.
`TensorEntry.crc32c` is the plain CRC32C of the tensor bytes (the index stores it masked).
Every block checksum and every tensor checksum is verified on read; any problem raises `CheckpointError`.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from ssd_np.atomic import atomic_path
from ssd_np.weights.crc32c import crc32c, mask, unmask

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # 2 block handles padded to 40 bytes + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # type byte + fixed32 masked CRC
BLOCK_SIZE = 262144  # table::Options.block_size
BLOCK_RESTART_INTERVAL = 16  # table::Options.block_restart_interval (the index block uses 1)
TENSOR_BUNDLE_VERSION = 1  # kTensorBundleVersion

# TF DataType enum (tensorflow/core/framework/types.proto) -> little-endian NumPy dtype.
DTYPES = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_TF_DTYPE = {dtype: enum for enum, dtype in DTYPES.items()}


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, unsupported, or cannot be written."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a checkpoint index. `crc32c` is the plain (unmasked) CRC32C of the tensor's bytes."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int


@dataclass(frozen=True)
class BundleIndex:
    """A parsed `.index` file: header fields and the tensor entries in key order."""

    path: str
    num_shards: int
    version: int  # the producer's tensor bundle format version
    entries: tuple[TensorEntry, ...]


def index_path(prefix: str | os.PathLike) -> str:
    return f"{_prefix(prefix)}.index"


def data_path(prefix: str | os.PathLike, shard_id: int = 0, num_shards: int = 1) -> str:
    return f"{_prefix(prefix)}.data-{shard_id:05d}-of-{num_shards:05d}"


def _prefix(prefix_or_index: str | os.PathLike) -> str:
    """The checkpoint prefix, given either the prefix or the path of its `.index` file."""
    prefix = os.fspath(prefix_or_index)
    return prefix[: -len(".index")] if prefix.endswith(".index") else prefix


# --- protobuf wire format -------------------------------------------------------------------------

class _Corrupt(Exception):
    """Malformed bytes inside the index file; `read_index` turns it into a CheckpointError."""


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("truncated or overlong varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        shift += 7
        if byte < 0x80:
            return value, pos


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """Decode a serialized protobuf message into (field number, value) pairs, in wire order.

    Varint and fixed-width fields give ints; length-delimited fields give bytes.
    """
    fields, pos = [], 0
    while pos < len(buf):
        tag, pos = _read_varint(buf, pos)
        number, wire_type = tag >> 3, tag & 7
        if wire_type == 0:
            value, pos = _read_varint(buf, pos)
        elif wire_type in (1, 5):
            width = 8 if wire_type == 1 else 4
            if pos + width > len(buf):
                raise _Corrupt("truncated fixed-width protobuf field")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire_type == 2:
            length, pos = _read_varint(buf, pos)
            if pos + length > len(buf):
                raise _Corrupt("truncated length-delimited protobuf field")
            value, pos = buf[pos:pos + length], pos + length
        else:
            raise _Corrupt(f"unsupported protobuf wire type {wire_type}")
        fields.append((number, value))
    return fields


def _int_field(fields: list, number: int, default: int = 0) -> int:
    """The last value of a scalar field (protobuf semantics), `default` when absent."""
    values = [v for n, v in fields if n == number]
    if values and not isinstance(values[-1], int):
        raise _Corrupt(f"protobuf field {number} should be a number")
    return values[-1] if values else default


def _message_fields(fields: list, number: int) -> list[bytes]:
    """All values of a (repeated) sub-message field."""
    values = [v for n, v in fields if n == number]
    if not all(isinstance(v, bytes) for v in values):
        raise _Corrupt(f"protobuf field {number} should be a message")
    return values


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _pb_varint(number: int, value: int) -> bytes:
    """A varint field, omitted when 0 (proto3 default)."""
    return _varint(number << 3) + _varint(value) if value else b""


def _pb_message(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _pb_fixed32(number: int, value: int) -> bytes:
    return _varint(number << 3 | 5) + struct.pack("<I", value) if value else b""


# --- table (SSTable) reading ----------------------------------------------------------------------

def _read_handle(buf: bytes, pos: int) -> tuple[tuple[int, int], int]:
    """A block handle (offset, size) at `pos`, and the position after it."""
    offset, pos = _read_varint(buf, pos)
    size, pos = _read_varint(buf, pos)
    return (offset, size), pos


def _read_block(raw: bytes, handle: tuple[int, int], what: str) -> bytes:
    """The contents of the block at `handle`, after checking its trailer's type byte and CRC."""
    offset, size = handle
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(raw) - FOOTER_SIZE:
        raise _Corrupt(f"{what} at bytes [{offset}, {end}) runs past the end of the file")
    block_type = raw[end]
    stored = unmask(int.from_bytes(raw[end + 1:end + 5], "little"))
    actual = crc32c(raw[offset:end + 1])
    if actual != stored:
        raise _Corrupt(f"{what} at offset {offset} fails its CRC32C check "
                       f"(stored {stored:#010x}, computed {actual:#010x})")
    if block_type != 0:
        raise _Corrupt(f"{what} at offset {offset} has compression type {block_type}; only uncompressed "
                       f"blocks (type 0, what TF's BundleWriter writes) are supported")
    return raw[offset:end]


def _block_items(block: bytes) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of a block, undoing the prefix compression of keys."""
    if len(block) < 4:
        raise _Corrupt("block too short for its restart count")
    num_restarts = int.from_bytes(block[-4:], "little")
    entries_end = len(block) - 4 * (num_restarts + 1)
    if num_restarts < 1 or entries_end < 0:
        raise _Corrupt(f"block has an invalid restart count {num_restarts}")
    items, key, pos = [], b"", 0
    while pos < entries_end:
        shared, pos = _read_varint(block, pos)
        non_shared, pos = _read_varint(block, pos)
        value_len, pos = _read_varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > entries_end:
            raise _Corrupt(f"block entry at byte {pos} is out of bounds")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        items.append((key, block[pos:pos + value_len]))
        pos += value_len
    return items


def _table_items(raw: bytes) -> list[tuple[bytes, bytes]]:
    """All (key, value) entries of an SSTable file, every block's CRC verified, keys strictly increasing."""
    if len(raw) < FOOTER_SIZE:
        raise _Corrupt(f"file is {len(raw)} bytes, shorter than the {FOOTER_SIZE}-byte table footer")
    footer = raw[-FOOTER_SIZE:]
    magic = int.from_bytes(footer[-8:], "little")
    if magic != TABLE_MAGIC:
        raise _Corrupt(f"bad table magic number {magic:#018x} (expected {TABLE_MAGIC:#018x})")
    metaindex_handle, pos = _read_handle(footer, 0)
    index_handle, _ = _read_handle(footer, pos)
    _read_block(raw, metaindex_handle, "metaindex block")
    items = []
    for _, handle in _block_items(_read_block(raw, index_handle, "index block")):
        items += _block_items(_read_block(raw, _read_handle(handle, 0)[0], "data block"))
    for (previous, _), (key, _) in zip(items, items[1:]):
        if key <= previous:
            raise _Corrupt(f"keys out of order: {key!r} after {previous!r}")
    return items


# --- table (SSTable) writing ----------------------------------------------------------------------

class _BlockBuilder:
    """Accumulates one block's prefix-compressed entries (mirrors table::BlockBuilder)."""

    def __init__(self, restart_interval: int):
        self.restart_interval = restart_interval
        self.buffer = bytearray()
        self.restarts = [0]
        self.counter = 0
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.counter < self.restart_interval:
            limit = min(len(key), len(self.last_key))
            while shared < limit and key[shared] == self.last_key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buffer))
            self.counter = 0
        self.buffer += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        self.buffer += key[shared:] + value
        self.last_key = key
        self.counter += 1

    def size_estimate(self) -> int:
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        return bytes(self.buffer) + struct.pack(f"<{len(self.restarts) + 1}I", *self.restarts, len(self.restarts))


def _append_block(out: bytearray, contents: bytes) -> bytes:
    """Append an uncompressed block and its trailer to `out`; return the block's encoded handle."""
    handle = _varint(len(out)) + _varint(len(contents))
    out += contents + b"\x00" + struct.pack("<I", mask(crc32c(contents + b"\x00")))
    return handle


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """A short key k with start <= k < limit (FindShortestSeparator in table_builder.cc)."""
    n = 0
    while n < min(len(start), len(limit)) and start[n] == limit[n]:
        n += 1
    if n < min(len(start), len(limit)) and start[n] < 0xFF and start[n] + 1 < limit[n]:
        return start[:n] + bytes([start[n] + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """A short key >= `key` (FindShortSuccessor in table_builder.cc): first non-0xff byte incremented."""
    for i, byte in enumerate(key):
        if byte != 0xFF:
            return key[:i] + bytes([byte + 1])
    return key


def _encode_table(items: list[tuple[bytes, bytes]]) -> bytes:
    """An SSTable holding `items` (sorted, unique keys), block for block as table::TableBuilder writes it."""
    out = bytearray()
    index = _BlockBuilder(restart_interval=1)
    data = _BlockBuilder(BLOCK_RESTART_INTERVAL)
    pending_handle, last_key = None, b""
    for key, value in items:
        if data.buffer and len(key) + len(value) >= 2 * BLOCK_SIZE:
            pending_handle, data = _append_block(out, data.finish()), _BlockBuilder(BLOCK_RESTART_INTERVAL)
        if pending_handle is not None:
            index.add(_shortest_separator(last_key, key), pending_handle)
            pending_handle = None
        data.add(key, value)
        last_key = key
        if data.size_estimate() >= BLOCK_SIZE:
            pending_handle, data = _append_block(out, data.finish()), _BlockBuilder(BLOCK_RESTART_INTERVAL)
    if data.buffer:
        pending_handle = _append_block(out, data.finish())
    metaindex_handle = _append_block(out, _BlockBuilder(BLOCK_RESTART_INTERVAL).finish())
    if pending_handle is not None:
        index.add(_short_successor(last_key), pending_handle)
    index_handle = _append_block(out, index.finish())
    out += (metaindex_handle + index_handle).ljust(FOOTER_SIZE - 8, b"\x00")
    out += struct.pack("<Q", TABLE_MAGIC)
    return bytes(out)


# --- bundle protos --------------------------------------------------------------------------------

def _parse_header(value: bytes) -> tuple[int, int]:
    """(num_shards, producer version) of a BundleHeaderProto, checked for what this reader supports."""
    fields = _proto_fields(value)
    num_shards = _int_field(fields, 1)
    endianness = _int_field(fields, 2)
    versions = _message_fields(fields, 3)
    version = _proto_fields(versions[-1]) if versions else []
    producer, min_consumer = _int_field(version, 1), _int_field(version, 2)
    if num_shards < 1:
        raise _Corrupt(f"header has num_shards = {num_shards}")
    if endianness != 0:
        raise _Corrupt("the checkpoint was written on a big-endian machine; only little-endian is supported")
    if min_consumer > TENSOR_BUNDLE_VERSION:
        raise _Corrupt(f"the checkpoint needs a reader of format version >= {min_consumer}, this one reads "
                       f"version {TENSOR_BUNDLE_VERSION}")
    return num_shards, producer


def _parse_shape(value: bytes) -> tuple[int, ...]:
    fields = _proto_fields(value)
    if _int_field(fields, 3):
        raise _Corrupt("shape has unknown rank")
    dims = tuple(_int_field(_proto_fields(dim), 1) for dim in _message_fields(fields, 2))
    if any(d >= 2**62 for d in dims):
        raise _Corrupt(f"shape has a negative or huge dimension {dims}")
    return dims


def _parse_entry(name: str, value: bytes, num_shards: int) -> TensorEntry:
    fields = _proto_fields(value)
    enum = _int_field(fields, 1)
    if enum not in DTYPES:
        raise _Corrupt(f"tensor {name!r} has TF DataType enum {enum}; supported: "
                       f"{', '.join(f'{e} ({d.name})' for e, d in DTYPES.items())}")
    if _message_fields(fields, 7):
        raise _Corrupt(f"tensor {name!r} is partitioned (has slices); partitioned variables are not supported")
    shapes = _message_fields(fields, 2)
    entry = TensorEntry(name=name, dtype=DTYPES[enum], shape=_parse_shape(shapes[-1]) if shapes else (),
                        shard_id=_int_field(fields, 3), offset=_int_field(fields, 4), size=_int_field(fields, 5),
                        crc32c=unmask(_int_field(fields, 6)))
    expected = math.prod(entry.shape) * entry.dtype.itemsize
    if entry.size != expected:
        raise _Corrupt(f"tensor {name!r}: size {entry.size} bytes does not match its {entry.dtype.name} shape "
                       f"{entry.shape} ({expected} bytes)")
    if entry.shard_id >= num_shards:
        raise _Corrupt(f"tensor {name!r} is in shard {entry.shard_id}, the header says {num_shards} shards")
    return entry


def _encode_header() -> bytes:
    version = _pb_varint(1, TENSOR_BUNDLE_VERSION)  # min_consumer = 0 is the default, omitted
    return _pb_varint(1, 1) + _pb_message(3, version)  # num_shards = 1, endianness LITTLE (default)


def _encode_entry(entry: TensorEntry) -> bytes:
    shape = b"".join(_pb_message(2, _pb_varint(1, d)) for d in entry.shape)
    return (_pb_varint(1, _TF_DTYPE[entry.dtype]) + _pb_message(2, shape) + _pb_varint(3, entry.shard_id)
            + _pb_varint(4, entry.offset) + _pb_varint(5, entry.size) + _pb_fixed32(6, mask(entry.crc32c)))


# --- public API -----------------------------------------------------------------------------------

def read_index(prefix: str | os.PathLike) -> BundleIndex:
    """Parse `prefix.index` (the prefix, or the `.index` path itself), verifying every block's CRC."""
    path = index_path(prefix)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint index {path} not found; pass the checkpoint prefix "
                              f"(e.g. weights/model.ckpt, the path before '.index')") from None
    try:
        items = _table_items(raw)
        if not items or items[0][0] != b"":
            raise _Corrupt("the first entry is not the bundle header (key '')")
        num_shards, version = _parse_header(items[0][1])
        entries = tuple(_parse_entry(key.decode("utf-8"), value, num_shards) for key, value in items[1:])
    except (_Corrupt, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint index {path}: {e}; the file is truncated, corrupt or not a TF "
                              f"checkpoint index: copy it again (or rewrite the checkpoint)") from None
    return BundleIndex(path=path, num_shards=num_shards, version=version, entries=entries)


def _read_tensor(f, entry: TensorEntry, path: str, file_size: int) -> np.ndarray:
    """The tensor `entry` from the open data file `f`, its size and CRC32C verified."""
    if entry.offset + entry.size > file_size:
        raise CheckpointError(f"checkpoint data file {path} is truncated: tensor {entry.name!r} needs bytes "
                              f"[{entry.offset}, {entry.offset + entry.size}), the file has {file_size}; "
                              f"copy the file again")
    array = np.empty(entry.shape, dtype=entry.dtype)
    f.seek(entry.offset)
    f.readinto(memoryview(array.reshape(-1).view(np.uint8)))
    actual = crc32c(array)
    if actual != entry.crc32c:
        raise CheckpointError(f"checkpoint data file {path}: tensor {entry.name!r} fails its CRC32C check "
                              f"(index says {entry.crc32c:#010x}, data gives {actual:#010x}); the data file is "
                              f"corrupt or belongs to another index: copy both files again")
    return array


def read_checkpoint(prefix: str | os.PathLike, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Read tensors (all, in key order, or `names` in that order) from the checkpoint `prefix`.

    Returns name -> array with the stored dtype and shape (little-endian dtypes, which are the native
    ones on x86/ARM). Every tensor's size and CRC32C is verified. Raises CheckpointError.
    """
    index = read_index(prefix)
    by_name = {entry.name: entry for entry in index.entries}
    missing = [name for name in (names or []) if name not in by_name]
    if missing:
        raise CheckpointError(f"checkpoint {_prefix(prefix)} has no tensor {missing[0]!r} ({len(missing)} "
                              f"missing in all; it has {len(by_name)} tensors, see read_index)")
    selected = [by_name[name] for name in names] if names is not None else list(index.entries)
    tensors = {}
    for shard in sorted({entry.shard_id for entry in selected}):
        path = data_path(prefix, shard, index.num_shards)
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise CheckpointError(f"checkpoint data file {path} not found; a checkpoint is the .index file plus "
                                  f"its .data-*-of-* files, copy them together") from None
        with f:
            file_size = os.fstat(f.fileno()).st_size
            for entry in (e for e in selected if e.shard_id == shard):
                tensors[entry.name] = _read_tensor(f, entry, path, file_size)
    return {entry.name: tensors[entry.name] for entry in selected}


def _little_endian_arrays(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check names and dtypes; return the tensors as C-contiguous little-endian arrays in key order."""
    for name in tensors:
        if not isinstance(name, str) or not name:
            raise CheckpointError(f"tensor name {name!r} is not a non-empty string (the empty key holds the "
                                  f"checkpoint header); rename the tensor")
    arrays = {}
    for name in sorted(tensors, key=lambda n: n.encode("utf-8")):
        array = np.asarray(tensors[name])
        dtype = array.dtype.newbyteorder("<")
        if dtype not in _TF_DTYPE:
            raise CheckpointError(f"tensor {name!r} has dtype {array.dtype}, which ssd_np.weights.checkpoint cannot write; "
                                  f"convert it to one of {', '.join(d.name for d in DTYPES.values())}")
        arrays[name] = array.astype(dtype, order="C", copy=False)
    return arrays


def _write_data(f, arrays: dict[str, np.ndarray]) -> list[TensorEntry]:
    """Write the arrays back to back to the open file `f`; return their index entries."""
    entries, offset = [], 0
    for name, array in arrays.items():
        f.write(memoryview(array.reshape(-1).view(np.uint8)))
        entries.append(TensorEntry(name=name, dtype=array.dtype, shape=array.shape, shard_id=0, offset=offset,
                                   size=array.nbytes, crc32c=crc32c(array)))
        offset += array.nbytes
    return entries


def write_checkpoint(prefix: str | os.PathLike, tensors: dict[str, np.ndarray]) -> None:
    """Write `tensors` as the TF checkpoint `prefix` (.index + .data-00000-of-00001), as TF's BundleWriter does.

    Names must be non-empty strings; dtypes must be in DTYPES (bool, 8-64-bit ints, float16/32/64). The
    files are written to temporary names in the same directory and renamed into place only when both are
    complete (`ssd_np.atomic`): on any error no new file is left behind (if renaming the index fails, the data
    file already renamed is removed).
    """
    arrays = _little_endian_arrays(tensors)
    prefix = _prefix(prefix)
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    data_renamed = False
    try:  # both files are complete before either is renamed; the index is renamed last
        with atomic_path(index_path(prefix)) as index_tmp:
            with atomic_path(data_path(prefix)) as data_tmp:
                with open(data_tmp, "wb") as f:
                    entries = _write_data(f, arrays)
                items = [(b"", _encode_header())] + [(e.name.encode("utf-8"), _encode_entry(e)) for e in entries]
                index_tmp.write_bytes(_encode_table(items))
            data_renamed = True
    except BaseException:
        if data_renamed:  # the index's rename failed: no index describes the new data file
            os.remove(data_path(prefix))
        raise
