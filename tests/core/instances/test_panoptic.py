import json

import numpy as np
import pytest

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances.extract import Instances
from segsuite.core.instances.panoptic import (
    ids_from_rgb,
    label_divisor_ids,
    panoptic_segments,
    rgb_from_ids,
    split_label_divisor,
)

# classes: 0 road (stuff), 1 sky (stuff), 2 car (thing), 3 person (thing)
THINGS = [2, 3]


def scene_2d() -> tuple[np.ndarray, Instances]:
    semantic = np.array([
        [1, 1, 1, 1, 1, 1],
        [1, 2, 2, 1, 3, 1],
        [0, 2, 2, 0, 3, 0],
        [0, 0, 2, 2, 0, 255],
    ])
    ids = np.array([
        [0, 0, 0, 0, 0, 0],
        [0, 2, 2, 0, 1, 0],
        [0, 2, 2, 0, 1, 0],
        [0, 0, 0, 3, 0, 0],
    ], np.int32)
    # instance 1: person (x=4, y=1..2); 2: car (x=1..2, y=1..2); 3: car (x=3, y=3); car pixel (3, 2) has no instance
    return semantic, Instances(ids, np.array([-1, 3, 2, 2]))


def test_rgb_round_trip_including_large_ids():
    ids = np.array([[0, 1, 255, 256], [65535, 65536, 1_234_567, 256**3 - 1]])
    rgb = rgb_from_ids(ids)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 4, 3)
    assert rgb[0, 3].tolist() == [0, 1, 0]  # 256 = G 1
    assert rgb[1, 2].tolist() == [1_234_567 % 256, 1_234_567 // 256 % 256, 1_234_567 // 65536]
    back = ids_from_rgb(rgb)
    assert back.dtype == np.int64 and np.array_equal(back, ids)
    volume = np.arange(24).reshape(2, 3, 4) * 700_001
    assert np.array_equal(ids_from_rgb(rgb_from_ids(volume)), volume)


@pytest.mark.parametrize("bad", [np.array([-1]), np.array([256**3])])
def test_rgb_rejects_ids_out_of_range(bad):
    with pytest.raises(DataError, match="0..16777215"):
        rgb_from_ids(bad)


def test_ids_from_rgb_rejects_wrong_shape():
    with pytest.raises(DataError, match=r"\(\.\.\., 3\)"):
        ids_from_rgb(np.zeros((4, 4), np.uint8))


def test_segments_2d_areas_bboxes_and_void():
    semantic, instances = scene_2d()
    segments, info = panoptic_segments(semantic, instances, THINGS, category_ids=[7, 23, 26, 24])
    json.dumps(info)  # plain ints only
    assert segments.dtype == np.int32
    # stuff first (road 1, sky 2), then instances by id: person 3, car 4, car 5
    assert [(s["id"], s["category_id"], s["isthing"]) for s in info] == [
        (1, 7, 0), (2, 23, 0), (3, 24, 1), (4, 26, 1), (5, 26, 1)]
    assert [s["area"] for s in info] == [6, 9, 2, 4, 1]
    assert [s["bbox"] for s in info] == [
        [0, 2, 6, 2],  # road: x 0..5, y 2..3
        [0, 0, 6, 2],  # sky: x 0..5, y 0..1
        [4, 1, 1, 2],
        [1, 1, 2, 2],
        [3, 3, 1, 1],
    ]
    assert all(s["iscrowd"] == 0 for s in info)
    assert segments[3, 2] == 0 and segments[3, 5] == 0  # thing pixel without instance, ignored pixel
    for s in info:
        assert (segments == s["id"]).sum() == s["area"]


def test_segments_3d_bbox_is_x_y_z_w_h_d():
    semantic = np.zeros((3, 4, 5), np.int64)
    ids = np.zeros((3, 4, 5), np.int32)
    ids[1:3, 0:2, 2:5] = 1  # z 1..2, y 0..1, x 2..4
    semantic[ids == 1] = 1
    segments, info = panoptic_segments(semantic, Instances(ids, np.array([-1, 1])), things=[1])
    assert [(s["category_id"], s["area"], s["bbox"]) for s in info] == [
        (0, 60 - 12, [0, 0, 0, 5, 4, 3]),
        (1, 12, [2, 0, 1, 3, 2, 2]),
    ]
    assert segments.shape == (3, 4, 5)


def test_segments_reject_instances_of_stuff_classes_and_unknown_things():
    semantic, instances = scene_2d()
    with pytest.raises(DataError, match="must all be thing classes"):
        panoptic_segments(semantic, instances, things=[2])
    with pytest.raises(ConfigError, match="out of range"):
        panoptic_segments(semantic, instances, things=[2, 3, 9], category_ids=[7, 23, 26, 24])


def test_label_divisor_encoding_and_round_trip():
    semantic, instances = scene_2d()
    categories = [7, 23, 26, 24]
    encoded = label_divisor_ids(semantic, instances, THINGS, categories)
    assert encoded.dtype == np.int32
    assert encoded[1, 4] == 24_000  # person instance 1: first person
    assert encoded[1, 1] == 26_000 and encoded[3, 3] == 26_001  # cars 2 and 3, in id order
    assert encoded[0, 0] == 23 and encoded[2, 0] == 7
    assert encoded[3, 2] == 26  # car pixel outside every instance: category only
    assert encoded[3, 5] == 0  # ignored
    category, instance = split_label_divisor(encoded)
    assert np.array_equal(np.where(semantic == 255, 0, np.array(categories + [0] * 252)[semantic]), category)
    assert np.array_equal(instance >= 0, instances.ids > 0)
    rebuilt = np.where(instance >= 0, category * 1000 + instance, category)
    assert np.array_equal(rebuilt, encoded)


def test_label_divisor_needs_nonzero_thing_categories():
    semantic, instances = scene_2d()
    with pytest.raises(ConfigError, match="category id 0"):
        label_divisor_ids(semantic, instances, things=[0, 2, 3])
