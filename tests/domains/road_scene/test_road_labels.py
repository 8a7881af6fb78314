"""Label tables and decoders against the official tables and hand-made inputs."""


import numpy as np
import pytest
from cityscapesscripts.helpers import labels as cs

from segsuite.core.errors import ConfigError, DataError
from segsuite.domains.road_scene.labels import (
    CAMVID_CLASSES,
    CITYSCAPES_CATEGORIES,
    CITYSCAPES_CLASS_NAMES,
    CITYSCAPES_COLORS,
    CITYSCAPES_LABELS,
    CITYSCAPES_TRAIN_ID_TO_CATEGORY,
    camvid_classes,
    camvid_color_table,
    camvid_index_lut,
    cityscapes_id_to_train_id,
    cityscapes_train_id_to_id,
    decode_kitti_road,
)


def test_table_matches_cityscapesscripts_row_by_row():
    assert len(CITYSCAPES_LABELS) == len(cs.labels) == 35
    for ours, official in zip(CITYSCAPES_LABELS, cs.labels, strict=True):
        assert (ours.name, ours.id, ours.category, ours.color) == (
            official.name, official.id, official.category, official.color)
        expected_train = 255 if official.trainId in (255, -1) else official.trainId
        assert ours.train_id == expected_train


@pytest.mark.parametrize("ignore_index", [255, 19])
def test_id_to_train_id_for_every_official_id(ignore_index):
    lut = cityscapes_id_to_train_id(ignore_index)
    for label in cs.labels:
        if label.id < 0:
            continue  # license plate: no pixel value
        expected = ignore_index if label.trainId in (255, -1) else label.trainId
        assert lut[label.id] == expected, label.name
    assert (lut[34:] == -1).all()  # ids that do not exist are rejected, not silently ignored
    assert sorted(v for v in lut[:34] if v != ignore_index) == list(range(19))


def test_train_id_to_id_inverts_and_names_colours_categories_match():
    to_id = cityscapes_train_id_to_id()
    to_train = cityscapes_id_to_train_id()
    for train_id in range(19):
        label = cs.id2label[int(to_id[train_id])]
        assert label.trainId == train_id
        assert to_train[to_id[train_id]] == train_id
        assert CITYSCAPES_CLASS_NAMES[train_id] == label.name
        assert tuple(CITYSCAPES_COLORS[train_id]) == label.color
        assert CITYSCAPES_CATEGORIES[CITYSCAPES_TRAIN_ID_TO_CATEGORY[train_id]] == label.category
    assert (to_id[19:] == 0).all() and cs.id2label[0].ignoreInEval  # ignore -> 'unlabeled'
    assert set(CITYSCAPES_CATEGORIES) == {c for c in cs.category2labels if c != "void"}


def test_kitti_road_decoding_including_dont_care():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0] = [(255, 0, 255), (255, 0, 0), (0, 0, 0)]
    rgb[1] = [(255, 0, 0), (255, 0, 255), (255, 0, 255)]
    out = decode_kitti_road(rgb, "x_road_0.png", ignore_index=99)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [[1, 0, 99], [0, 1, 1]])


def test_kitti_unknown_colours_name_file_and_colours():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 255)
    rgb[1, 1] = (12, 34, 56)
    rgb[1, 0] = (255, 0, 254)
    with pytest.raises(DataError) as err:
        decode_kitti_road(rgb, "/data/gt_image_2/um_road_000007.png")
    message = str(err.value)
    assert "um_road_000007.png" in message
    assert "(12, 34, 56)" in message and "(255, 0, 254)" in message
    assert "(255, 0, 255)" in message  # the accepted colours are listed too


def test_camvid_default_and_custom_class_lists():
    assert camvid_classes() == CAMVID_CLASSES and len(CAMVID_CLASSES) == 11
    lut = camvid_index_lut(["Road", "Car"], ignore_index=255)
    assert lut[3] == 0 and lut[8] == 1  # SegNet indices of Road and Car
    assert lut[0] == 255 and lut[11] == 255  # unselected class and Void -> ignore
    assert lut[12] == -1  # not a CamVid index
    table = camvid_color_table(["Road", "Car"])
    assert table[(128, 64, 128)] == 0 and table[(64, 0, 128)] == 1
    assert table[(128, 128, 128)] == 255  # Sky not selected
    assert table[(128, 0, 192)] == 255  # LaneMkgsDriv: a valid CamVid-32 colour outside the 11 classes
    with pytest.raises(ConfigError, match="Lorry"):
        camvid_classes(["Road", "Lorry"])
