"""`ssd_np.images.load_rgb`: every mode's conversion (hand-computed pixels), arrays, and every kind of bad file."""
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from ssd_np.images import MAX_PIXELS, ImageError, load_rgb


def png_bytes(width: int, height: int, bit_depth: int = 8, color_type: int = 2, raw: bytes | None = None,
              interlace: int = 0) -> bytes:
    """A PNG built by hand (any header, even a lying one); `raw` is the unfiltered scanline data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    idat = chunk(b"IDAT", zlib.compress(raw)) if raw is not None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


def check_rgb(array: np.ndarray, shape: tuple[int, int]) -> None:
    assert array.dtype == np.uint8 and array.shape == (*shape, 3) and array.flags.c_contiguous


# ---------------------------------------------------------------------------------------------- modes


def test_rgb_png_is_returned_as_is(tmp_path):
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    out = load_rgb(tmp_path / "a.png")
    check_rgb(out, (5, 7))
    assert np.array_equal(out, pixels)
    assert np.array_equal(load_rgb(str(tmp_path / "a.png")), pixels)


def test_gray_and_bilevel_are_replicated(tmp_path):
    gray = np.array([[0, 17, 255]], np.uint8)
    Image.fromarray(gray).save(tmp_path / "l.png")
    assert np.array_equal(load_rgb(tmp_path / "l.png"), np.repeat(gray[:, :, None], 3, axis=2))
    Image.fromarray(np.array([[True, False, True]])).save(tmp_path / "one.png")
    assert load_rgb(tmp_path / "one.png")[0, :, 0].tolist() == [255, 0, 255]


def test_committed_gray_image_is_replicated():
    out = load_rgb(DATA / "images" / "gray_320x240.png")
    check_rgb(out, (240, 320))
    assert np.array_equal(out[:, :, 0], out[:, :, 1]) and np.array_equal(out[:, :, 0], out[:, :, 2])


def test_palette_is_expanded_and_transparency_ignored(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([10, 20, 30, 40, 50, 60, 70, 80, 90] + [0] * 759)
    image.putdata([2, 0, 1])
    image.save(tmp_path / "p.png", transparency=0)
    assert load_rgb(tmp_path / "p.png")[0].tolist() == [[70, 80, 90], [10, 20, 30], [40, 50, 60]]


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_is_dropped_not_composited(tmp_path, mode):
    if mode == "PA":
        image = Image.new("PA", (2, 1))
        image.putpalette([200, 100, 50, 1, 2, 3] + [0] * 762)
        image.putdata([(0, 0), (1, 128)])  # (palette index, alpha): fully transparent, then half
        expected = [[200, 100, 50], [1, 2, 3]]
    elif mode == "LA":
        image = Image.fromarray(np.array([[[200, 0], [7, 128]]], np.uint8), "LA")
        expected = [[200] * 3, [7] * 3]
    else:
        image = Image.fromarray(np.array([[[200, 100, 50, 0], [1, 2, 3, 128]]], np.uint8), "RGBA")
        expected = [[200, 100, 50], [1, 2, 3]]
    if mode != "PA":  # Pillow cannot write PA files; PA comes from decoders (e.g. WebP) or code
        image.save(tmp_path / "a.png")
        image = tmp_path / "a.png"
    assert load_rgb(image)[0].tolist() == expected


def test_cmyk_uses_pillows_conversion(tmp_path):
    # Pillow: R = (255 - K) - (C * (255 - K)) / 255 rounded: C=100, K=50 -> 205 - round(100 * 205 / 255) = 125.
    Image.frombytes("CMYK", (2, 1), bytes([100, 0, 255, 50, 0, 0, 0, 0])).save(tmp_path / "c.tif")
    assert load_rgb(tmp_path / "c.tif")[0].tolist() == [[125, 205, 0], [255, 255, 255]]


def test_cmyk_jpeg_decodes(tmp_path):
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    out = load_rgb(tmp_path / "c.jpg")
    check_rgb(out, (8, 16))
    assert np.abs(out.astype(int) - [255, 0, 0]).max() <= 2  # pure red, up to JPEG rounding


def test_ycbcr_neutral_is_gray():
    image = Image.frombytes("YCbCr", (2, 1), bytes([90, 128, 128, 200, 128, 128]))
    assert load_rgb(image)[0].tolist() == [[90] * 3, [200] * 3]


def test_16bit_gray_png_keeps_the_high_byte(tmp_path):
    values = [0, 255, 256, 32768, 65535]
    raw = b"\x00" + b"".join(struct.pack(">H", v) for v in values)
    (tmp_path / "g16.png").write_bytes(png_bytes(5, 1, bit_depth=16, color_type=0, raw=raw))
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    assert load_rgb(tmp_path / "g16.png")[0, :, 0].tolist() == [0, 0, 1, 128, 255]


def test_16bit_rgb_png_keeps_the_high_byte(tmp_path):
    raw = b"\x00" + struct.pack(">6H", 0x12FF, 0x3400, 0xFFFF, 0x00FF, 0x0100, 0x8080)
    (tmp_path / "c16.png").write_bytes(png_bytes(2, 1, bit_depth=16, color_type=2, raw=raw))
    assert load_rgb(tmp_path / "c16.png")[0].tolist() == [[0x12, 0x34, 0xFF], [0x00, 0x01, 0x80]]


def test_32bit_int_in_16bit_range_is_accepted_else_refused(tmp_path):
    Image.fromarray(np.array([[0, 300, 65535]], np.int32), "I").save(tmp_path / "i.tif")
    assert load_rgb(tmp_path / "i.tif")[0, :, 1].tolist() == [0, 1, 255]
    Image.fromarray(np.array([[0, 70000]], np.int32), "I").save(tmp_path / "big.tif")
    with pytest.raises(ImageError, match=r"big\.tif: 32-bit integer image with values 0\.\.70000"):
        load_rgb(tmp_path / "big.tif")


def test_float_and_unknown_modes_are_refused(tmp_path):
    Image.fromarray(np.zeros((2, 2), np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageError, match=r"f\.tif: floating-point image \(mode F\).*convert it to 8-bit"):
        load_rgb(tmp_path / "f.tif")
    with pytest.raises(ImageError, match="unsupported image mode 'LAB'"):
        load_rgb(Image.new("LAB", (2, 2)))


def test_exif_orientation_is_not_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.new("RGB", (20, 10), (1, 2, 3)).save(tmp_path / "o.jpg", exif=exif)
    check_rgb(load_rgb(tmp_path / "o.jpg"), (10, 20))


def test_animated_gif_gives_the_first_frame(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert load_rgb(tmp_path / "a.gif")[0, 0].tolist() == [255, 0, 0]


# ---------------------------------------------------------------------------------------------- arrays and PIL images


def test_arrays():
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    assert np.array_equal(load_rgb(rgb), rgb)
    flipped = load_rgb(rgb[:, ::-1])
    assert flipped.flags.c_contiguous and np.array_equal(flipped, rgb[:, ::-1])
    gray = np.array([[1, 2]], np.uint8)
    assert load_rgb(gray).tolist() == [[[1] * 3, [2] * 3]]


@pytest.mark.parametrize("array", [np.zeros((4, 5, 3), np.float32), np.zeros((4, 5, 4), np.uint8),
                                   np.zeros((4, 5, 1), np.uint8), np.zeros(5, np.uint8)])
def test_other_arrays_are_refused(array):
    with pytest.raises(ImageError, match=r"must be \(H, W, 3\) uint8 RGB or \(H, W\) uint8 gray"):
        load_rgb(array)


def test_empty_array_and_empty_pil_image_are_refused():
    with pytest.raises(ImageError, match="no pixels"):
        load_rgb(np.zeros((0, 5, 3), np.uint8))
    with pytest.raises(ImageError, match=r"no pixels \(0x5\)"):
        load_rgb(Image.new("RGB", (0, 5)))


def test_pil_image_and_wrong_type():
    assert load_rgb(Image.new("RGB", (3, 2), (9, 8, 7)))[1, 2].tolist() == [9, 8, 7]
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        load_rgb(3)


# ---------------------------------------------------------------------------------------------- bad files


def test_missing_empty_and_directory(tmp_path):
    with pytest.raises(ImageError, match=r"nope\.jpg: no such file"):
        load_rgb(tmp_path / "nope.jpg")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png: the file is empty \(0 bytes\)"):
        load_rgb(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="is a directory"):
        load_rgb(tmp_path)


def test_not_an_image(tmp_path):
    (tmp_path / "notes.jpg").write_text("hello, I am text\n")
    with pytest.raises(ImageError, match=r"notes\.jpg: not an image file Pillow can read"):
        load_rgb(tmp_path / "notes.jpg")


def test_zero_size_png_header(tmp_path):
    (tmp_path / "zero.png").write_bytes(png_bytes(0, 5))
    with pytest.raises(ImageError, match=r"zero\.png: not an image file"):
        load_rgb(tmp_path / "zero.png")


def test_truncated_jpeg_and_png(tmp_path):
    source = (DATA / "images" / "000000037777.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(source[: len(source) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg: truncated or corrupt image data .*re-download"):
        load_rgb(tmp_path / "cut.jpg")
    source = (DATA / "images" / "tiny_37x23.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(source[: len(source) // 2])
    with pytest.raises(ImageError, match=r"cut\.png: truncated or corrupt"):
        load_rgb(tmp_path / "cut.png")


def test_decompression_bombs_are_refused_before_decoding(tmp_path):
    (tmp_path / "huge.png").write_bytes(png_bytes(100_000, 100_000))  # Pillow's own hard limit
    with pytest.raises(ImageError, match=r"huge\.png: the image is more than 89,478,485 pixels.*decompression bomb"):
        load_rgb(tmp_path / "huge.png")
    (tmp_path / "big.png").write_bytes(png_bytes(10_000, 10_000))  # above MAX_PIXELS, below Pillow's hard limit
    assert 10_000 * 10_000 > MAX_PIXELS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match=r"big\.png: 10000x10000 is more than 89,478,485 pixels"):
            load_rgb(tmp_path / "big.png")
