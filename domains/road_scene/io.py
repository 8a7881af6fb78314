"""Reading images/labels and writing predictions in each dataset's own format.

Image conversion on read: grey-scale (8 or 16 bit) is replicated to 3 channels, RGBA and LA drop alpha, palette
images are expanded to RGB; values are scaled to [0, 1] by the bit depth. Writers refuse an existing file unless
``overwrite`` (predict writes into the core's staging folder, which commits all files or none).

Pillow refuses images whose header claims more than twice ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb); that
limit can be raised with the environment variable ``SEGSUITE_MAX_IMAGE_PIXELS`` (the error says so).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_png, read_file

from segsuite.core.errors import DataError
from segsuite.core.overlay import check_labels, colorize, overlay
from segsuite.core.png import save_png

from .labels import cityscapes_train_id_to_id

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


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image as float32 RGB in [0, 1], ``(H, W, 3)``, converting grey/RGBA/palette as documented above."""
    return unit_range(read_pixels(path))


def read_color_label(path: str | Path) -> np.ndarray:
    """Read a colour-coded label image as uint8 RGB ``(H, W, 3)`` (alpha dropped, palette expanded)."""
    path = Path(path)
    img = _open(path)
    if img.mode not in ("RGB", "RGBA", "P"):
        raise DataError(f"label image {path}: mode {img.mode} is not a colour image (accepted: RGB, RGBA, palette)")
    return np.asarray(img.convert("RGB"))


def read_index_label(path: str | Path) -> np.ndarray:
    """Read a single-channel index label PNG (8/16 bit or palette indices) as an integer array ``(H, W)``."""
    path = Path(path)
    img = _open(path)
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



def write_cityscapes_label_ids(train_ids: np.ndarray, path: str | Path, overwrite: bool = False) -> Path:
    """Write trainIds ``(H, W)`` as a Cityscapes label-id PNG (uint8 ids, what ``cityscapesscripts`` evaluates).
    Values outside 0..18 (ignore) become id 0 'unlabeled'."""
    train_ids = check_labels(train_ids)
    lut = cityscapes_train_id_to_id()
    return save_png(lut[np.clip(train_ids, 0, 255)], path, overwrite)


def write_index_label(labels: np.ndarray, native_ids: list[int], void_id: int, path: str | Path,
                      overwrite: bool = False) -> Path:
    """Write class indices ``(H, W)`` mapped to the dataset's own values (``native_ids[index]``, others -> ``void_id``);
    uint8 PNG when every value fits, otherwise uint16."""
    labels = check_labels(labels)
    table = np.asarray(native_ids, dtype=np.int64)
    valid = (labels >= 0) & (labels < len(table))
    out = np.where(valid, table[np.clip(labels, 0, len(table) - 1)], void_id)
    dtype = np.uint8 if max(table.max(), void_id) <= 255 else np.uint16
    return save_png(out.astype(dtype), path, overwrite)


def write_kitti_road(road_prob: np.ndarray, path: str | Path, binary: bool = False, overwrite: bool = False) -> Path:
    """Write a KITTI road result ``(H, W)``: uint8 grey PNG of round(255 * P(road)) as the devkit's evaluateRoad.py
    reads it (value / 255), or 0/255 when ``binary`` (road where P >= 0.5)."""
    prob = np.asarray(road_prob, dtype=np.float64)
    if prob.ndim != 2 or np.isnan(prob).any() or prob.min(initial=0) < 0 or prob.max(initial=0) > 1:
        raise ValueError(f"expected road probabilities (H, W) in [0, 1], got shape {prob.shape}")
    out = np.where(prob >= 0.5, 255, 0) if binary else np.rint(prob * 255.0)
    return save_png(out.astype(np.uint8), path, overwrite)


def write_color_label(labels: np.ndarray, colors: list[list[int]], path: str | Path, ignore_index: int = 255,
                      overwrite: bool = False) -> Path:
    """Write class indices ``(H, W)`` as a colour PNG (``colors[index]``, ignore black)."""
    return save_png(colorize(labels, colors, ignore_index), path, overwrite)


def write_overlay(image: np.ndarray, labels: np.ndarray, colors: list[list[int]], path: str | Path,
                  alpha: float = 0.5, ignore_index: int = 255, overwrite: bool = False) -> Path:
    """Write :func:`overlay` as a PNG of exactly the frame's size (no legend: see :func:`write_overlay_with_legend`)."""
    return save_png(overlay(image, labels, colors, alpha, ignore_index), path, overwrite)



def output_name(image_name: str, meta: dict) -> str:
    """File name of the native-format result for an input image: KITTI ``um_000000.png`` -> ``um_road_000000.png``
    (devkit convention); Cityscapes keeps the ``<city>_<seq>_<frame>_...`` stem the official evaluation matches."""
    stem = Path(image_name).stem
    if meta["label_format"] == "kitti_road":
        category, _, number = stem.rpartition("_")
        return f"{category}_road_{number}.png"
    return f"{stem}.png"


def write_native(labels: np.ndarray, meta: dict, path: str | Path, road_prob: np.ndarray | None = None,
                 overwrite: bool = False) -> Path:
    """Write a prediction in the dataset's own format described by ``meta`` (from ``build_datasets``):
    Cityscapes label ids, CamVid/folder index values, or the KITTI road probability (``road_prob`` ``(H, W)``,
    or the binary ``labels`` when no probability is given)."""
    fmt = meta["label_format"]
    if fmt == "kitti_road":
        if road_prob is not None:
            return write_kitti_road(road_prob, path, overwrite=overwrite)
        return write_kitti_road((check_labels(labels) == 1).astype(np.float64), path, binary=True, overwrite=overwrite)
    if fmt == "index":
        return write_index_label(labels, meta["native_ids"], meta["native_void_id"], path, overwrite)
    raise ValueError(f"unknown label_format {fmt!r} in meta (accepted: 'index', 'kitti_road')")
