"""Image input: a path, a PIL image or an array -> the model's input, an (H, W, 3) uint8 RGB array.

Mirrors what a TF user feeds `image_tensor`: `tf.io.decode_image(bytes, channels=3, expand_animations=False)`.
Files are decoded with Pillow; every "TF: same" below was checked against tf.io.decode_image (TF 2.17) on
hand-made files. For JPEG, Pillow's pixels equal TF's `tf.io.decode_jpeg(dct_method=
"INTEGER_ACCURATE")` (checked on 40 COCO images and a CMYK JPEG: identical); TF's default `dct_method=""`
(INTEGER_FAST) differs from both by up to 22 levels. The project's goldens are decoded with Pillow.

Modes (Pillow's names), each handled on purpose, matching TF's decoders with `channels=3` where TF has one:

    RGB                  as is
    L, 1                 gray replicated to R = G = B (mode 1: 0 or 255)
    P                    palette expanded to RGB; any transparency ignored (TF: same)
    LA, PA, RGBA, RGBX   the alpha (or pad) channel dropped, NOT composited on a background (TF: same for LA
                         and RGBA), so fully transparent pixels show whatever colour the file stores under them
    RGBa                 premultiplied alpha: un-premultiplied by Pillow, then the alpha dropped
    CMYK, YCbCr, HSV     Pillow's conversion to RGB (CMYK JPEG: equal to TF's INTEGER_ACCURATE decode)
    I;16, I;16B, I;16L   16-bit gray: value >> 8, then replicated (TF: same, libpng's 16-to-8 strip). 16-bit
                         RGB(A) PNGs already open as 8-bit RGB(A) holding the high bytes (TF: same)
    I                    32-bit int gray: accepted when every value is in 0..65535 (16-bit data, e.g. from TIFF
                         or PGM), then as I;16; otherwise refused (no 8-bit meaning)
    F                    32-bit float gray: refused (no agreed range: 0..1 or 0..255)
    anything else        refused (e.g. LAB, La, multichannel TIFF)

Not applied, as TF does not apply them either: EXIF orientation (a portrait photo whose pixels are stored
sideways stays sideways), ICC colour profiles, gamma. Animated files (GIF, APNG, WebP) and multi-page TIFF:
the first frame only (TF's `expand_animations=False`).

Every problem raises `ImageError` (a ValueError) naming the file and what to do: missing, unreadable or
looping (symbolic link loop) paths, empty files, non-images, truncated or corrupt data, images with no
pixels, unsupported modes, and decompression bombs: images of more than `MAX_PIXELS` pixels (Pillow's default
warning threshold, 89,478,485 = a 0.25 GiB RGB image) are refused before their pixels are decoded.

Damaged files, case by case. Pillow's `ImageFile.LOAD_TRUNCATED_IMAGES` stays off, and any warning a decoder
emits while opening or decoding (e.g. TIFF "Truncated File Read", "Corrupt EXIF data") is an error; files are
decoded one at a time for that (warnings filters are process-wide).
- A file cut short (JPEG, PNG, GIF, ...): refused, "truncated or corrupt image data" (TF: refused too).
- A PNG whose compressed data ends early but cleanly (a complete zlib stream of fewer rows than the header
  announces): Pillow would fill the missing rows with black; refused, counting the inflated bytes against the
  header's size (TF: refused, "Invalid PNG data").
- A JPEG whose header announces far more pixels than its data can hold (e.g. 9000x9000 over the data of a
  352x230 image): libjpeg would fill the rest with gray after decoding the whole announced size (1.37 GB peak
  for 9000x9000); refused before decoding, as a Huffman-coded JPEG needs at least one bit per 8x8 block
  (TF: accepted, with libjpeg's warning "premature end of data segment" on stderr).
- A JPEG with bytes overwritten inside its compressed data (e.g. 200 zeroed bytes): accepted. JPEG has no
  checksum; libjpeg decodes such data to wrong pixels, and the warnings it may print are not reported by
  Pillow (TF: accepted too). Verify files you do not trust by their hash.
- PNG chunk CRC errors: refused by Pillow ("broken PNG file"); zlib (Adler-32) errors likewise.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
import zlib

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageInput = str | os.PathLike | Image.Image | np.ndarray

MAX_PIXELS = 89_478_485
_AS_RGB = {"RGB", "L", "1", "P", "LA", "PA", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV"}
_GRAY16 = {"I;16", "I;16B", "I;16L", "I;16N"}
_DECODE_LOCK = threading.Lock()  # warnings.catch_warnings changes process-wide state: one decode at a time


class ImageError(ValueError):
    """An image that cannot be turned into the model's input; the message names the file and the fix."""


