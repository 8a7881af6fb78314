"""Pictures of a prediction that people look at: class colours, overlays on the image, a legend of the classes
shown, and instance colours (every object its own colour with a white outline, as the lecture's demo shows them).
One renderer for every domain's overlay PNGs, the API's :class:`~segsuite.core.api.Result` and the demo page."""

from __future__ import annotations

import functools
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from segsuite.core.png import save_png


def default_colors(n: int) -> np.ndarray:
    """``n`` distinct RGB colours ``(n, 3)`` uint8 (matplotlib's tab20, repeated), for checkpoints without colours."""
    table = np.asarray(matplotlib.colormaps["tab20"].colors)[[0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5, 7, 9]]
    return (np.resize(table, (n, 3)) * 255).round().astype(np.uint8)



def instance_edges(ids: np.ndarray) -> np.ndarray:
    """True on instance pixels whose right or lower neighbour (last two axes) belongs to another id."""
    edge = np.zeros(ids.shape, bool)
    for axis in (-1, -2):
        differs = np.diff(ids, axis=axis) != 0
        before = [slice(None)] * ids.ndim
        after = [slice(None)] * ids.ndim
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        edge[tuple(before)] |= differs & (ids[tuple(before)] > 0)
        edge[tuple(after)] |= differs & (ids[tuple(after)] > 0)
    return edge



