"""Reading 2D image files (PNG, JPEG, BMP, TIFF through Pillow) for every domain of photos and label images.

Conversion on read: grey-scale (8 or 16 bit) is replicated to 3 channels, RGBA and LA drop alpha, palette images are
expanded to RGB; values are scaled to [0, 1] by the bit depth. Label images are read as they are stored: index
images as integers, colour-coded ones as RGB, each mapped to training indices through a table
(:func:`apply_lut`, :func:`decode_color_label`) that names the file and the values it does not know.

Pillow refuses images whose header claims more than twice ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb); that
limit can be raised with the environment variable ``SEGSUITE_MAX_IMAGE_PIXELS`` (the error says so).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_png, read_file

from segsuite.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_GREY_MODES = {"L": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I": 65535.0}
_LABEL_MODES = {"L", "P", "I;16", "I;16B", "I;16L", "I"}
MAX_PIXELS_ENV = "SEGSUITE_MAX_IMAGE_PIXELS"
if os.environ.get(MAX_PIXELS_ENV, "").isdigit():
    Image.MAX_IMAGE_PIXELS = int(os.environ[MAX_PIXELS_ENV]) // 2  # Pillow refuses twice this, warns above it


@contextmanager
def _image(path: str | Path) -> Iterator[Image.Image]:
    """``Image.open(path)``; a decompression bomb (a header claiming more pixels than Pillow's limit) is a
    DataError that names the limit and how to raise it."""
    try:
        with Image.open(path) as img:
            yield img
    except Image.DecompressionBombError as err:
        claimed = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(claimed.group(1)):,} pixels" if claimed else "too many pixels"
        limit = 2 * int(Image.MAX_IMAGE_PIXELS or 0)
        raise DataError(f"image {path} claims {size}, over the limit of {limit:,} that guards against decompression "
                        f"bombs; if it is genuine, raise the limit: {MAX_PIXELS_ENV}=<pixels> in the environment"
                        ) from None


def _open(path: Path) -> Image.Image:
    """Open and fully decode an image, raising DataError naming the file when that fails."""
    try:
        with _image(path) as img:
            img.load()
            return img
    except (OSError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}") from err


def _decode_rgb8_png(path: Path) -> np.ndarray | None:
    """An 8-bit RGB PNG decoded by libpng through torchvision (several times faster than Pillow's decoder, and it
    releases the GIL), ``(H, W, 3)`` uint8 (a view of a (3, H, W) tensor); None for any other kind of file."""
    try:
        with _image(path) as img:
            if img.format != "PNG" or img.mode != "RGB":
                return None
    except (OSError, ValueError):
        return None  # read_pixels reports it
    try:
        pixels = decode_png(read_file(str(path)), ImageReadMode.RGB)  # (3, H, W)
    except RuntimeError as err:
        raise DataError(f"cannot read image {path}: {err}") from err
    return pixels.permute(1, 2, 0).numpy() if pixels.dtype == torch.uint8 else None  # 16-bit: Pillow's way


def read_pixels(path: str | Path) -> np.ndarray:
    """Read an image as RGB ``(H, W, 3)``: uint8 from 8-bit sources, float32 in [0, 1] from 16-bit grey;
    grey/RGBA/palette converted as documented above."""
    path = Path(path)
    fast = _decode_rgb8_png(path)
    if fast is not None:
        return fast
    img = _open(path)
    if img.mode in ("LA", "La"):
        img = img.convert("L")
    if img.mode == "L":
        return np.repeat(np.asarray(img)[..., None], 3, axis=2)
    if img.mode in _GREY_MODES:
        grey = np.asarray(img).astype(np.float32) / _GREY_MODES[img.mode]
        if img.mode == "I" and grey.max(initial=0.0) > 1.0:
            raise DataError(f"image {path}: 32-bit grey values above 65535 are not supported")
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode not in ("RGB", "RGBA", "P", "RGBX", "CMYK", "YCbCr"):
        raise DataError(f"image {path}: unsupported mode {img.mode} (accepted: 8-bit RGB/RGBA/palette, 8/16-bit grey)")
    return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


def unit_range(pixels: np.ndarray) -> np.ndarray:
    """``read_pixels`` output ``(H, W, 3)`` as float32 in [0, 1] (uint8 / 255; float passes through)."""
    return pixels.astype(np.float32) / 255.0 if pixels.dtype == np.uint8 else pixels


def rgb_pixels(array: np.ndarray) -> np.ndarray:
    """An in-memory RGB image ``(H, W, 3)`` or ``(3, H, W)``, uint8 or float in [0, 1], as ``read_pixels`` gives a
    file: ``(H, W, 3)`` uint8 or float32."""
    array = np.asarray(array)
    layout = "(H, W, 3)" if array.ndim == 3 and array.shape[-1] == 3 else "(3, H, W)"
    if array.ndim != 3 or 3 not in (array.shape[0], array.shape[-1]):
        raise DataError(f"an array of shape {array.shape}: expected an RGB image (H, W, 3) or (3, H, W)")
    pixels = array if layout == "(H, W, 3)" else array.transpose(1, 2, 0)
    if pixels.dtype == np.uint8:
        return np.ascontiguousarray(pixels)
    if not np.issubdtype(pixels.dtype, np.floating) or not (0 <= np.nanmin(pixels) and np.nanmax(pixels) <= 1):
        raise DataError(f"an RGB array of dtype {array.dtype}: expected uint8 (0..255) or float in [0, 1]")
    return np.ascontiguousarray(pixels, dtype=np.float32)


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as float32 RGB in [0, 1], ``(H, W, 3)``, converting grey/RGBA/palette as documented above."""
    return unit_range(read_pixels(path))


def read_color_label(path: str | Path) -> np.ndarray:
    """Read a colour-coded label image as uint8 RGB ``(H, W, 3)`` (alpha dropped, palette expanded)."""
    img = _open(Path(path))
    if img.mode not in ("RGB", "RGBA", "P"):
        raise DataError(f"label image {path}: mode {img.mode} is not a colour image (accepted: RGB, RGBA, palette)")
    return np.asarray(img.convert("RGB"))


def read_index_label(path: str | Path) -> np.ndarray:
    """Read a single-channel index label image (8/16 bit or palette indices) as an integer array ``(H, W)``."""
    img = _open(Path(path))
    if img.mode not in _LABEL_MODES:
        raise DataError(f"label image {path}: mode {img.mode} is not a single-channel index image "
                        f"(accepted: {sorted(_LABEL_MODES)})")
    return np.asarray(img)


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image from its header."""
    try:
        with _image(path) as img:
            return img.height, img.width
    except OSError as err:
        raise DataError(f"cannot read image {path}: {err}") from err


def _format_colors(codes: np.ndarray, limit: int = 10) -> str:
    """Render 24-bit colour codes as '(r, g, b)' strings, at most ``limit`` of them."""
    shown = [f"({c >> 16}, {(c >> 8) & 255}, {c & 255})" for c in codes[:limit].tolist()]
    more = f" and {len(codes) - limit} more" if len(codes) > limit else ""
    return ", ".join(shown) + more


def decode_color_label(rgb: np.ndarray, table: dict[tuple[int, int, int], int], path: str | Path) -> np.ndarray:
    """Map each colour of ``rgb`` ``(H, W, 3)`` through ``table``; colours not in it raise DataError naming them."""
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniques, inverse = np.unique(codes, return_inverse=True)
    lookup = {(r << 16) | (g << 8) | b: v for (r, g, b), v in table.items()}
    unknown = np.array([c for c in uniques.tolist() if c not in lookup], dtype=np.int64)
    if unknown.size:
        accepted = _format_colors(np.array(sorted(lookup), dtype=np.int64), limit=len(lookup))
        raise DataError(f"label image {path}: unknown colours {_format_colors(unknown)}; accepted colours: {accepted}")
    values = np.array([lookup[c] for c in uniques.tolist()], dtype=np.int64)
    return values[inverse.reshape(codes.shape)]


def apply_lut(label: np.ndarray, lut: np.ndarray, path: str | Path, accepted: str) -> np.ndarray:
    """Map integer label values ``(H, W)`` through ``lut`` (-1 = not allowed); unknown values raise DataError."""
    in_range = label.size == 0 or (label.min() >= 0 and label.max() < len(lut))
    mapped = lut[label] if in_range else None
    if mapped is not None and not (mapped < 0).any():
        return mapped
    bad = np.unique(label[mapped < 0] if mapped is not None else label[(label < 0) | (label >= len(lut))])
    shown = bad[:20].tolist()
    raise DataError(f"label image {path}: label ids {shown}{' ...' if bad.size > 20 else ''} are not in the mapping; "
                    f"accepted: {accepted}")


@dataclass(frozen=True)
class IndexDecoder:
    """Single-channel label PNG -> training indices ``(H, W)`` int64 through a lookup table (-1 = not allowed)."""

    lut: np.ndarray
    accepted: str

    def __call__(self, path: Path) -> np.ndarray:
        return apply_lut(read_index_label(path), self.lut, path, self.accepted)


@dataclass(frozen=True)
class ColorDecoder:
    """Colour-coded label image -> training indices ``(H, W)`` int64; unknown colours raise DataError."""

    table: dict[tuple[int, int, int], int]

    def __call__(self, path: Path) -> np.ndarray:
        return decode_color_label(read_color_label(path), self.table, path)
