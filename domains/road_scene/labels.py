"""Label tables and label decoding for driving datasets (Cityscapes, CamVid, KITTI road, generic class maps).

Conventions: label maps are 2-D integer arrays ``(H, W)``; colour images are ``(H, W, 3)`` uint8 RGB.
Decoders return ``(H, W)`` int64 class indices with ignored pixels set to ``ignore_index``.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from segsuite.core.errors import ConfigError
from segsuite.core.images import decode_color_label


class CityscapesLabel(NamedTuple):
    """One row of the official Cityscapes label table (cityscapesscripts/helpers/labels.py)."""

    name: str
    id: int
    train_id: int  # 0..18 for the 19 evaluated classes, 255 for everything else
    category: str
    color: tuple[int, int, int]


# The official table. Differences from cityscapesscripts: every non-training label (including 'license plate',
# whose official trainId is -1) has trainId 255, the ignore value.
CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, "void", (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, "void", (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, "void", (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, "void", (0, 0, 0)),
    CityscapesLabel("static", 4, 255, "void", (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, "void", (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, "void", (81, 0, 81)),
    CityscapesLabel("road", 7, 0, "flat", (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, "flat", (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, "flat", (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, "flat", (230, 150, 140)),
    CityscapesLabel("building", 11, 2, "construction", (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, "construction", (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, "construction", (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, "construction", (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, "construction", (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, "construction", (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, "object", (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, "object", (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, "object", (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, "object", (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, "nature", (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, "nature", (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, "sky", (70, 130, 180)),
    CityscapesLabel("person", 24, 11, "human", (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, "human", (255, 0, 0)),
    CityscapesLabel("car", 26, 13, "vehicle", (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, "vehicle", (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, "vehicle", (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, "vehicle", (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, "vehicle", (0, 0, 110)),
    CityscapesLabel("train", 31, 16, "vehicle", (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, "vehicle", (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, "vehicle", (119, 11, 32)),
    CityscapesLabel("license plate", -1, 255, "vehicle", (0, 0, 142)),
)

CITYSCAPES_TRAIN_LABELS: tuple[CityscapesLabel, ...] = tuple(
    sorted((lb for lb in CITYSCAPES_LABELS if lb.train_id != 255), key=lambda lb: lb.train_id)
)
CITYSCAPES_CLASS_NAMES: list[str] = [lb.name for lb in CITYSCAPES_TRAIN_LABELS]
CITYSCAPES_COLORS: list[list[int]] = [list(lb.color) for lb in CITYSCAPES_TRAIN_LABELS]
CITYSCAPES_TRAIN_ID_TO_ID: list[int] = [lb.id for lb in CITYSCAPES_TRAIN_LABELS]
# Categories used for category mIoU ('void' holds no training class and is never evaluated).
CITYSCAPES_CATEGORIES: list[str] = ["flat", "construction", "object", "nature", "sky", "human", "vehicle"]
CITYSCAPES_TRAIN_ID_TO_CATEGORY: list[int] = [
    CITYSCAPES_CATEGORIES.index(lb.category) for lb in CITYSCAPES_TRAIN_LABELS
]
CITYSCAPES_VOID_ID = 0  # 'unlabeled': what ignored pixels become when writing label ids


def cityscapes_id_to_train_id(ignore_index: int = 255) -> np.ndarray:
    """Lookup table ``(256,)`` int64: label id -> trainId (non-training ids -> ``ignore_index``, unknown ids -> -1)."""
    lut = np.full(256, -1, dtype=np.int64)
    for lb in CITYSCAPES_LABELS:
        if lb.id >= 0:
            lut[lb.id] = ignore_index if lb.train_id == 255 else lb.train_id
    return lut


def cityscapes_train_id_to_id() -> np.ndarray:
    """Lookup table ``(256,)`` uint8: trainId -> label id; every value >= 19 (ignore) -> 0 'unlabeled'."""
    lut = np.full(256, CITYSCAPES_VOID_ID, dtype=np.uint8)
    lut[: len(CITYSCAPES_TRAIN_ID_TO_ID)] = CITYSCAPES_TRAIN_ID_TO_ID
    return lut


# The common 11-class setting (SegNet order: index 0..10 in '*annot' PNGs, 11 = Void) with the colours of the
# original CamVid label images (LabeledApproved_full: Pavement = 'Sidewalk', Pole = 'Column_Pole').
CAMVID_CLASSES: list[str] = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
]
CAMVID_COLORS: dict[str, tuple[int, int, int]] = {
    "Sky": (128, 128, 128), "Building": (128, 0, 0), "Pole": (192, 192, 128), "Road": (128, 64, 128),
    "Pavement": (0, 0, 192), "Tree": (128, 128, 0), "SignSymbol": (192, 128, 128), "Fence": (64, 64, 128),
    "Car": (64, 0, 128), "Pedestrian": (64, 64, 0), "Bicyclist": (0, 128, 192),
}
CAMVID_VOID_INDEX = 11
# Colours of the other original 32-class labels: valid in colour-coded CamVid labels, decoded to ignore.
CAMVID_OTHER_COLORS: dict[str, tuple[int, int, int]] = {
    "Animal": (64, 128, 64), "Archway": (192, 0, 128), "Bridge": (0, 128, 64), "CartLuggagePram": (64, 0, 192),
    "Child": (192, 128, 64), "LaneMkgsDriv": (128, 0, 192), "LaneMkgsNonDriv": (192, 0, 64),
    "Misc_Text": (128, 128, 64), "MotorcycleScooter": (192, 0, 192), "OtherMoving": (128, 64, 64),
    "ParkingBlock": (64, 192, 128), "RoadShoulder": (128, 128, 192), "SUVPickupTruck": (64, 128, 192),
    "TrafficCone": (0, 0, 64), "TrafficLight": (0, 64, 64), "Train": (192, 64, 128), "Truck_Bus": (192, 128, 192),
    "Tunnel": (64, 0, 64), "VegetationMisc": (192, 192, 0), "Void": (0, 0, 0), "Wall": (64, 192, 0),
}


def camvid_classes(names: list[str] | None = None) -> list[str]:
    """The CamVid classes to train on, in training-index order (default: all 11); names must be CamVid's."""
    if names is None:
        return list(CAMVID_CLASSES)
    unknown = [n for n in names if n not in CAMVID_CLASSES]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"CamVid classes {list(names)}: expected distinct names from {CAMVID_CLASSES} "
                          f"(unknown: {unknown})")
    return list(names)


