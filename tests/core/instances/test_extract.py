"""Instances from class maps: connected components vs border-split watershed, size filter, 3D."""

import numpy as np
import pytest

from segsuite.core.errors import ConfigError
from segsuite.core.instances import Instancer

CLASSES = ["ground", "building", "road"]


def touching_squares() -> tuple[np.ndarray, np.ndarray]:
    """Two 6x6 buildings sharing an edge, and the predicted border probability along the contact."""
    semantic = np.zeros((12, 16), np.int64)
    semantic[3:9, 2:14] = 1
    border = np.zeros(semantic.shape, np.float32)
    border[3:9, 7:9] = 0.9
    return semantic, border


def test_touching_squares_are_two_instances_with_borders_and_one_without():
    semantic, border = touching_squares()
    cut = Instancer(["building"], CLASSES)
    merged = cut(semantic)
    assert merged.n == 1 and merged.sizes()[1] == 72
    split = cut(semantic, border)
    assert split.n == 2
    assert sorted(split.sizes()[1:].tolist()) == [36, 36]  # border pixels go back to their objects
    assert (split.ids[3:9, 2:8] == split.ids[4, 2]).all() and (split.ids[3:9, 8:14] == split.ids[4, 13]).all()
    assert Instancer(["building"], CLASSES, border="off")(semantic, border).n == 1


def test_classes_min_size_and_connectivity():
    semantic = np.zeros((10, 10), np.int64)
    semantic[0:3, 0:3] = 1  # 9 px building
    semantic[5, 5] = 1  # 1 px fragment
    semantic[6, 6] = 1  # touches the fragment by a corner only
    semantic[7:10, 0:4] = 2  # road: stuff
    inst = Instancer(["building"], CLASSES, min_size=2)(semantic)
    assert inst.n == 1 and inst.classes.tolist() == [-1, 1]
    assert Instancer(["building"], CLASSES, connectivity=2, min_size=2)(semantic).n == 2
    both = Instancer(["building", "road"], CLASSES)(semantic)
    assert both.n == 4 and sorted(both.classes[1:].tolist()) == [1, 1, 1, 2]


def test_volumes_are_cut_in_3d():
    semantic = np.zeros((6, 8, 8), np.int64)
    semantic[0:2, 1:3, 1:3] = 1
    semantic[3:6, 4:7, 4:7] = 1
    inst = Instancer(["building"], CLASSES)(semantic)
    assert inst.n == 2 and sorted(inst.sizes()[1:].tolist()) == [8, 27]


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="unicorn.*ground, building, road"):
        Instancer(["unicorn"], CLASSES)
    with pytest.raises(ConfigError, match="at least one thing"):
        Instancer([], CLASSES)
    with pytest.raises(ConfigError, match="border channel"):
        Instancer(["building"], CLASSES, border="on")(np.zeros((4, 4), np.int64))
    with pytest.raises(ConfigError, match="border must be"):
        Instancer(["building"], CLASSES, border="maybe")
