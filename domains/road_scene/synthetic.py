"""Synthetic driving scenes in Cityscapes layout with official label ids.

Each scene: sky above a horizon, buildings and vegetation along it, a perspective road (trapezoid towards a
vanishing point) with dashed lane markings (labelled road), sidewalks and terrain beside it, poles with traffic
signs, cars (boxes with wheels and windows) on the road, people (head + body) on the sidewalks, and the ego-vehicle
bonnet at the bottom (id 1, ignored in training). Class colours get a per-image shift and per-pixel noise so a
small CNN has to learn from context and colour together. Output is fully determined by the seed.

Files (as in Cityscapes): ``leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png`` and
``gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_{labelIds,instanceIds,color}.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segsuite.core.png import save_png

from .labels import CITYSCAPES_LABELS

_ID = {lb.name: lb.id for lb in CITYSCAPES_LABELS}
_LABEL_COLOR = np.zeros((256, 3), dtype=np.uint8)
for _lb in CITYSCAPES_LABELS:
    if _lb.id >= 0:
        _LABEL_COLOR[_lb.id] = _lb.color

# Base appearance (RGB) of each synthetic class in the photo, before per-image shift and noise.
_APPEARANCE = {
    "sky": (135, 180, 230), "building": (150, 120, 100), "vegetation": (60, 120, 50), "terrain": (140, 170, 90),
    "road": (90, 90, 95), "sidewalk": (175, 165, 160), "pole": (70, 70, 75), "traffic sign": (230, 200, 40),
    "person": (180, 60, 70), "ego vehicle": (30, 30, 35),
}
_CAR_PAINTS = [(200, 30, 30), (30, 60, 170), (220, 220, 220), (40, 40, 40), (200, 160, 40)]
SPLIT_CITIES = {"train": "synthtrain", "val": "synthval", "test": "synthtest"}


class _Canvas:
    """Paints the photo, label-id map and instance-id map together so they stay aligned."""

    def __init__(self, h: int, w: int, rng: np.random.Generator) -> None:
        self.rng = rng
        self.photo = Image.new("RGB", (w, h))
        self.labels = Image.new("L", (w, h))
        self.instances = Image.new("I", (w, h))
        self._draw = (ImageDraw.Draw(self.photo), ImageDraw.Draw(self.labels), ImageDraw.Draw(self.instances))
        self._shift = {name: rng.integers(-20, 21, size=3) for name in _APPEARANCE}
        self._count: dict[int, int] = {}

    def color(self, name: str) -> tuple[int, int, int]:
        """Appearance of a class in this image (base colour with a per-image shift)."""
        return tuple(int(v) for v in np.clip(np.add(_APPEARANCE[name], self._shift[name]), 0, 255))

    def instance(self, label_id: int) -> int:
        """A new Cityscapes instance id (``label_id * 1000 + k``)."""
        k = self._count.get(label_id, 0)
        self._count[label_id] = k + 1
        return label_id * 1000 + k

    def shape(self, kind: str, xy, label: str, color=None, instance: int | None = None, **kw) -> None:
        """Draw one polygon/rectangle/ellipse/line with the same geometry into photo, labels and instances."""
        label_id = _ID[label]
        fills = (color or self.color(label), label_id, label_id if instance is None else instance)
        for draw, fill in zip(self._draw, fills, strict=True):
            getattr(draw, kind)(xy, fill=fill, **kw)


def _road_geometry(h: int, w: int, rng: np.random.Generator) -> dict[str, float]:
    """Horizon height, vanishing point and the road's bottom edge (pixels)."""
    horizon = h * rng.uniform(0.38, 0.5)
    return {
        "horizon": horizon,
        "vx": w * rng.uniform(0.4, 0.6),
        "left": w * rng.uniform(0.05, 0.25),
        "right": w * rng.uniform(0.75, 0.95),
        "walk": w * rng.uniform(0.12, 0.25),
    }


