"""Writers: geometry kept exactly, native formats, atomic writes and overwrite refusal; readers' conversions."""

import numpy as np
import pytest
from PIL import Image

from segsuite.core.errors import DataError
from segsuite.core.overlay import overlay, write_colors, write_overlay_with_legend
from segsuite.core.png import save_png
from segsuite.domains.road_scene import io
from segsuite.domains.road_scene.metrics import kitti_road_counts, kitti_road_scores


def test_kitti_probability_png_round_trips_as_the_devkit_reads_it(tmp_path):
    rng = np.random.default_rng(0)
    prob = rng.random((13, 29))
    gt = (rng.random((13, 29)) < 0.5).astype(int)
    path = io.write_kitti_road(prob, tmp_path / "um_road_000000.png")
    png = np.asarray(Image.open(path))
    assert png.shape == (13, 29) and png.dtype == np.uint8
    np.testing.assert_array_equal(png, np.rint(prob * 255))
    devkit_prob = png.astype("f4") / 255  # evaluateRoad.py: cv2.imread(..., 0) / iinfo(uint8).max
    from_file = kitti_road_scores(kitti_road_counts(devkit_prob, gt, quantize=False))
    from_memory = kitti_road_scores(kitti_road_counts(prob, gt))
    assert from_file == from_memory


def test_kitti_binary_and_native_dispatch(tmp_path):
    meta = {"label_format": "kitti_road"}
    labels = np.array([[0, 1], [1, 0]])
    binary = np.asarray(Image.open(io.write_native(labels, meta, tmp_path / "b.png")))
    np.testing.assert_array_equal(binary, [[0, 255], [255, 0]])
    prob = np.array([[0.0, 0.25], [1.0, 0.5]])
    soft = np.asarray(Image.open(io.write_native(labels, meta, tmp_path / "p.png", road_prob=prob)))
    np.testing.assert_array_equal(soft, [[0, 64], [255, 128]])
    assert io.output_name("um_000042.png", meta) == "um_road_000042.png"
    assert io.output_name("aachen_000000_000019_leftImg8bit.png", {"label_format": "index"}) == \
        "aachen_000000_000019_leftImg8bit.png"


def test_index_writer_uses_native_ids_and_widens_to_16_bit(tmp_path):
    labels = np.array([[0, 1, 2], [255, 1, 0]])
    small = np.asarray(Image.open(io.write_index_label(labels, [3, 8, 10], 11, tmp_path / "a.png")))
    np.testing.assert_array_equal(small, [[3, 8, 10], [11, 8, 3]])
    big = io.write_index_label(labels, [0, 300, 1000], 255, tmp_path / "b.png")
    assert Image.open(big).mode in ("I;16", "I")
    np.testing.assert_array_equal(np.asarray(Image.open(big)), [[0, 300, 1000], [255, 300, 0]])


def test_colour_and_overlay_keep_geometry(tmp_path):
    labels = np.zeros((5, 7), int)
    labels[:, 3:] = 1
    labels[0, 0] = 255
    colors = [[10, 20, 30], [200, 100, 0]]
    rgb = np.asarray(Image.open(write_colors(labels, colors, tmp_path / "c.png")).convert("RGB"))  # indexed PNG
    assert rgb.shape == (5, 7, 3)
    assert tuple(rgb[1, 0]) == (10, 20, 30) and tuple(rgb[1, 6]) == (200, 100, 0) and tuple(rgb[0, 0]) == (0, 0, 0)
    image = np.full((5, 7, 3), 100, np.uint8)
    over = np.asarray(Image.open(save_png(overlay(image, labels, colors, alpha=0.5), tmp_path / "o.png")))
    assert over.shape == (5, 7, 3)
    assert tuple(over[1, 6]) == (150, 100, 50) and tuple(over[0, 0]) == (100, 100, 100)  # ignore keeps the image
    float_over = np.asarray(Image.open(save_png(overlay(image / 255.0, labels, colors), tmp_path / "f.png")))
    np.testing.assert_array_equal(float_over, over)


def test_refuses_to_overwrite_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "out.png"
    write_colors(np.zeros((2, 2), int), [[1, 2, 3]], path)
    with pytest.raises(DataError, match="already exists"):
        write_colors(np.ones((2, 2), int), [[1, 2, 3]], path)
    write_colors(np.zeros((3, 3), int), [[9, 9, 9]], path, overwrite=True)
    assert np.asarray(Image.open(path).convert("RGB")).shape == (3, 3, 3)
    with pytest.raises(ValueError):
        save_png(np.zeros((2, 2), np.float32), tmp_path / "bad.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_overlay_with_legend_adds_a_strip_naming_the_classes_in_the_frame(tmp_path):
    labels = np.zeros((64, 300), int)
    labels[:, 150:] = 2
    labels[0, 0] = 255
    colors, names = [[10, 20, 30], [0, 255, 0], [200, 100, 0]], ["road", "grass", "car"]
    image = np.full((64, 300, 3), 100, np.uint8)
    plain = np.asarray(Image.open(save_png(overlay(image, labels, colors), tmp_path / "o.png")))
    framed = np.asarray(Image.open(write_overlay_with_legend(image, labels, colors, names, tmp_path / "l.png")))
    assert framed.shape[0] > 64 and framed.shape[1:] == (300, 3)
    np.testing.assert_array_equal(framed[:64], plain)  # the overlay itself is unchanged; the legend is below
    strip = framed[64:].reshape(-1, 3)
    swatches = {c for c in map(tuple, strip.tolist()) if c in {(10, 20, 30), (0, 255, 0), (200, 100, 0)}}
    assert swatches == {(10, 20, 30), (200, 100, 0)}  # the classes present, not grass
    tiny = np.asarray(Image.open(write_overlay_with_legend(image[:5, :7], labels[:5, :7], colors, names,
                                                              tmp_path / "t.png")))
    assert tiny.shape[1] > 7 and (tiny[:5, 7:] == 255).all()  # a legend wider than the frame pads it with white
