"""Reading images/labels and writing predictions in each dataset's own format.

Image conversion on read: grey-scale (8 or 16 bit) is replicated to 3 channels, RGBA and LA drop alpha, palette
images are expanded to RGB; values are scaled to [0, 1] by the bit depth. Writers refuse an existing file unless
``overwrite`` (predict writes into the core's staging folder, which commits all files or none).

Pillow refuses images whose header claims more than twice ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb); that
limit can be raised with the environment variable ``SEGSUITE_MAX_IMAGE_PIXELS`` (the error says so).
"""

from __future__ import annotations

import functools
import os
import re
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.io import ImageReadMode, decode_png, read_file

from segsuite.core.errors import DataError

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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {1: 0, 3: 2}  # channels -> PNG colour type (grey, RGB)
PNG_LEVEL = 1  # zlib level (with the run-length strategy the level barely matters: the matches are all runs)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def encode_png(array: np.ndarray) -> bytes:
    """``(H, W)`` uint8/uint16 grey or ``(H, W, 3)`` uint8 RGB as PNG bytes, lossless (any decoder reads the same
    pixels back).

    Every row gets PNG's Sub filter (each byte minus the same byte of the pixel on its left, in numpy) and the rows
    are deflated with zlib's run-length strategy: a flat label map becomes runs of zeros, a photo's small horizontal
    differences a skewed byte histogram, so runs plus Huffman codes compress both about as well as Pillow's adaptive
    filters with zlib level 1 (an overlay photo: ~10% smaller) at a third to a quarter of its time. ``zlib`` releases
    the GIL, so writer threads encode side by side."""
    array = np.asarray(array)
    channels = 1 if array.ndim == 2 else array.shape[2]
    h, w = array.shape[:2]
    if array.dtype == np.uint16:
        array = array.astype(">u2")  # PNG stores 16-bit samples big-endian
    bpp = channels * array.dtype.itemsize  # bytes per pixel: the Sub filter's distance
    rows = np.ascontiguousarray(array).view(np.uint8).reshape(h, w * bpp)
    filtered = np.empty((h, w * bpp + 1), np.uint8)
    filtered[:, 0] = 1  # filter type Sub
    filtered[:, 1 : 1 + bpp] = rows[:, :bpp]
    np.subtract(rows[:, bpp:], rows[:, :-bpp], out=filtered[:, 1 + bpp :])  # modulo 256, as PNG defines it
    deflate = zlib.compressobj(PNG_LEVEL, zlib.DEFLATED, 15, 8, zlib.Z_RLE)
    data = deflate.compress(filtered.data) + deflate.flush()
    header = struct.pack(">IIBBBBB", w, h, 8 * array.dtype.itemsize, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return _PNG_SIGNATURE + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def save_png(array: np.ndarray, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``array`` (``(H, W)`` uint8/uint16 or ``(H, W, 3)`` uint8) as PNG (:func:`encode_png`)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise DataError(f"output {path} already exists (pass overwrite=True to replace it)")
    if array.dtype not in (np.uint8, np.uint16) or array.ndim not in (2, 3) or \
            (array.ndim == 3 and (array.shape[2] != 3 or array.dtype != np.uint8)):
        raise ValueError(f"cannot write {array.dtype} array of shape {array.shape} as PNG to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_bytes(encode_png(array))
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _check_labels(labels: np.ndarray) -> np.ndarray:
    """Validate a prediction ``(H, W)`` of class indices and return it as int64."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected an integer label map (H, W), got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64, copy=False)


def write_cityscapes_label_ids(train_ids: np.ndarray, path: str | Path, overwrite: bool = False) -> Path:
    """Write trainIds ``(H, W)`` as a Cityscapes label-id PNG (uint8 ids, what ``cityscapesscripts`` evaluates).
    Values outside 0..18 (ignore) become id 0 'unlabeled'."""
    train_ids = _check_labels(train_ids)
    lut = cityscapes_train_id_to_id()
    return save_png(lut[np.clip(train_ids, 0, 255)], path, overwrite)


def write_index_label(labels: np.ndarray, native_ids: list[int], void_id: int, path: str | Path,
                      overwrite: bool = False) -> Path:
    """Write class indices ``(H, W)`` mapped to the dataset's own values (``native_ids[index]``, others -> ``void_id``);
    uint8 PNG when every value fits, otherwise uint16."""
    labels = _check_labels(labels)
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


def class_index(labels: np.ndarray, classes: int, ignore_index: int = 255) -> np.ndarray:
    """Class indices ``(H, W)`` with ignored and out-of-range pixels set to ``classes`` (a palette's extra last row)."""
    labels = np.asarray(labels)
    if labels.dtype == np.uint8 and labels.ndim == 2:  # the engine's class maps: one look-up per pixel
        table = np.minimum(np.arange(256, dtype=np.int32), classes)
        if 0 <= ignore_index < 256:
            table[ignore_index] = classes
        return table[labels]
    labels = _check_labels(labels)
    return np.where((labels >= 0) & (labels < classes) & (labels != ignore_index), labels, classes)


def colorize(labels: np.ndarray, colors: list[list[int]], ignore_index: int = 255,
             ignore_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Colour image ``(H, W, 3)`` uint8 of class indices ``(H, W)``; ignore/out-of-range -> ``ignore_color``."""
    palette = np.asarray(list(colors) + [list(ignore_color)], dtype=np.uint8)  # last row: ignore
    return palette[class_index(labels, len(colors), ignore_index)]


def write_color_label(labels: np.ndarray, colors: list[list[int]], path: str | Path, ignore_index: int = 255,
                      overwrite: bool = False) -> Path:
    """Write class indices ``(H, W)`` as a colour PNG (``colors[index]``, ignore black)."""
    return save_png(colorize(labels, colors, ignore_index), path, overwrite)


def _blend(base: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * base + alpha * colours`` in float32 (base and colours float32, broadcast together)."""
    return (1 - alpha) * base + alpha * colours


@functools.lru_cache(maxsize=8)
def _blend_table(colors: tuple[tuple[int, ...], ...], alpha: float) -> np.ndarray:
    """Every blend :func:`overlay` can produce from a uint8 image: ``(K + 1, 3, 256)`` uint8, row ``[k, c, v]`` the
    rounded blend of value ``v`` of channel ``c`` with class ``k``'s colour, the last row ``v`` itself (ignored
    pixels keep the image). Computed with the same float32 expression as the per-pixel blend, so equal to it."""
    base = np.arange(256, dtype=np.float32)
    blend = _blend(base[None, None, :], np.asarray(colors, np.uint8).astype(np.float32)[:, :, None], alpha)
    table = np.concatenate([blend, np.broadcast_to(base, (1, 3, 256))])
    return np.clip(np.rint(table), 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, labels: np.ndarray, colors: list[list[int]], alpha: float = 0.5,
            ignore_index: int = 255) -> np.ndarray:
    """``image`` ``(H, W, 3)`` (uint8, or float in [0, 1]) blended with the label colours (weight ``alpha``) as uint8
    ``(H, W, 3)``; ignored pixels keep the image. A uint8 image is blended by table look-up (:func:`_blend_table`:
    the same values, a few times faster than the float32 arithmetic per pixel)."""
    labels = _check_labels(labels)
    image = np.asarray(image)
    if image.shape != labels.shape + (3,):
        raise ValueError(f"overlay image {image.shape} does not match labels {labels.shape} + (3,)")
    index = class_index(labels, len(colors), ignore_index)
    if image.dtype == np.uint8:
        table = _blend_table(tuple(tuple(int(v) for v in c) for c in colors), float(alpha))  # (K + 1, 3, 256)
        rows = index.astype(np.int32) * 768  # the start of each pixel's class in the flat table
        out = np.empty(image.shape, np.uint8)
        for c in range(3):
            np.take(table.reshape(-1), (rows + c * 256) + image[..., c], out=out[..., c])
        return out
    base = image.astype(np.float32) * (255.0 if image.dtype.kind == "f" else 1.0)
    palette = np.asarray(list(colors) + [[0, 0, 0]], dtype=np.uint8)
    blend = _blend(base, palette[index].astype(np.float32), alpha)
    keep = (index == len(colors))[..., None]
    return np.clip(np.rint(np.where(keep, base, blend)), 0, 255).astype(np.uint8)


def write_overlay(image: np.ndarray, labels: np.ndarray, colors: list[list[int]], path: str | Path,
                  alpha: float = 0.5, ignore_index: int = 255, overwrite: bool = False) -> Path:
    """Write :func:`overlay` as a PNG of exactly the frame's size (no legend: see :func:`write_overlay_with_legend`)."""
    return save_png(overlay(image, labels, colors, alpha, ignore_index), path, overwrite)


def legend_strip(labels: np.ndarray, colors: list[list[int]], class_names: list[str], width: int,
                 ignore_index: int = 255) -> np.ndarray:
    """A white strip ``(h, w, 3)`` uint8 listing the classes present in ``labels`` (a colour swatch and the class name
    each, in class order, wrapped into rows); ``w`` is ``width``, or wider when one entry does not fit. The text
    grows with ``width`` (12 px up to 1024 px wide frames, 32 px at 2048)."""
    counts = np.bincount(class_index(labels, len(colors), ignore_index).ravel(), minlength=len(colors) + 1)
    present = tuple(int(c) for c in np.flatnonzero(counts[: len(colors)]))
    return _legend(present, tuple(tuple(int(v) for v in c) for c in colors), tuple(class_names), width)


@functools.lru_cache(maxsize=32)
def _legend(present: tuple[int, ...], colors: tuple[tuple[int, ...], ...], class_names: tuple[str, ...],
            width: int) -> np.ndarray:
    """:func:`legend_strip` of the classes ``present`` (kept for the next frames: a video's frames mostly show the
    same classes, and drawing the text costs as much as blending a frame); read-only."""
    size = max(12, round(width / 64))
    pad, font = size // 2, ImageFont.load_default(size=size)
    rows: list[list[tuple[int, int, str]]] = [[]]  # per row: (x, class index, name)
    x, widest = pad, 0
    for c in present:
        name = class_names[c] if c < len(class_names) else str(c)
        entry = size + pad + int(np.ceil(font.getlength(name)))  # swatch, gap, text
        if rows[-1] and x + entry + pad > width:
            rows.append([])
            x = pad
        rows[-1].append((x, c, name))
        x, widest = x + entry + 2 * pad, max(widest, entry)
    strip = Image.new("RGB", (max(width, widest + 2 * pad), pad + (size + pad) * len(rows)), "white")
    draw = ImageDraw.Draw(strip)
    for r, row in enumerate(rows):
        y = pad + r * (size + pad)
        for x, c, name in row:
            draw.rectangle((x, y, x + size - 1, y + size - 1), fill=tuple(int(v) for v in colors[c]), outline="black")
            _, top, _, bottom = draw.textbbox((0, 0), name, font=font)
            draw.text((x + size + pad // 2, y + (size - (bottom - top)) // 2 - top), name, fill="black", font=font)
    out = np.asarray(strip)
    out.flags.writeable = False
    return out


def write_overlay_with_legend(image: np.ndarray, labels: np.ndarray, colors: list[list[int]], class_names: list[str],
                              path: str | Path, alpha: float = 0.5, ignore_index: int = 255,
                              overwrite: bool = False) -> Path:
    """Write :func:`overlay` with a :func:`legend_strip` of the classes in the frame below it: the top ``H`` rows are
    exactly :func:`write_overlay`'s image (padded with white on the right if the legend is wider)."""
    top = overlay(image, labels, colors, alpha, ignore_index)  # (H, W, 3)
    strip = legend_strip(labels, colors, class_names, top.shape[1], ignore_index)  # (h, W', 3)
    canvas = np.full((top.shape[0] + strip.shape[0], strip.shape[1], 3), 255, np.uint8)
    canvas[: top.shape[0], : top.shape[1]] = top
    canvas[top.shape[0] :] = strip
    return save_png(canvas, path, overwrite)


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
        return write_kitti_road((_check_labels(labels) == 1).astype(np.float64), path, binary=True, overwrite=overwrite)
    if fmt == "index":
        return write_index_label(labels, meta["native_ids"], meta["native_void_id"], path, overwrite)
    raise ValueError(f"unknown label_format {fmt!r} in meta (accepted: 'index', 'kitti_road')")
