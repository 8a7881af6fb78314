"""The core's PNGs and overlays (every domain's pictures): the fast encoder and the table-driven overlay give
exactly the pixels of Pillow's encoder and of the float32 blend per pixel."""

from __future__ import annotations

import io as _io

import numpy as np
import pytest
from PIL import Image

from segsuite.core import overlay as ov
from segsuite.core.png import encode_png


def _decoded(data: bytes) -> np.ndarray:
    with Image.open(_io.BytesIO(data)) as img:
        return np.asarray(img)


@pytest.mark.parametrize("shape,dtype", [((37, 53, 3), np.uint8), ((5, 7), np.uint8), ((9, 11), np.uint16),
                                         ((1, 1), np.uint8), ((1, 1, 3), np.uint8), ((64, 1), np.uint8)])
def test_encoded_png_decodes_to_the_same_pixels_as_pillows(shape, dtype):
    array = np.random.default_rng(0).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    ours = _decoded(encode_png(array))
    buffer = _io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    np.testing.assert_array_equal(ours, _decoded(buffer.getvalue()))
    np.testing.assert_array_equal(ours.astype(dtype), array)


def _float_blend(image, labels, colors, alpha, ignore_index=255):
    """The overlay as it was computed before the look-up table: float32 per pixel."""
    base = image.astype(np.float32)
    palette = np.asarray(list(colors) + [[0, 0, 0]], np.uint8)
    index = np.where((labels >= 0) & (labels < len(colors)) & (labels != ignore_index), labels, len(colors))
    blend = (1 - alpha) * base + alpha * palette[index].astype(np.float32)
    keep = (index == len(colors))[..., None]
    return np.clip(np.rint(np.where(keep, base, blend)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("alpha,classes", [(0.0, 19), (0.3, 19), (0.5, 19), (0.77, 19), (1.0, 19), (0.5, 300)])
def test_overlay_by_table_equals_the_float_blend(alpha, classes):
    """19 classes: 16-bit (class, value) keys; 300: too many for them, 32-bit keys."""
    rng = np.random.default_rng(1)
    colors = rng.integers(0, 256, (classes, 3)).tolist()
    image = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    labels = rng.integers(-2, classes + 3, (24, 40))
    labels[0, :5] = 255  # ignored: the image itself
    np.testing.assert_array_equal(ov.overlay(image, labels, colors, alpha), _float_blend(image, labels, colors, alpha))


def test_written_overlay_with_legend_decodes_to_the_blend_above_a_cached_legend(tmp_path):
    rng = np.random.default_rng(2)
    colors, names = rng.integers(0, 256, (4, 3)).tolist(), ["road", "car", "sky", "tree"]
    image, labels = rng.integers(0, 256, (16, 64, 3), dtype=np.uint8), rng.integers(0, 3, (16, 64))
    path = ov.write_overlay_with_legend(image, labels, colors, names, tmp_path / "o.png")
    with Image.open(path) as img:
        written = np.asarray(img)
    np.testing.assert_array_equal(written[:16], _float_blend(image, labels, colors, 0.5))
    legend = ov.legend_strip(labels, colors, names, 64)
    assert legend is ov.legend_strip(labels[::-1], colors, names, 64)  # same classes: drawn once
    np.testing.assert_array_equal(written[16:], legend)


@pytest.mark.parametrize("ignore_index", [255, 3, -1])
def test_class_index_of_uint8_maps_equals_that_of_int64_maps(ignore_index):
    labels = np.random.default_rng(3).integers(0, 256, (17, 23)).astype(np.uint8)
    fast = ov.class_index(labels, 19, ignore_index)
    np.testing.assert_array_equal(fast, ov.class_index(labels.astype(np.int64), 19, ignore_index))
    colors = np.random.default_rng(4).integers(0, 256, (19, 3)).tolist()
    image = np.random.default_rng(5).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    np.testing.assert_array_equal(ov.overlay(image, labels, colors, 0.4, ignore_index),
                                  _float_blend(image, labels.astype(np.int64), colors, 0.4, ignore_index))


def test_colour_pngs_are_indexed_and_show_exactly_colorizes_pixels(tmp_path):
    rng = np.random.default_rng(3)
    colors = rng.integers(0, 256, (19, 3)).tolist()
    for labels in (rng.integers(0, 19, (33, 47)).astype(np.uint8), rng.integers(-3, 300, (33, 47))):
        labels[0, :4] = 255  # ignored: black
        path = ov.write_colors(labels, colors, tmp_path / f"c{labels.dtype}.png")
        with Image.open(path) as img:
            assert img.mode == "P"
            np.testing.assert_array_equal(np.asarray(img.convert("RGB")), ov.colorize(labels, colors))
    many = [[i % 256, i // 256, 7] for i in range(300)]  # more classes than a palette holds: RGB
    labels = rng.integers(0, 300, (8, 9))
    with Image.open(ov.write_colors(labels, many, tmp_path / "many.png")) as img:
        assert img.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(img), ov.colorize(labels, many))


def test_instance_overlay_blends_each_object_in_its_colour_with_white_outlines():
    rgb = np.full((6, 8, 3), 100, np.uint8)
    ids = np.zeros((6, 8), np.int64)
    ids[1:4, 1:4], ids[1:4, 4:7] = 1, 2  # touching
    out = ov.instance_overlay(rgb, ids, alpha=0.5)
    colours = ov.instance_colors(ids)
    np.testing.assert_array_equal(out[ids == 0], rgb[ids == 0])  # background keeps the image
    edges = ov.instance_edges(ids)
    assert (out[edges] == 255).all() and edges[2, 3] and edges[2, 4]  # the contact is outlined
    inside = (ids > 0) & ~edges
    np.testing.assert_array_equal(out[inside], np.rint(0.5 * rgb[inside] + 0.5 * colours[inside]).astype(np.uint8))
    assert (rgb == 100).all()  # the caller's image is not changed
