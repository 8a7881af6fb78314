"""Instances of the thing classes (e.g. buildings) from tiled land-cover inference, in bounded memory.

As row strips stream out of ``sliding_window``, ``segsuite.core.instances.StripLabeller`` labels them with provisional
ids (written to a temporary raster) and each strip is polygonised in pixel coordinates. When the raster is done the
provisional ids are resolved (objects crossing strip or tile borders joined, small ones dropped), a second pass
remaps the temporary raster into the instance raster, and the pieces of each object are unioned into one polygon,
exactly (pixel edges are integers), before moving to the raster's CRS.

Outputs beside ``OUT.tif``: ``OUT_instances.tif`` (uint32 ids, 0 = none), ``OUT_instances.gpkg`` (or ``.geojson``;
one polygon per object in the raster's CRS), ``OUT_instances.csv`` (id, class, pixels, area in m^2 and ha, centroid
and box in CRS units) and, for panoptic output, ``OUT_panoptic.tif`` (2 bands uint32: class id, instance id).
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import fiona
import numpy as np
import rasterio.features
import shapely
from affine import Affine
from fiona.crs import CRS as FionaCRS
from shapely.geometry import mapping, shape

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances import StreamInstances, StripLabeller
from segsuite.core.io import write_csv
from segsuite.core.regions import cells, full_rect
from segsuite.domains.landcover.io import as_window, open_raster
from segsuite.domains.landcover.rasterout import RasterWriter
from segsuite.domains.landcover.report import M2_PER_HECTARE, pixel_area_m2

log = logging.getLogger(__name__)

VECTOR_DRIVERS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON"}
CSV_COLUMNS = ["id", "class", "pixels", "area_m2", "area_ha", "centroid_x", "centroid_y", "minx", "miny", "maxx",
               "maxy"]


def vector_driver(path: Path) -> str:
    """The OGR driver for a polygon output, from its suffix."""
    try:
        return VECTOR_DRIVERS[path.suffix.lower()]
    except KeyError:
        raise ConfigError(f"polygon output {path} must end in {', '.join(VECTOR_DRIVERS)}") from None


def _band_windows(height: int, width: int, band: int = 4096) -> list:
    """512-row windows of column bands ``band`` px wide, band by band (the order a ``RasterWriter`` takes)."""
    return [as_window(c) for c in sorted(cells(full_rect(height, width), (512, band)), key=lambda c: (c.col0, c.row0))]


class InstanceStream:
    """Consumes the class strips of one raster; ``finish`` writes the instance raster, polygons and table (and the
    panoptic raster) to ``paths["instances"|"polygons"|"table"|"panoptic"]``. ``like``: the class raster's profile
    (CRS, transform, size); ``class_names`` name the table's and the polygons' ``class``."""

    def __init__(self, labeller: StripLabeller, like: dict[str, Any], paths: Mapping[str, Path],
                 class_names: list[str]) -> None:
        self.labeller, self.like, self.class_names = labeller, dict(like), list(class_names)
        self.paths = paths
        instances = paths["instances"]
        self._provisional = RasterWriter(instances.with_name(f".{instances.stem}.provisional.tif"), like,
                                        dtype="uint32", nodata=None)
        self._pieces: dict[int, list[Any]] = defaultdict(list)

    def push(self, row0: int, semantic: np.ndarray, border_prob: np.ndarray | None = None, col0: int = 0) -> None:
        """Label the block ``semantic`` ``(n, w)`` (non-class values, e.g. nodata, are background) at ``(row0,
        col0)`` (full-width rows, or a column band's: see ``StripLabeller``), store its provisional ids and
        polygonise it in pixel coordinates."""
        ids = self.labeller.push(semantic, border_prob, col0)
        self._provisional.write_block(row0, col0, ids)
        if ids.any():
            shifted = Affine.translation(col0, row0)  # integer pixel edges: pieces meet exactly
            for geom, value in rasterio.features.shapes(ids.astype(np.int32), mask=ids > 0, transform=shifted):
                self._pieces[int(value)].append(shape(geom))

    def finish(self, classes_raster: Path) -> None:
        """Resolve ids and write every output."""
        provisional = self._provisional.close()
        try:
            result = self.labeller.finish()
            self._remap(provisional, result, classes_raster)
            rows, features = self._describe(result)
            write_csv(self.paths["table"], rows, columns=CSV_COLUMNS)
            self._write_polygons(features)
        finally:
            provisional.unlink(missing_ok=True)
        things = ", ".join(self.class_names[i] for i in self.labeller.instancer.thing_ids)
        log.info("%d instances of %s -> %s", result.n, things, self.paths["polygons"])

    def abort(self) -> None:
        self._provisional.abort()

    def _remap(self, provisional: Path, result: StreamInstances, classes_raster: Path) -> None:
        """Second pass, block row by block row: provisional ids -> final ids (and the panoptic class/instance pair)."""
        with contextlib.ExitStack() as files:  # a writer removes its file on an error, closes it otherwise
            ids = files.enter_context(RasterWriter(self.paths["instances"], self.like, dtype="uint32", nodata=0))
            pairs = None if "panoptic" not in self.paths else files.enter_context(RasterWriter(
                self.paths["panoptic"], self.like, count=2, dtype="uint32", nodata=None,
                descriptions=["class", "instance"]))
            src = files.enter_context(open_raster(provisional, require_crs=False, check_data=False))
            classes = files.enter_context(open_raster(classes_raster, require_crs=False, check_data=False))
            for window in _band_windows(src.height, src.width):
                final = result.lut[src.read(1, window=window)]
                at = int(window.row_off), int(window.col_off)
                ids.write_block(*at, final)
                if pairs is not None:
                    pairs.write_block(*at, np.stack([classes.read(1, window=window).astype(np.uint32), final]))

    def _describe(self, result: StreamInstances) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """CSV rows and polygon features, one per final instance (pieces unioned exactly in pixel space)."""
        merged: dict[int, list[Any]] = defaultdict(list)
        for prov, pieces in self._pieces.items():
            final = int(result.lut[prov])
            if final:
                merged[final] += pieces
        transform = Affine(*tuple(self.like["transform"])[:6])
        pixel_m2, _ = pixel_area_m2(self.like.get("crs"), transform)
        rows, features = [], []
        for i in range(1, result.n + 1):
            geom = shapely.affinity.affine_transform(shapely.union_all(merged[i]), transform.to_shapely())
            r, c = result.centroid[i]
            x, y = transform @ (c + 0.5, r + 0.5)
            minx, miny, maxx, maxy = geom.bounds
            area = None if pixel_m2 is None else float(result.pixels[i] * pixel_m2)
            row = {"id": i, "class": self.class_names[result.classes[i]], "pixels": int(result.pixels[i]),
                   "area_m2": area, "area_ha": None if area is None else area / M2_PER_HECTARE,
                   "centroid_x": float(x), "centroid_y": float(y), "minx": minx, "miny": miny, "maxx": maxx,
                   "maxy": maxy}
            rows.append(row)
            features.append({"geometry": mapping(geom), "properties": row})
        return rows, features

    def _write_polygons(self, features: Iterable[dict[str, Any]]) -> None:
        path = self.paths["polygons"]
        types = {"id": "int", "class": "str", "pixels": "int"}
        schema = {"geometry": "Unknown", "properties": {k: types.get(k, "float") for k in CSV_COLUMNS}}
        crs = self.like.get("crs")
        driver = vector_driver(path)
        try:
            crs = FionaCRS.from_wkt(crs.to_wkt()) if crs else None
            layer = {"layer": path.stem} if driver == "GPKG" else {}
            with fiona.open(path, "w", driver=driver, schema=schema, crs=crs, **layer) as dst:
                for feature in features:
                    dst.write(feature)
        except fiona.errors.FionaError as exc:
            raise DataError(f"cannot write polygons to {path}: {exc}") from exc
