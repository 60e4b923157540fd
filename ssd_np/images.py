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

Every problem raises `ImageError` (a ValueError) naming the file and what to do: missing or unreadable
files, empty files, non-images, truncated or corrupt data, images with no pixels, unsupported modes, and
decompression bombs: images of more than `MAX_PIXELS` pixels (Pillow's default warning threshold,
89,478,485 = a 0.25 GiB RGB image) are refused before their pixels are decoded.
"""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageInput = str | os.PathLike | Image.Image | np.ndarray

MAX_PIXELS = 89_478_485
_AS_RGB = {"RGB", "L", "1", "P", "LA", "PA", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "HSV"}
_GRAY16 = {"I;16", "I;16B", "I;16L", "I;16N"}


class ImageError(ValueError):
    """An image that cannot be turned into the model's input; the message names the file and the fix."""


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
        if os.path.getsize(path) == 0:
            raise ImageError(f"{path}: the file is empty (0 bytes); re-copy or re-export it")
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise _bomb(path, f"{image.width}x{image.height} is")
            return _from_pil(image, path)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb(path, "the image is") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read (JPEG, PNG, BMP, GIF, TIFF, WebP...); "
                         f"check that it is an image") from None
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file; check the path") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except PermissionError:
        raise ImageError(f"{path}: permission denied; make the file readable") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageError(f"{path}: truncated or corrupt image data ({e}); re-download or re-export the "
                         f"file") from None


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