def camvid_index_lut(classes: list[str], ignore_index: int = 255) -> np.ndarray:
    """Lookup table ``(256,)`` int64: SegNet index (0..10, 11 Void) -> training index; unselected -> ignore, rest -1."""
    lut = np.full(256, -1, dtype=np.int64)
    lut[: CAMVID_VOID_INDEX + 1] = ignore_index
    for train_index, name in enumerate(classes):
        lut[CAMVID_CLASSES.index(name)] = train_index
    return lut


def camvid_color_table(classes: list[str], ignore_index: int = 255) -> dict[tuple[int, int, int], int]:
    """Colour -> training index for colour-coded CamVid labels; every other CamVid-32 colour -> ignore."""
    table = {c: ignore_index for c in CAMVID_OTHER_COLORS.values()}
    table.update({CAMVID_COLORS[n]: ignore_index for n in CAMVID_CLASSES})
    table.update({CAMVID_COLORS[n]: i for i, n in enumerate(classes)})
    return table


KITTI_CLASSES: list[str] = ["non-road", "road"]
KITTI_COLORS: list[list[int]] = [[255, 0, 0], [255, 0, 255]]  # colours of gt_image_2/*_road_*.png
KITTI_DONT_CARE = (0, 0, 0)


def kitti_road_color_table(ignore_index: int = 255) -> dict[tuple[int, int, int], int]:
    """KITTI road ground truth colours: magenta = road (1), red = non-road (0), black = don't care (ignore)."""
    return {tuple(KITTI_COLORS[1]): 1, tuple(KITTI_COLORS[0]): 0, KITTI_DONT_CARE: ignore_index}


def decode_kitti_road(rgb: np.ndarray, path: str | Path, ignore_index: int = 255) -> np.ndarray:
    """Decode a KITTI road ground truth image ``(H, W, 3)`` into ``(H, W)`` int64 (1 road, 0 non-road, ignore)."""
    return decode_color_label(rgb, kitti_road_color_table(ignore_index), path)