def instance_colors(ids: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(*spatial, 3)``: each instance id its own colour (hues spread by the golden ratio, so neighbours
    differ), black where there is none (0), white outlines."""
    import colorsys

    top = int(ids.max(initial=0))
    hues = (np.arange(top + 1) * 0.618033988749895) % 1.0
    table = np.array([colorsys.hsv_to_rgb(h, 0.65, 0.95) for h in hues]) * 255
    table[0] = 0
    rgb = table.round().astype(np.uint8)[ids]
    rgb[instance_edges(ids)] = 255
    return rgb


def instance_overlay(rgb: np.ndarray, ids: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``rgb`` ``(H, W, 3)`` uint8 with each instance of ``ids`` ``(H, W)`` blended in its :func:`instance_colors`
    colour (weight ``alpha``), outlines white; a new array."""
    out, colours, inside = rgb.copy(), instance_colors(ids), ids > 0
    out[inside] = np.rint((1 - alpha) * rgb[inside] + alpha * colours[inside])
    out[instance_edges(ids)] = 255
    return out


def check_labels(labels: np.ndarray) -> np.ndarray:
    """Validate a prediction ``(H, W)`` of class indices and return it as int64."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"expected an integer label map (H, W), got {labels.dtype} {labels.shape}")
    return labels.astype(np.int64, copy=False)



def class_index(labels: np.ndarray, classes: int, ignore_index: int = 255) -> np.ndarray:
    """Class indices ``(H, W)`` with ignored and out-of-range pixels set to ``classes`` (a palette's extra last row)."""
    labels = np.asarray(labels)
    if labels.dtype == np.uint8 and labels.ndim == 2:  # the engine's class maps: one look-up per pixel
        table = np.minimum(np.arange(256, dtype=np.int32), classes).astype(np.uint8 if classes < 256 else np.int32)
        if 0 <= ignore_index < 256:
            table[ignore_index] = classes
        return table[labels]
    labels = check_labels(labels)
    return np.where((labels >= 0) & (labels < classes) & (labels != ignore_index), labels, classes)


def colorize(labels: np.ndarray, colors: list[list[int]], ignore_index: int = 255,
             ignore_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Colour image ``(H, W, 3)`` uint8 of class indices ``(H, W)``; ignore/out-of-range -> ``ignore_color``."""
    palette = np.asarray(list(colors) + [list(ignore_color)], dtype=np.uint8)  # last row: ignore
    return palette[class_index(labels, len(colors), ignore_index)]




def write_colors(labels: np.ndarray, colors: list[list[int]], path: str | Path, ignore_index: int = 255,
                 overwrite: bool = False) -> Path:
    """:func:`colorize` as a PNG: an indexed-colour one (class indices ``(H, W)`` with the class colours as its
    palette, black last for ignored pixels), which viewers show with exactly :func:`colorize`'s pixels for a third of
    the encoding of an RGB PNG; more than 255 classes: the RGB image itself."""
    palette = np.asarray(list(colors) + [[0, 0, 0]], np.uint8)
    if len(palette) > 256:
        return save_png(colorize(labels, colors, ignore_index), path, overwrite)
    index = class_index(labels, len(colors), ignore_index).astype(np.uint8, copy=False)
    return save_png(index, path, overwrite, palette)


def _blend(base: np.ndarray, colours: np.ndarray, alpha: float) -> np.ndarray:
    """``(1 - alpha) * base + alpha * colours`` in float32 (base and colours float32, broadcast together)."""
    return (1 - alpha) * base + alpha * colours


@functools.lru_cache(maxsize=8)
def _blend_table(colors: tuple[tuple[int, ...], ...], alpha: float) -> np.ndarray:
    """Every blend :func:`overlay` can produce from a uint8 image: ``(3, (K + 1) * 256)`` uint8, entry ``[c, k * 256
    + v]`` the rounded blend of value ``v`` of channel ``c`` with class ``k``'s colour, the last class ``v`` itself
    (ignored pixels keep the image); read-only. Computed with the same float32 expression as the per-pixel blend, so
    equal to it."""
    base = np.arange(256, dtype=np.float32)
    blend = _blend(base[None, None, :], np.asarray(colors, np.uint8).astype(np.float32).T[:, :, None], alpha)
    table = np.concatenate([blend, np.broadcast_to(base, (3, 1, 256))], axis=1)  # (3, K + 1, 256)
    out = np.clip(np.rint(table), 0, 255).astype(np.uint8).reshape(3, -1)
    out.flags.writeable = False
    return out


def overlay(image: np.ndarray, labels: np.ndarray, colors: list[list[int]], alpha: float = 0.5,
            ignore_index: int = 255) -> np.ndarray:
    """``image`` ``(H, W, 3)`` (uint8, or float in [0, 1]) blended with the label colours (weight ``alpha``) as uint8
    ``(H, W, 3)``; ignored pixels keep the image. A uint8 image is blended by table look-up (:func:`_blend_table`:
    the same values, a few times faster than the float32 arithmetic per pixel)."""
    labels = check_labels(labels)
    index = class_index(labels, len(colors), ignore_index)
    return _overlay_into(np.asarray(image), index, colors, alpha, np.empty(labels.shape + (3,), np.uint8))


def _overlay_into(image: np.ndarray, index: np.ndarray, colors: list[list[int]], alpha: float, out: np.ndarray
                  ) -> np.ndarray:
    """:func:`overlay` of :func:`class_index` ``index`` (H, W), written into ``out`` (H, W, 3) uint8. A uint8 image:
    per channel, one look-up of (class, value) in :func:`_blend_table`; up to 256 classes and ignored the key is
    ``class << 8 | value`` in 16 bits (17 against 29 ms a 1024 x 2048 frame with 32-bit keys and ``np.take``)."""
    if image.shape != index.shape + (3,):
        raise ValueError(f"overlay image {image.shape} does not match labels {index.shape} + (3,)")
    if image.dtype != np.uint8:
        base = image.astype(np.float32) * (255.0 if image.dtype.kind == "f" else 1.0)
        palette = np.asarray(list(colors) + [[0, 0, 0]], dtype=np.uint8)
        blend = _blend(base, palette[index].astype(np.float32), alpha)
        keep = (index == len(colors))[..., None]
        out[...] = np.clip(np.rint(np.where(keep, base, blend)), 0, 255)
        return out
    table = _blend_table(tuple(tuple(int(v) for v in c) for c in colors), float(alpha))  # (3, (K + 1) * 256)
    small = len(colors) < 256  # class indices 0..K fit in 8 bits
    rows = index.astype(np.uint16) << 8 if small else index.astype(np.intp) * 256
    key = np.empty(index.shape, rows.dtype)
    for c in range(3):
        np.bitwise_or(rows, image[..., c], out=key) if small else np.add(rows, image[..., c], out=key)
        out[..., c] = table[c][key]
    return out


def legend_strip(labels: np.ndarray, colors: list[list[int]], class_names: list[str], width: int,
                 ignore_index: int = 255) -> np.ndarray:
    """A white strip ``(h, w, 3)`` uint8 listing the classes present in ``labels`` (a colour swatch and the class name
    each, in class order, wrapped into rows); ``w`` is ``width``, or wider when one entry does not fit. The text
    grows with ``width`` (12 px up to 1024 px wide frames, 32 px at 2048)."""
    return _legend_of(class_index(labels, len(colors), ignore_index), colors, class_names, width)


def _legend_of(index: np.ndarray, colors: list[list[int]], class_names: list[str], width: int) -> np.ndarray:
    """:func:`legend_strip` of :func:`class_index` ``index``."""
    counts = np.bincount(index.ravel(), minlength=len(colors) + 1)
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
    exactly :func:`write_overlay`'s image (padded with white on the right if the legend is wider), blended straight
    into the picture, with one class index for the blend and the legend."""
    labels = check_labels(labels)
    index = class_index(labels, len(colors), ignore_index)
    strip = _legend_of(index, colors, class_names, labels.shape[1])  # (h, W', 3)
    h, w = labels.shape
    canvas = np.empty((h + strip.shape[0], strip.shape[1], 3), np.uint8)
    _overlay_into(np.asarray(image), index, colors, alpha, canvas[:h, :w])
    canvas[:h, w:] = 255
    canvas[h:] = strip
    return save_png(canvas, path, overwrite)