def file_name_text(path: str | os.PathLike) -> str:
    """A file name as text for JSON and terminals: valid UTF-8 as is, any other byte as a `\\xNN` escape (a name
    that is not UTF-8, e.g. Latin-1 `caf\\xe9.jpg`, would otherwise become a lone surrogate, which is not
    valid Unicode and which strict JSON readers refuse)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def load_rgb(image: ImageInput) -> np.ndarray:
    """Decode `image` (a path, a PIL image or an array) into a C-contiguous (H, W, 3) uint8 RGB array.

    Arrays: (H, W, 3) uint8 is taken as RGB as is; (H, W) uint8 as gray. Anything else raises ImageError.
    """
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, Image.Image):
        try:
            return _from_pil(image, "the PIL image")
        except OSError as e:
            raise ImageError(f"the PIL image: truncated or corrupt image data ({e}); re-load it") from None
    if isinstance(image, (str, os.PathLike)):
        return _from_file(os.fspath(image))
    raise ImageError(f"cannot read an image from a {type(image).__name__}; "
                     f"give a file path, a PIL image or an (H, W, 3) uint8 RGB array")


def _from_array(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ImageError(f"an image array must be (H, W, 3) uint8 RGB or (H, W) uint8 gray, got {array.dtype} "
                         f"{array.shape}; convert it first (drop an alpha channel with a[..., :3])")
    if array.size == 0:
        raise ImageError(f"the image array has no pixels (shape {array.shape})")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)  # (H, W, 3)
    return np.ascontiguousarray(array)


def _from_file(path: str) -> np.ndarray:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied; make the file readable") from None
    except OSError as e:  # e.g. a symbolic link loop, an I/O error
        raise ImageError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if not data:
        raise ImageError(f"{path}: the file is empty (0 bytes); re-copy or re-export it")
    try:
        with _DECODE_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error")  # a decoder's warning is an error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the size
            with Image.open(io.BytesIO(data)) as image:
                if image.width * image.height > MAX_PIXELS:
                    raise _bomb(path, f"{image.width}x{image.height} is")
                missing = _missing_data(image.format, data)
                if missing:
                    raise OSError(missing)  # reported as truncated or corrupt data, below
                return _from_pil(image, path)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(path, "the image is") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read (JPEG, PNG, BMP, GIF, TIFF, WebP...); "
                         f"check that it is an image") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, Warning) as e:
        raise ImageError(f"{path}: truncated or corrupt image data ({e}); re-download or re-export the "
                         f"file") from None


def _missing_data(image_format: str | None, data: bytes) -> str | None:
    """What a PNG or JPEG file lacks that its header announces, or None (see the module docstring)."""
    if image_format == "PNG":
        return _png_missing_rows(data)
    if image_format == "JPEG":
        return _jpeg_too_short(data)
    return None


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_missing_rows(data: bytes) -> str | None:
    """Inflate the IDAT chunks (streaming, 1 MiB at a time) and compare the byte count with the header's:
    per row 1 filter byte + ceil(width * samples * bit depth / 8), for each Adam7 pass if interlaced."""
    pos, header, inflate, got = 8, None, zlib.decompressobj(), 0
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR" and len(body) == 13:
            header = body
        elif kind == b"IDAT":
            while body:
                got += len(inflate.decompress(body, 1 << 20))
                body = inflate.unconsumed_tail
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or header[9] not in _PNG_CHANNELS:
        return None
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    bits = header[8] * _PNG_CHANNELS[header[9]]  # bits per pixel
    passes = _ADAM7 if header[12] == 1 else ((0, 0, 1, 1),)
    expected = 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w > 0 and h > 0:
            expected += h * (1 + -(-(w * bits) // 8))
    if got >= expected:
        return None
    return f"the PNG holds {got:,} of the {expected:,} bytes of pixel data its header announces ({width}x{height})"


def _jpeg_too_short(data: bytes) -> str | None:
    """A Huffman-coded JPEG (baseline or progressive) spends at least one bit on every 8x8 block of every
    component (its DC code), so the data after the first start-of-scan holds at least blocks / 8 bytes.
    Blocks of a component with sampling factors (h, v): ceil(ceil(W * h / Hmax) / 8) * ceil(ceil(H * v / Vmax) / 8).
    Arithmetic-coded and lossless JPEGs have no such bound and are not checked."""
    pos, frame = 2, None
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            frame = data[pos + 4:pos + 2 + length]  # precision, H, W, Nf, (id, h << 4 | v, table) * Nf
        elif 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return None
        elif marker == 0xDA:
            break
        pos += 2 + length
    else:
        return None
    if frame is None or len(frame) < 6:
        return None
    height, width = int.from_bytes(frame[1:3], "big"), int.from_bytes(frame[3:5], "big")
    sampling = [(c >> 4, c & 15) for c in frame[7:6 + 3 * frame[5]:3]]
    if not sampling or height == 0 or min(min(s) for s in sampling) == 0:
        return None
    h_max, v_max = max(h for h, _ in sampling), max(v for _, v in sampling)
    blocks = sum(-(-(-(-width * h // h_max)) // 8) * -(-(-(-height * v // v_max)) // 8) for h, v in sampling)
    scan = len(data) - (pos + 2 + length)
    if scan * 8 >= blocks:
        return None
    return (f"the JPEG header announces {width}x{height} pixels ({blocks:,} blocks of 8x8), which need at least "
            f"{-(-blocks // 8):,} bytes of image data, but the file holds {scan:,}")


def _bomb(path: str, size: str) -> ImageError:
    return ImageError(f"{path}: {size} more than {MAX_PIXELS:,} pixels, refused as a possible decompression "
                      f"bomb; downscale the image first")


def _from_pil(image: Image.Image, name: str) -> np.ndarray:
    if image.width == 0 or image.height == 0:
        raise ImageError(f"{name}: the image has no pixels ({image.width}x{image.height})")
    mode = image.mode
    if mode in _AS_RGB:
        return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
    if mode in _GRAY16 or mode == "I":
        values = np.asarray(image)  # (H, W) uint16 or int32
        if mode == "I" and (values.min() < 0 or values.max() > 65535):
            raise ImageError(f"{name}: 32-bit integer image with values {values.min()}..{values.max()} outside "
                             f"the 16-bit range 0..65535, which has no 8-bit meaning; convert it to 8-bit RGB first")
        gray = (values.astype(np.uint32) >> 8).astype(np.uint8)  # 16-bit -> 8-bit: the high byte, as libpng
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        raise ImageError(f"{name}: floating-point image (mode F) has no agreed 8-bit range (0..1 or 0..255?); "
                         f"convert it to 8-bit RGB first")
    raise ImageError(f"{name}: unsupported image mode {mode!r}; convert it to 8-bit RGB first")