def _edge_x(g: dict[str, float], x_bottom: float, y: float, h: int) -> float:
    """x of the line from ``(x_bottom, h)`` to the vanishing point at height ``y``."""
    t = (h - y) / (h - g["horizon"])
    return x_bottom + (g["vx"] - x_bottom) * t


def _background(c: _Canvas, h: int, w: int, g: dict[str, float]) -> None:
    """Sky, terrain, buildings and trees along the horizon."""
    rng, hz = c.rng, g["horizon"]
    c.shape("rectangle", [0, 0, w, h], "sky")
    c.shape("rectangle", [0, hz, w, h], "terrain")
    x = -rng.uniform(0, w * 0.1)
    while x < w:
        bw = w * rng.uniform(0.08, 0.2)
        if rng.random() < 0.75:
            top = hz - h * rng.uniform(0.1, 0.35)
            c.shape("rectangle", [x, top, x + bw, hz + 1], "building")
            for wy in np.arange(top + 4, hz - 4, 8):  # windows: darker rows, still building
                c.shape("rectangle", [x + 2, wy, x + bw - 2, wy + 2], "building", color=(60, 60, 70))
        else:
            r = bw / 2
            cy = hz - r * rng.uniform(0.3, 1.0)
            c.shape("ellipse", [x, cy - r, x + bw, cy + r], "vegetation")
        x += bw


def _ground(c: _Canvas, h: int, w: int, g: dict[str, float]) -> None:
    """Sidewalks, the perspective road and dashed lane markings (labelled road)."""
    hz, vx = g["horizon"], g["vx"]
    c.shape("polygon", [(g["left"] - g["walk"], h), (vx, hz), (g["right"] + g["walk"], h)], "sidewalk")
    c.shape("polygon", [(g["left"], h), (vx, hz), (g["right"], h)], "road")
    mid = (g["left"] + g["right"]) / 2
    ys = np.linspace(h, hz, 9)
    for y0, y1 in zip(ys[0:-1:2], ys[1::2], strict=True):
        x0, x1 = _edge_x(g, mid, y0, h), _edge_x(g, mid, y1, h)
        half = max(1.0, 0.01 * w * (y0 - hz) / (h - hz))
        c.shape("polygon", [(x0 - half, y0), (x1 - half / 2, y1), (x1 + half / 2, y1), (x0 + half, y0)], "road",
                color=(235, 235, 235))


def _car(c: _Canvas, h: int, w: int, g: dict[str, float], y: float) -> None:
    """A car standing on the road at height ``y``: body box, window band and two wheels, size by perspective."""
    rng, hz = c.rng, g["horizon"]
    depth = (y - hz) / (h - hz)  # 0 at the horizon, 1 at the bottom
    xl, xr = _edge_x(g, g["left"], y, h), _edge_x(g, g["right"], y, h)
    cw = max(4.0, 0.35 * (xr - xl))
    ch = cw * rng.uniform(0.55, 0.75)
    x = rng.uniform(xl, max(xl + 1, xr - cw))
    inst = c.instance(_ID["car"])
    paint = _CAR_PAINTS[rng.integers(len(_CAR_PAINTS))]
    c.shape("rectangle", [x, y - ch, x + cw, y - 0.15 * ch], "car", color=paint, instance=inst)
    c.shape("rectangle", [x + 0.15 * cw, y - ch * 0.95, x + 0.85 * cw, y - 0.65 * ch], "car",
            color=(40, 50, 60), instance=inst)
    r = max(1.0, 0.12 * cw * (0.5 + depth))
    for wx in (x + 0.2 * cw, x + 0.8 * cw):
        c.shape("ellipse", [wx - r, y - 0.15 * ch - r, wx + r, y - 0.15 * ch + r], "car", color=(15, 15, 15),
                instance=inst)


