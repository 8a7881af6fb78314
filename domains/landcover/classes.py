"""Land-cover class map: ids, names and display colours, with an optional JSON/CSV override file.

File formats (ids must be exactly 0..N-1, each once, colours 0..255):

- ``classes.json``: ``[{"id": 0, "name": "dense forest", "color": [0, 100, 0]}, ...]``
  (or the same list under a ``"classes"`` key).
- ``classes.csv``: header ``id,name,r,g,b`` then one row per class.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segsuite.core.errors import DataError
from segsuite.core.io import write_json

CLASS_MAP_FILES = ("classes.json", "classes.csv")
CSV_HEADER = ["id", "name", "r", "g", "b"]


@dataclass(frozen=True)
class LandCoverClass:
    """One class: integer id (the value in label rasters), a name and an RGB display colour."""

    id: int
    name: str
    color: tuple[int, int, int]


@dataclass(frozen=True)
class ClassMap:
    """Ordered classes with ids 0..N-1; ``source`` names the file it came from (or ``"default"``)."""

    classes: tuple[LandCoverClass, ...]
    source: str = "default"

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def ids(self) -> list[int]:
        return [c.id for c in self.classes]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def colors(self) -> list[list[int]]:
        return [list(c.color) for c in self.classes]

    def name_of(self, class_id: int) -> str:
        """Class name for ``class_id``; ``"unknown_<id>"`` for ids outside the map."""
        return self.classes[class_id].name if 0 <= class_id < len(self) else f"unknown_{class_id}"

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """Colour table in rasterio's ``write_colormap`` form: ``{id: (r, g, b, 255)}``."""
        return {c.id: (*c.color, 255) for c in self.classes}

    def to_meta(self) -> dict[str, Any]:
        """Plain-Python description stored in checkpoints."""
        return {"class_names": self.names, "class_colors": self.colors}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> ClassMap:
        """The class map a checkpoint was trained with (inverse of ``to_meta``)."""
        names, colors = meta["class_names"], meta["class_colors"]
        classes = (LandCoverClass(i, str(n), tuple(int(v) for v in c)) for i, (n, c) in enumerate(zip(names, colors)))
        return cls(tuple(classes), source="checkpoint")  # type: ignore[arg-type]


DEFAULT_CLASSES = ClassMap(tuple(LandCoverClass(i, name, color) for i, (name, color) in enumerate([
    ("dense forest", (0, 100, 0)), ("sparse forest", (110, 190, 70)), ("moor", (150, 90, 160)),
    ("herbaceous formation", (230, 220, 100)), ("building", (200, 30, 30)), ("road", (90, 90, 90))])))


def _entry(raw: Any, path: Path, where: str) -> LandCoverClass:
    """Validate one class entry ``{"id", "name", "color"}``; errors name the file and the entry."""
    if not isinstance(raw, dict) or not {"id", "name", "color"} <= set(raw):
        raise DataError(f"{path}: {where} must have keys id, name, color; got {raw!r}")
    try:
        cid = int(raw["id"])
        color = tuple(int(v) for v in raw["color"])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: {where} has a non-integer id or colour: {raw!r}") from exc
    if len(color) != 3 or not all(0 <= v <= 255 for v in color):
        raise DataError(f"{path}: {where} colour must be 3 integers in 0..255; got {raw['color']!r}")
    name = str(raw["name"]).strip()
    if not name:
        raise DataError(f"{path}: {where} has an empty name")
    return LandCoverClass(cid, name, color)  # type: ignore[arg-type]


def _checked(entries: Iterable[LandCoverClass], path: Path) -> ClassMap:
    """Sort by id and require ids exactly 0..N-1 and unique names."""
    classes = tuple(sorted(entries, key=lambda c: c.id))
    ids = [c.id for c in classes]
    if not ids:
        raise DataError(f"{path}: no classes defined")
    if ids != list(range(len(ids))):
        raise DataError(f"{path}: class ids must be exactly 0..{len(ids) - 1}, each once; got {ids}")
    names = [c.name for c in classes]
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names must be unique; got {names}")
    return ClassMap(classes, source=str(path))


def _load_json(path: Path) -> ClassMap:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read class map JSON: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("classes")
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of classes (or {{'classes': [...]}}) with id, name, color")
    return _checked((_entry(raw, path, f"entry {i}") for i, raw in enumerate(data)), path)


def _load_csv(path: Path) -> ClassMap:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip().lower() for h in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read class map CSV: {exc}") from exc
    if header[:5] != CSV_HEADER:
        raise DataError(f"{path}: CSV header must be {','.join(CSV_HEADER)}; got {','.join(header) or 'nothing'}")
    entries = (
        _entry({"id": r["id"], "name": r["name"], "color": [r["r"], r["g"], r["b"]]}, path, f"row {i + 2}")
        for i, r in enumerate({k.strip().lower(): v for k, v in row.items()} for row in rows)
    )
    return _checked(entries, path)


def load_class_map(path: str | Path) -> ClassMap:
    """Read a class map from ``.json`` or ``.csv``; DataError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"class map file not found: {path}")
    if path.suffix.lower() == ".json":
        return _load_json(path)
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    raise DataError(f"{path}: class map must be a .json or .csv file")


def find_class_map(root: str | Path) -> ClassMap:
    """The class map file in ``root`` (``classes.json`` or ``classes.csv``), else the lecture defaults."""
    found = [Path(root) / name for name in CLASS_MAP_FILES if (Path(root) / name).is_file()]
    if len(found) > 1:
        raise DataError(f"{root}: both {found[0].name} and {found[1].name} exist; keep only one class map file")
    return load_class_map(found[0]) if found else DEFAULT_CLASSES


def write_class_map_json(class_map: ClassMap, path: str | Path, overwrite: bool = False) -> None:
    """Write ``class_map`` in the ``classes.json`` format (temp file + rename)."""
    entries = [{"id": c.id, "name": c.name, "color": list(c.color)} for c in class_map.classes]
    write_json(path, entries, overwrite)
