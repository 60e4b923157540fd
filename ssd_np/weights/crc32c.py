"""CRC32C (Castagnoli), as TensorFlow computes it for checkpoints and LevelDB-style tables.

Mirrors `tensorflow/core/lib/hash/crc32c.h` (`crc32c::Value`, `Extend`, `Mask`, `Unmask`; now
`tsl/lib/hash/crc32c.h`).

- Polynomial 0x1EDC6F41, bit-reflected 0x82F63B78; initial value and final XOR 0xFFFFFFFF,
  so `crc32c(b"123456789") == 0xE3069283`.
- `crc32c(data, crc)` extends a running CRC: `crc32c(a + b) == crc32c(b, crc32c(a))`.
- Masking (what TF stores in checkpoints and table block trailers, so that a CRC over data that itself
  contains CRCs stays well distributed): `mask(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8 (mod 2**32)`;
  `unmask` inverts it.

`crc32c` runs a numba slicing-by-8 kernel (eight 256-entry tables, 8 bytes per step); `crc32c_reference`
is its plain-Python twin (one table, one byte per step), slow but obviously right, for tests. `crc32c_numpy`
computes the same in NumPy, for when numba's compiler is switched off (NUMBA_DISABLE_JIT=1, e.g. to step
through the reference in a debugger: the interpreted kernel would take over a minute for the weights file,
this 1-2 s). It uses that the CRC register is linear: the data is cut into 256-byte chunks whose CRCs are
computed side by side (one vectorized step per byte position), then joined pairwise in a tree, each join
advancing the left part over the right part's length of zero bytes with a precomputed 32x32 bit matrix
(`zeros(2^k * 256)`, as four 256-entry byte tables) and XOR-ing the right part in.
"""
from __future__ import annotations

import numba
import numpy as np

from ssd_np.jit import njit

POLY = 0x82F63B78  # reflected Castagnoli polynomial
MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF


def _make_tables() -> np.ndarray:
    """Slicing-by-8 tables (8, 256) uint32: row 0 is the byte table, row k advances k more zero bytes."""
    tables = np.zeros((8, 256), dtype=np.uint32)
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (POLY if crc & 1 else 0)
        tables[0, byte] = crc
    for k in range(1, 8):
        prev = tables[k - 1]
        tables[k] = (prev >> 8) ^ tables[0, prev & 0xFF]
    return tables


_TABLES = _make_tables()  # (8, 256)


def _as_bytes(data: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """The bytes of `data` as a 1-D uint8 array (an ndarray contributes its C-order bytes in memory)."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    return np.frombuffer(data, dtype=np.uint8)


@njit
def _crc32c_kernel(buf, crc, tables):
    """Slicing-by-8 CRC32C of the uint8 array `buf`, extending the (unfinalized-on-entry) CRC `crc`."""
    t0, t1, t2, t3 = tables[0], tables[1], tables[2], tables[3]
    t4, t5, t6, t7 = tables[4], tables[5], tables[6], tables[7]
    c = np.int64(crc) ^ 0xFFFFFFFF
    n = buf.size
    i = 0
    while i + 8 <= n:
        lo = c ^ (np.int64(buf[i]) | (np.int64(buf[i + 1]) << 8)
                  | (np.int64(buf[i + 2]) << 16) | (np.int64(buf[i + 3]) << 24))
        c = (np.int64(t7[lo & 0xFF]) ^ t6[(lo >> 8) & 0xFF] ^ t5[(lo >> 16) & 0xFF] ^ t4[(lo >> 24) & 0xFF]
             ^ t3[buf[i + 4]] ^ t2[buf[i + 5]] ^ t1[buf[i + 6]] ^ t0[buf[i + 7]])
        i += 8
    while i < n:
        c = np.int64(t0[(c ^ buf[i]) & 0xFF]) ^ (c >> 8)
        i += 1
    return c ^ 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """CRC32C of `data` (bytes-like, or an ndarray's C-order bytes), extending the running CRC `crc`."""
    if numba.config.DISABLE_JIT:
        return crc32c_numpy(data, crc)
    return int(_crc32c_kernel(_as_bytes(data), crc & _U32, _TABLES))


_CHUNK = 256  # bytes per lane of crc32c_numpy


def _advance(registers: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Raw CRC registers (L,) uint32 after the bytes columns[i] (L,), i = 0, 1, ... (no pre/post XOR)."""
    for column in columns:
        registers = _TABLES[0][(registers ^ column) & 0xFF] ^ (registers >> np.uint32(8))
    return registers


def _apply(operator: np.ndarray, registers: np.ndarray) -> np.ndarray:
    """A linear map of 32-bit registers given as four byte tables (4, 256): the XOR of the tables' entries."""
    return (operator[0][registers & 0xFF] ^ operator[1][(registers >> np.uint32(8)) & 0xFF]
            ^ operator[2][(registers >> np.uint32(16)) & 0xFF] ^ operator[3][registers >> np.uint32(24)])


def _byte_tables(columns: np.ndarray) -> np.ndarray:
    """The four byte tables (4, 256) of the linear map whose images of the 32 unit registers are `columns`."""
    values = np.arange(256)
    tables = np.zeros((4, 256), np.uint32)
    for j in range(4):
        for bit in range(8):
            tables[j, (values >> bit) & 1 == 1] ^= columns[8 * j + bit]
    return tables


def _zero_operators(levels: int = 48) -> list[np.ndarray]:
    """zeros(2^k * _CHUNK) for k < levels: the register advanced over that many zero bytes."""
    units = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    columns = _advance(units, np.zeros((_CHUNK, 32), np.uint8))
    operators = [_byte_tables(columns)]
    for _ in range(levels - 1):
        columns = _apply(operators[-1], columns)  # twice the length: the map applied to its own columns
        operators.append(_byte_tables(columns))
    return operators


_ZERO_OPERATORS = _zero_operators()


def crc32c_numpy(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """`crc32c` in NumPy (see the module docstring): the same values, no compiler needed."""
    buf = _as_bytes(data)
    lanes = len(buf) // _CHUNK
    head = len(buf) - lanes * _CHUNK
    start = _advance(np.array([(crc & _U32) ^ _U32], np.uint32), buf[:head, None])
    parts = np.concatenate([start, _advance(np.zeros(lanes, np.uint32), buf[head:].reshape(lanes, _CHUNK).T)])
    level = 0
    while len(parts) > 1:  # join neighbours; a zero register in front of the start changes nothing
        if len(parts) % 2:
            parts = np.concatenate([np.zeros(1, np.uint32), parts])
        parts = _apply(_ZERO_OPERATORS[level], parts[0::2]) ^ parts[1::2]
        level += 1
    return int(parts[0]) ^ _U32


def crc32c_reference(data: bytes | bytearray | memoryview | np.ndarray, crc: int = 0) -> int:
    """Plain-Python twin of `crc32c`: the textbook byte-at-a-time table loop."""
    table = [int(v) for v in _TABLES[0]]
    c = (crc & _U32) ^ _U32
    for byte in _as_bytes(data).tobytes():
        c = table[(c ^ byte) & 0xFF] ^ (c >> 8)
    return c ^ _U32


def mask(crc: int) -> int:
    """TF's masked CRC, as stored in checkpoint entries and table block trailers."""
    return ((((crc & _U32) >> 15) | (crc << 17)) + MASK_DELTA) & _U32


def unmask(masked: int) -> int:
    """Inverse of `mask`."""
    rot = ((masked & _U32) - MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32
