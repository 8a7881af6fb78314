"""One class map for every domain: the value each class has in the mask files (``ids``), its name and its display
colour, in training order, read from JSON or CSV.

- JSON: ``[{"id": 0, "name": "road", "color": [128, 64, 128]}, ...]`` (or the same list under a ``"classes"`` key);
- CSV: rows ``id,name,r,g,b``, a header row allowed.

Errors name the file and the entry, and say what is accepted.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.errors import DataError
from segsuite.core.io import write_json

CLASS_MAP_FILES = ("classes.json", "classes.csv")
ENTRY = "{'id', 'name', 'color': [r, g, b]}"


@dataclass(frozen=True)
class ClassMap:
    """Classes in training order: ``ids[i]`` is class ``i``'s value in the mask files, ``colors[i]`` its RGB colour;
    ``source`` names the file it came from (or ``"default"``)."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    source: str = "default"

    @classmethod
    def of(cls, entries: list[tuple[str, tuple[int, int, int]]], source: str = "default") -> ClassMap:
        """Classes ``0..N-1`` from ``(name, colour)`` pairs."""
        return cls(tuple(range(len(entries))), tuple(n for n, _ in entries), tuple(tuple(c) for _, c in entries),
                   source)

    def __len__(self) -> int:
        return len(self.ids)

    def name_of(self, index: int) -> str:
        """Class ``index``'s name; ``"unknown_<index>"`` outside the map."""
        return self.names[index] if 0 <= index < len(self) else f"unknown_{index}"

    def index_lut(self, ignore_index: int = 255) -> np.ndarray:
        """Look-up table ``(65536,)`` int64: mask value -> training index, ``ignore_index`` kept, others -1."""
        lut = np.full(65536, -1, dtype=np.int64)
        if 0 <= ignore_index < len(lut):
            lut[ignore_index] = ignore_index
        lut[list(self.ids)] = np.arange(len(self.ids))
        return lut

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """Colour table of class indices in rasterio's ``write_colormap`` form: ``{index: (r, g, b, 255)}``."""
        return {i: (*c, 255) for i, c in enumerate(self.colors)}

    def to_meta(self) -> dict[str, Any]:
        """What checkpoints store."""
        return {"class_names": list(self.names), "class_colors": [list(c) for c in self.colors]}

    @classmethod
    def from_meta(cls, meta: Any) -> ClassMap:
        """The class map a checkpoint was trained with (inverse of :meth:`to_meta`)."""
        return cls.of([(str(n), tuple(int(v) for v in c)) for n, c in zip(meta["class_names"], meta["class_colors"])],
                      "checkpoint")

    def write_json(self, path: str | Path, overwrite: bool = False) -> None:
        """Write this map as ``classes.json``."""
        write_json(path, [{"id": i, "name": n, "color": list(c)} for i, n, c in zip(self.ids, self.names,
                                                                                  self.colors)], overwrite)


def load_class_map(path: str | Path, contiguous: bool = False) -> ClassMap:
    """Read a class map from ``.json`` or ``.csv``; with ``contiguous`` the ids must be exactly ``0..N-1`` (sorted
    by id then). A DataError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"class map {path} does not exist (expected a .json or .csv file)")
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows = _json_rows(path)
    elif suffix == ".csv":
        rows = _csv_rows(path)
    else:
        raise DataError(f"class map {path}: unsupported extension '{suffix}' (accepted: .json, .csv)")
    return _checked(rows, path, contiguous)


def find_class_map(root: str | Path, default: ClassMap | None = None, contiguous: bool = False) -> ClassMap | None:
    """The class map file in ``root`` (``classes.json`` or ``classes.csv``), else ``default``."""
    found = [Path(root) / name for name in CLASS_MAP_FILES if (Path(root) / name).is_file()]
    if len(found) > 1:
        raise DataError(f"{root}: both {found[0].name} and {found[1].name} exist; keep only one class map file")
    return load_class_map(found[0], contiguous) if found else default


def _json_rows(path: Path) -> list[list]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["classes"] if isinstance(data, dict) else data
        return [[e["id"], e["name"], *e["color"]] for e in entries]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise DataError(f"class map {path}: expected a JSON list of {ENTRY} ({err})") from None


def _csv_rows(path: Path) -> list[list]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(v.strip() for v in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"class map {path}: cannot read it as CSV ({err})") from None
    if rows and not rows[0][0].strip().lstrip("-").isdigit():
        rows = rows[1:]  # header
    return rows


def _checked(rows: list[list], path: Path, contiguous: bool) -> ClassMap:
    """``[id, name, r, g, b]`` rows into a ClassMap; a DataError naming the file and every problem."""
    short = [r for r in rows if len(r) != 5]
    if short:
        raise DataError(f"class map {path}: each class needs id, name, r, g, b; got {short[0]}")
    try:
        ids = [int(r[0]) for r in rows]
        colors = [tuple(int(v) for v in r[2:5]) for r in rows]
    except (ValueError, TypeError) as err:
        raise DataError(f"class map {path}: ids and colours must be integers ({err})") from None
    names = [str(r[1]).strip() for r in rows]
    if contiguous:
        order = sorted(range(len(ids)), key=ids.__getitem__)
        ids, names, colors = [ids[i] for i in order], [names[i] for i in order], [colors[i] for i in order]
    problems = []
    if not rows:
        problems.append("no classes")
    if contiguous and ids != list(range(len(ids))):
        problems.append(f"ids {ids} must be exactly 0..{len(ids) - 1}, each once")
    if len(set(ids)) != len(ids) or any(not 0 <= i < 65536 for i in ids):
        problems.append(f"ids {ids} must be distinct integers in 0..65535")
    if len(set(names)) != len(names) or not all(names):
        problems.append(f"names {names} must be distinct and non-empty")
    if any(not 0 <= v <= 255 for c in colors for v in c):
        problems.append(f"colours {[list(c) for c in colors]} must be values in 0..255")
    if problems:
        raise DataError(f"class map {path}: " + "; ".join(problems))
    return ClassMap(tuple(ids), tuple(names), tuple(colors), str(path))  # type: ignore[arg-type]
