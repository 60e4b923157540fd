"""CRC32C: published check values, the numba kernel against its plain-Python twin, masking, speed."""
import time

import numpy as np
import pytest

from ssd_np.weights.crc32c import crc32c, crc32c_numpy, crc32c_reference, mask, unmask

# RFC 3720 (iSCSI) appendix B.4 test vectors, plus the CRC catalogue's check value for "123456789".
ISCSI_READ_PDU = bytes.fromhex("01c00000000000000000000000000000"
                               "14000000000004000000001400000018"
                               "28000000000000000200000000000000")
KNOWN = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
    (ISCSI_READ_PDU, 0xD9963A56),
]


@pytest.mark.parametrize("data,expected", KNOWN)
def test_known_vectors(data, expected):
    assert crc32c(data) == expected
    assert crc32c_reference(data) == expected
    assert crc32c_numpy(data) == expected


def test_input_types_agree():
    array = np.arange(37, dtype=np.float32)  # (37,)
    raw = array.tobytes()
    expected = crc32c_reference(raw)
    assert crc32c(raw) == crc32c(bytearray(raw)) == crc32c(memoryview(raw)) == expected
    assert crc32c(array) == crc32c(memoryview(array)) == expected
    assert crc32c(array.reshape(37, 1)) == expected


def test_fast_matches_twin_on_odd_lengths_and_stride_2():
    rng = np.random.default_rng(0)
    lengths = [1, 2, 3, 7, 8, 9, 15, 17, 63, 65, 255, 1001, 4097, 65537]
    mismatches = 0
    for n in lengths:
        data = rng.integers(0, 256, size=n, dtype=np.uint8)  # (n,)
        strided = data[::2]  # stride 2, not contiguous
        for chunk in (data, strided):
            mismatches += crc32c(chunk) != crc32c_reference(chunk.tobytes())
            mismatches += crc32c_numpy(chunk, 7) != crc32c_reference(chunk.tobytes(), 7)
    print(f"crc32c and crc32c_numpy vs crc32c_reference: {mismatches} mismatches over {4 * len(lengths)} inputs")
    assert mismatches == 0


def test_numpy_twin_joins_many_chunks():
    # 3 MB + 1: an odd number of 256-byte chunks at several levels of the tree, and a 1-byte head
    data = np.random.default_rng(4).integers(0, 256, size=3_000_001, dtype=np.uint8)
    assert crc32c_numpy(data) == crc32c(data)
    assert crc32c_numpy(data[1:], crc32c_numpy(data[:1])) == crc32c(data)


def test_extend_equals_concatenation():
    rng = np.random.default_rng(1)
    a, b = rng.bytes(1001), rng.bytes(333)
    assert crc32c(b, crc32c(a)) == crc32c(a + b)
    assert crc32c_reference(b, crc32c_reference(a)) == crc32c(a + b)


def test_mask_hand_computed_and_inverse():
    # ((0x12345678 >> 15) | (0x12345678 << 17)) mod 2**32 = 0x2468 | 0xACF00000 = 0xACF02468;
    # + 0xA282EAD8 = 0x14F730F40 -> 0x4F730F40 mod 2**32.
    assert mask(0x12345678) == 0x4F730F40
    assert mask(0) == 0xA282EAD8
    values = np.random.default_rng(2).integers(0, 2**32, size=1000, dtype=np.uint64)
    assert all(unmask(mask(int(v))) == int(v) for v in values)
    assert all(mask(unmask(int(v))) == int(v) for v in values)


def test_speed_64_mib():
    data = np.random.default_rng(3).integers(0, 256, size=64 << 20, dtype=np.uint8)
    crc32c(data[:16])  # compile or load the cached kernel for this array type
    start = time.perf_counter()
    crc32c(data)
    seconds = time.perf_counter() - start
    print(f"crc32c of 64 MiB: {seconds:.3f} s ({64 / seconds:.0f} MiB/s)")
    assert seconds < 2.0
