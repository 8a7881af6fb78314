"""Reading image files and decoding label images (every photo domain's): conversions on read, label values and
colours mapped through tables, errors naming the file and what is accepted."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segsuite.core.errors import DataError
from segsuite.core.images import (
    ColorDecoder,
    IndexDecoder,
    apply_lut,
    decode_color_label,
    image_size,
    read_color_label,
    read_index_label,
    read_pixels,
    read_rgb,
    rgb_pixels,
)


def write_png(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    img = Image.fromarray(array)
    (img.convert(mode) if mode else img).save(path)
    return path


def test_read_rgb_conversions(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    g = read_rgb(write_png(tmp_path / "g.png", grey))
    assert g.shape == (3, 4, 3) and g.dtype == np.float32
    np.testing.assert_allclose(g[..., 0], grey / 255.0)
    np.testing.assert_array_equal(g[..., 0], g[..., 2])
    rgba = np.dstack([np.full((3, 4, 3), 51, np.uint8), np.zeros((3, 4), np.uint8)])
    np.testing.assert_allclose(read_rgb(write_png(tmp_path / "a.png", rgba)), 0.2)  # alpha dropped
    grey16 = np.full((3, 4), 65535, np.uint16)
    np.testing.assert_allclose(read_rgb(write_png(tmp_path / "g16.png", grey16)), 1.0)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        read_rgb(tmp_path / "broken.png")
    with pytest.raises(DataError, match="rgb.png.*single-channel"):
        read_index_label(write_png(tmp_path / "rgb.png", np.zeros((2, 2, 3), np.uint8)))


def test_8_bit_rgb_pngs_decode_to_pillows_pixels_and_palettes_expand(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    fast = read_pixels(write_png(tmp_path / "rgb.png", rgb))  # libpng through torchvision
    assert fast.dtype == np.uint8 and fast.shape == (5, 9, 3)
    np.testing.assert_array_equal(fast, rgb)
    palette = write_png(tmp_path / "p.png", rgb, "P")
    np.testing.assert_array_equal(read_pixels(palette), np.asarray(Image.open(palette).convert("RGB")))
    np.testing.assert_array_equal(read_color_label(palette), read_pixels(palette))
    assert image_size(palette) == (5, 9)


def test_label_values_map_through_a_table_and_unknown_ones_are_named(tmp_path):
    lut = np.full(256, -1, np.int64)
    lut[[3, 7, 255]] = [0, 1, 255]
    path = write_png(tmp_path / "l.png", np.array([[3, 7], [255, 3]], np.uint8))
    np.testing.assert_array_equal(IndexDecoder(lut, "3, 7")(path), [[0, 1], [255, 0]])
    assert read_index_label(path).dtype == np.uint8
    with pytest.raises(DataError, match=r"x.png: label ids \[4, 9\] are not in the mapping; accepted: 3, 7"):
        apply_lut(np.array([[3, 4], [9, 4]]), lut, "x.png", "3, 7")
    with pytest.raises(DataError, match=r"label ids \[-1, 300\]"):
        apply_lut(np.array([[-1, 300]]), lut, "y.png", "3, 7")


def test_label_colours_map_through_a_table_and_unknown_ones_are_named(tmp_path):
    table = {(255, 0, 255): 1, (255, 0, 0): 0, (0, 0, 0): 99}
    rgb = np.array([[(255, 0, 255), (255, 0, 0), (0, 0, 0)]], np.uint8)
    np.testing.assert_array_equal(ColorDecoder(table)(write_png(tmp_path / "c.png", rgb)), [[1, 0, 99]])
    rgb[0, 2] = (12, 34, 56)
    with pytest.raises(DataError) as err:
        decode_color_label(rgb, table, "/data/um_road_000007.png")
    message = str(err.value)
    assert "um_road_000007.png" in message and "unknown colours (12, 34, 56)" in message
    assert "(255, 0, 255)" in message  # the accepted colours are listed too


def test_in_memory_rgb_arrays_become_what_a_file_gives():
    hwc = np.random.default_rng(1).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(rgb_pixels(hwc.transpose(2, 0, 1)), hwc)  # (3, H, W) -> (H, W, 3)
    floats = rgb_pixels(hwc / 255.0)
    assert floats.dtype == np.float32 and floats.flags.c_contiguous
    with pytest.raises(DataError, match=r"shape \(4, 6\): expected an RGB image"):
        rgb_pixels(hwc[..., 0])
    with pytest.raises(DataError, match="expected uint8 .* or float in"):
        rgb_pixels(hwc * 2.0)
