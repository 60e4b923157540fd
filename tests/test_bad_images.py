"""Damaged and hostile image files, case by case as `ssd_np.images` documents them: refused with one line naming
the file and the problem, or (a JPEG with overwritten bytes, which no decoder can detect) accepted; valid
files near the refusal rules still load; a detect batch reports each bad file and processes the good ones.
Every file is made here, small and seeded."""
import io
import json
import os
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from ssd_np import images
from ssd_np.images import ImageError, file_name_text, load_rgb
from test_images import png_bytes

ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def photo(height=230, width=352, seed=0) -> np.ndarray:
    """A smooth seeded RGB picture (gradient + noise), (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, width)[None, :, None] + np.linspace(0, 40, height)[:, None, None]
    return (ramp + rng.integers(0, 16, (height, width, 3))).astype(np.uint8)


def jpeg(array: np.ndarray, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, "JPEG", **options)
    return out.getvalue()


def scanlines(rgb: np.ndarray, interlace: bool) -> bytes:
    """PNG raw data (filter byte 0 before each row), for each Adam7 pass if interlaced."""
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    rows = [rgb[y0::dy, x0::dx] for x0, y0, dx, dy in passes]
    return b"".join(b"\0" + row.tobytes() for part in rows if part.shape[1] for row in part)


def refused(path, *fragments):
    with pytest.raises(ImageError) as e:
        load_rgb(path)
    message = str(e.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- PNG ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("interlace", [0, 1])
def test_png_whose_data_ends_early_is_refused(tmp_path, interlace):
    """A complete zlib stream holding 20 of 230 rows: Pillow alone fills the rest with black."""
    rgb = photo()
    raw = scanlines(rgb, bool(interlace))
    path = tmp_path / "short.png"
    path.write_bytes(png_bytes(352, 230, raw=raw[: len(raw) * 20 // 230], interlace=interlace))
    refused(path, "truncated or corrupt image data (the PNG holds", f"of the {len(raw):,} bytes of pixel data its "
            f"header announces (352x230)", "re-download or re-export")


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize("shape", [(230, 352), (1, 1), (3, 9), (9, 2)])
def test_complete_png_still_loads(tmp_path, interlace, shape):
    """The byte count rule must not refuse valid files: hand-made interlaced and plain PNGs of awkward sizes."""
    rgb = photo(*shape, seed=sum(shape))
    path = tmp_path / "ok.png"
    path.write_bytes(png_bytes(shape[1], shape[0], raw=scanlines(rgb, bool(interlace)), interlace=interlace))
    np.testing.assert_array_equal(load_rgb(path), rgb)


@pytest.mark.parametrize("mode, options", [("1", {}), ("L", {}), ("P", {"bits": 2}), ("P", {"bits": 4}),
                                           ("LA", {}), ("RGBA", {}), ("I;16", {})])
def test_pillow_written_pngs_still_load(tmp_path, mode, options):
    image = Image.fromarray(photo(37, 23)).convert("L" if mode == "I;16" else mode)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(image).astype(np.uint16) * 257)
    path = tmp_path / "ok.png"
    image.save(path, **options)
    assert load_rgb(path).shape == (37, 23, 3)


def test_png_chunk_crc_error_is_refused(tmp_path):
    data = bytearray(png_bytes(40, 30, raw=scanlines(photo(30, 40), False)))
    data[-20] ^= 1  # inside the IDAT data: its CRC no longer matches
    (tmp_path / "crc.png").write_bytes(data)
    refused(tmp_path / "crc.png", "truncated or corrupt image data")


# --- JPEG -----------------------------------------------------------------------------------------------------


def test_jpeg_announcing_more_pixels_than_its_data_is_refused_before_decoding(tmp_path, monkeypatch):
    """The 352x230 data under a 9000x9000 header (1.37 GB peak if decoded): refused from the byte count."""
    data = bytearray(jpeg(photo(), quality=90))
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = (9000).to_bytes(2, "big") * 2
    (tmp_path / "huge.jpg").write_bytes(data)
    monkeypatch.setattr(images, "_from_pil", lambda *a: pytest.fail("decoded"))
    refused(tmp_path / "huge.jpg", "the JPEG header announces 9000x9000 pixels (1,899,563 blocks of 8x8), which need "
            "at least 237,446 bytes of image data, but the file holds")


@pytest.mark.parametrize("mode, options", [
    ("L", {"quality": 1, "optimize": True}),
    ("L", {"quality": 1, "progressive": True, "optimize": True}),
    ("RGB", {"quality": 1, "progressive": True, "optimize": True, "subsampling": 2}),
    ("RGB", {"quality": 1, "optimize": True, "subsampling": 0}),
])
def test_flat_jpegs_near_the_bound_still_load(tmp_path, mode, options):
    """The most compressible JPEGs (one flat colour, optimized Huffman tables, progressive) stay above one bit
    per 8x8 block, so the rule never refuses a valid file."""
    flat = Image.new(mode, (1024, 768), 128 if mode == "L" else (90, 140, 200))
    path = tmp_path / "flat.jpg"
    flat.save(path, **options)
    assert load_rgb(path).shape == (768, 1024, 3)


def test_jpeg_with_zeroed_bytes_is_accepted(tmp_path):
    """JPEG has no checksum: 200 zeroed bytes inside the compressed data decode to wrong pixels, as in TF."""
    good = jpeg(photo(), quality=90)
    data = bytearray(good)
    data[len(data) // 2:len(data) // 2 + 200] = bytes(200)
    (tmp_path / "zeroed.jpg").write_bytes(data)
    (tmp_path / "good.jpg").write_bytes(good)
    damaged, original = load_rgb(tmp_path / "zeroed.jpg"), load_rgb(tmp_path / "good.jpg")
    assert damaged.shape == original.shape and not np.array_equal(damaged, original)


@pytest.mark.parametrize("keep", [0.2, 0.6, 0.95])
def test_cut_jpeg_gif_and_png_are_refused(tmp_path, keep):
    buffers = {"cut.jpg": jpeg(photo(), quality=90, progressive=keep > 0.5)}
    out = io.BytesIO()
    Image.fromarray(photo()).convert("P").save(out, "GIF")
    buffers["cut.gif"] = out.getvalue()
    out = io.BytesIO()
    Image.fromarray(photo()).save(out, "PNG")
    buffers["cut.png"] = out.getvalue()
    for name, data in buffers.items():
        (tmp_path / name).write_bytes(data[: int(len(data) * keep)])
        refused(tmp_path / name, "truncated or corrupt image data")


# --- paths and warnings ---------------------------------------------------------------------------------------


def test_symlink_loop_is_not_a_corrupt_image(tmp_path):
    os.symlink(tmp_path / "b.jpg", tmp_path / "a.jpg")
    os.symlink(tmp_path / "a.jpg", tmp_path / "b.jpg")
    message = refused(tmp_path / "a.jpg", "cannot read the file (Too many levels of symbolic links)")
    assert "corrupt" not in message


def test_a_decoder_warning_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "x.png").write_bytes(png_bytes(4, 3, raw=scanlines(photo(3, 4), False)))
    real_convert = Image.Image.convert

    def warning_convert(self, *args, **kwargs):
        warnings.warn("Corrupt EXIF data", UserWarning)
        return real_convert(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "convert", warning_convert)
    refused(tmp_path / "x.png", "truncated or corrupt image data (Corrupt EXIF data)")
    with warnings.catch_warnings(record=True) as caught:  # the filters are as they were
        warnings.simplefilter("default")
        warnings.warn("after", UserWarning)
    assert [str(w.message) for w in caught] == ["after"]


def test_non_utf8_file_name_as_text():
    name = os.fsdecode(b"caf\xe9 \xff.jpg")
    assert file_name_text(name) == "caf\\xe9 \\xff.jpg"
    assert file_name_text("naïve.jpg") == "naïve.jpg"
    json.dumps(file_name_text(name)).encode("utf-8")  # no lone surrogate


# --- a detect batch -------------------------------------------------------------------------------------------


def test_detect_batch_reports_each_bad_image_and_writes_the_good(tmp_path, run_main, standin_h5):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jpg").write_bytes((DATA / "images" / "000000000802.jpg").read_bytes())
    raw = scanlines(photo(), False)
    (folder / "short.png").write_bytes(png_bytes(352, 230, raw=raw[: len(raw) // 10]))
    huge = bytearray(jpeg(photo(), quality=90))
    sof = huge.find(b"\xff\xc0")
    huge[sof + 5:sof + 9] = (9000).to_bytes(2, "big") * 2
    (folder / "huge.jpg").write_bytes(huge)
    os.symlink(folder / "loop.png", folder / "loop.png")
    (folder / os.fsdecode(b"caf\xe9.png")).write_bytes(png_bytes(40, 30, raw=scanlines(photo(30, 40), False)))
    out = tmp_path / "out"
    status, stdout, err = run_main("detect", folder, "--json-dir", out, "--weights", standin_h5, "--jobs", "1")
    assert status == 1 and stdout == ""
    errors = sorted(line for line in err if line.startswith("ssd-np: error:"))
    assert len(errors) == 3, err
    assert errors[0].startswith(f"ssd-np: error: {folder / 'huge.jpg'}: truncated or corrupt image data (the JPEG")
    assert errors[1] == (f"ssd-np: error: {folder / 'loop.png'}: cannot read the file (Too many levels of symbolic "
                         f"links)")
    assert errors[2].startswith(f"ssd-np: error: {folder / 'short.png'}: truncated or corrupt image data (the PNG")
    assert sorted(os.listdir(out)) == sorted(["good.json", os.fsdecode(b"caf\xe9.json")])
    record = json.loads((out / os.fsdecode(b"caf\xe9.json")).read_bytes().decode("utf-8"))
    assert record["image"] == str(folder).replace("\\", "\\\\") + "/caf\\xe9.png"
    assert json.loads((out / "good.json").read_text())["num_detections"] >= 0