def _person(c: _Canvas, h: int, w: int, g: dict[str, float], y: float) -> None:
    """A pedestrian standing on a sidewalk at height ``y``: body rectangle and head."""
    rng, hz = c.rng, g["horizon"]
    left_side = rng.random() < 0.5
    outer = _edge_x(g, g["left"] - g["walk"] if left_side else g["right"] + g["walk"], y, h)
    inner = _edge_x(g, g["left"] if left_side else g["right"], y, h)
    x = rng.uniform(min(outer, inner), max(outer, inner))
    ph = max(6.0, 0.45 * (y - hz))
    pw = ph * 0.3
    inst = c.instance(_ID["person"])
    c.shape("rectangle", [x - pw / 2, y - 0.8 * ph, x + pw / 2, y], "person", instance=inst)
    c.shape("ellipse", [x - pw / 2, y - ph, x + pw / 2, y - 0.8 * ph], "person", color=(230, 190, 160), instance=inst)


def _pole(c: _Canvas, h: int, w: int, g: dict[str, float], y: float) -> None:
    """A pole standing beside the road at height ``y`` with a traffic sign on top."""
    rng, hz = c.rng, g["horizon"]
    side = g["left"] - 0.6 * g["walk"] if rng.random() < 0.5 else g["right"] + 0.6 * g["walk"]
    x = _edge_x(g, side, y, h)
    ph = 0.9 * (y - hz) + 4
    pw = max(1.0, ph * 0.04)
    c.shape("rectangle", [x - pw, y - ph, x + pw, y], "pole")
    s = max(2.0, ph * 0.15)
    c.shape("rectangle", [x - s, y - ph - s, x + s, y - ph + s], "traffic sign")


def render_scene(size: tuple[int, int], seed: int | tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one scene: photo ``(H, W, 3)`` uint8, label ids ``(H, W)`` uint8, instance ids ``(H, W)`` uint16."""
    h, w = size
    rng = np.random.default_rng(seed)
    c = _Canvas(h, w, rng)
    g = _road_geometry(h, w, rng)
    _background(c, h, w, g)
    _ground(c, h, w, g)
    kinds = [_pole] * int(rng.integers(0, 3)) + [_car] * int(rng.integers(1, 4)) + [_person] * int(rng.integers(0, 4))
    foot = {_pole: (0.3, 0.8), _car: (0.15, 0.95), _person: (0.2, 0.9)}  # where objects stand (fraction below horizon)
    placed = [(g["horizon"] + (h - g["horizon"]) * rng.uniform(*foot[k]), k) for k in kinds]
    for y, draw in sorted(placed, key=lambda p: p[0]):  # far to near, so nearer objects occlude
        draw(c, h, w, g, y)
    c.shape("ellipse", [-0.2 * w, h - 0.08 * h, 1.2 * w, h + 0.2 * h], "ego vehicle")
    photo = np.asarray(c.photo).astype(np.float32) + rng.normal(0.0, 8.0, size=(h, w, 3))
    return (np.clip(np.rint(photo), 0, 255).astype(np.uint8), np.asarray(c.labels).copy(),
            np.asarray(c.instances).astype(np.uint16))


def make_dataset(root: str | Path, n_train: int, n_val: int, size: tuple[int, int] = (128, 256), seed: int = 0,
                 n_test: int = 0) -> Path:
    """Write ``n_train``/``n_val``/``n_test`` synthetic scenes of ``size`` ``(H, W)`` in Cityscapes layout under
    ``root``; refuses to overwrite existing files. Returns ``root``."""
    root = Path(root)
    h, w = (int(v) for v in size)
    for split_no, (split, count) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        city = SPLIT_CITIES[split]
        for i in range(count):
            photo, label_ids, instance_ids = render_scene((h, w), (seed, split_no, i))
            stem = f"{city}_{i:06d}_000019"
            gt = root / "gtFine" / split / city
            save_png(photo, root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            save_png(label_ids, gt / f"{stem}_gtFine_labelIds.png")
            save_png(instance_ids, gt / f"{stem}_gtFine_instanceIds.png")
            save_png(_LABEL_COLOR[label_ids], gt / f"{stem}_gtFine_color.png")
    return root
