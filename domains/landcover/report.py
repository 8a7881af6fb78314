"""Per-class area report (pixels, hectares, km^2) and a PNG preview for a predicted class raster.

Both read cheaply: the area count goes block by block, the preview through decimated reads (which GDAL serves
from overviews when the file has them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from segsuite.core.errors import DataError
from segsuite.core.io import write_csv, write_json
from segsuite.core.overlay import colorize, legend_strip
from segsuite.core.png import save_png
from segsuite.core.preview import stretch
from segsuite.domains.landcover.classes import DEFAULT_CLASSES, ClassMap
from segsuite.domains.landcover.io import check_bands, open_raster, remote_env
from segsuite.domains.landcover.rasterstats import count_values

M2_PER_HECTARE = 10_000.0
M2_PER_KM2 = 1_000_000.0
NODATA = 255  # class rasters' nodata
CSV_COLUMNS = ["id", "name", "pixels", "percent", "hectares", "km2"]


def pixel_area_m2(crs: rasterio.crs.CRS | None, t: rasterio.Affine) -> tuple[float | None, str | None]:
    """Area of one pixel in m^2 from a projected CRS, else (None, note explaining why)."""
    if crs is None:
        return None, "raster has no CRS: areas are given in pixels only"
    if not crs.is_projected:
        return None, f"CRS {crs.to_string()} is geographic (degrees): areas are given in pixels only"
    _, metres_per_unit = crs.linear_units_factor
    return abs(t.a * t.e - t.b * t.d) * metres_per_unit**2, None


def area_report(pred_path: str | Path, class_map: ClassMap | None = None, name: str | Path | None = None
                ) -> dict[str, Any]:
    """Per-class area of a class-id raster (nodata pixels excluded); ``name``: the raster's name in the report.

    Returns plain data: ``raster``, ``crs``, ``pixel_area_m2`` (None unless the CRS is projected), ``note``
    (why areas are missing, else None), ``valid_pixels``, ``nodata_pixels`` and ``classes``: one entry per class
    of the map plus any other value found, with ``id``, ``name``, ``pixels``, ``percent``, ``hectares``, ``km2``.
    """
    class_map = class_map or DEFAULT_CLASSES
    with open_raster(pred_path, require_crs=False, check_data=False) as src:
        counts, nodata = count_values(src)
        pixel_m2, note = pixel_area_m2(src.crs, src.transform)
        crs = src.crs.to_string() if src.crs else None
    total = sum(counts.values())
    return {"raster": str(name or pred_path), "crs": crs, "pixel_area_m2": pixel_m2, "note": note,
            "valid_pixels": total, "nodata_pixels": nodata,
            "classes": [_area_row(cid, class_map.name_of(cid), counts.get(cid, 0), total, pixel_m2)
                        for cid in sorted(set(class_map.ids) | set(counts))]}


def _area_row(cid: int | str, name: str, n: int, total: int, pixel_m2: float | None) -> dict[str, Any]:
    area = None if pixel_m2 is None else n * pixel_m2
    hectares, km2 = (None, None) if area is None else (area / M2_PER_HECTARE, area / M2_PER_KM2)
    return {"id": cid, "name": name, "pixels": n, "percent": 100.0 * n / total if total else 0.0,
            "hectares": hectares, "km2": km2}


def write_area_report(report: dict[str, Any], csv_path: str | Path | None = None, json_path: str | Path | None = None,
                      overwrite: bool = False) -> None:
    """Write ``report`` as CSV (one row per class, then a total row) and/or JSON."""
    if csv_path is not None:
        n = report["valid_pixels"]
        total = _area_row("", "total", n, n, report["pixel_area_m2"])
        write_csv(csv_path, [*report["classes"], total], overwrite, columns=CSV_COLUMNS)
    if json_path is not None:
        write_json(json_path, report, overwrite)


def decimated(src: rasterio.DatasetReader, bands: list[int], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour read of ``bands`` at ``shape`` ``(h, w)`` (from overviews when the file has them): data
    ``(C, h, w)`` float32 with NaN where it is not valid, and valid ``(h, w)``."""
    try:
        with remote_env(src.name):  # a URL's overviews are read with the same COG options as its tiles
            data = src.read(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest).astype(np.float32)
            valid = (src.read_masks(bands, out_shape=(len(bands), *shape), resampling=Resampling.nearest) > 0).all(0)
    except RasterioError as exc:
        raise DataError(f"{src.name}: decimated read for the preview failed: {exc}") from exc
    valid &= np.isfinite(data).all(axis=0)
    return np.where(valid, data, np.nan), valid


def preview_png(image_path: str | Path, pred_path: str | Path, png_path: str | Path, class_map: ClassMap | None = None,
                bands: Sequence[int] | None = None, max_size: int = 1024) -> Path:
    """PNG with the image (RGB from ``bands``, 1-based, default 1, 2, 3 or band 1 as grey; 2-98 % stretch, nodata
    black) and the prediction in class colours (nodata white) side by side, the core's legend of the classes shown
    below (:mod:`segsuite.core.overlay`). Rasters are read decimated to ``max_size`` px on the long side (from
    overviews when present, e.g. ``cog=True`` outputs) so huge scenes stay cheap."""
    class_map = class_map or DEFAULT_CLASSES
    with open_raster(image_path, require_crs=False, check_data=False) as src:
        rgb_bands = check_bands(src, bands) if bands is not None else [1, 2, 3] if src.count >= 3 else [1]
        if bands is not None and len(rgb_bands) != 3:
            raise DataError(f"{image_path}: preview needs 3 bands for RGB; got bands={rgb_bands}")
        scale = max(1.0, max(src.height, src.width) / max_size)
        shape = max(1, math.ceil(src.height / scale)), max(1, math.ceil(src.width / scale))
        data, valid = decimated(src, rgb_bands, shape)
    with open_raster(pred_path, require_crs=False, check_data=False) as src:
        pred, pred_valid = decimated(src, [1], shape)
    classes = np.where(pred_valid, pred[0], NODATA).astype(np.int64)  # (h, w)
    panels = [np.where(valid[..., None], stretch(data), 0).astype(np.uint8), np.full((*shape[:1], 8, 3), 255, np.uint8),
              colorize(classes, [list(c) for c in class_map.colors], NODATA, (255, 255, 255))]
    top = np.concatenate(panels, axis=1)  # (h, 2 w + 8, 3)
    legend = legend_strip(classes, [list(c) for c in class_map.colors], list(class_map.names), top.shape[1], NODATA)
    canvas = np.full((top.shape[0] + legend.shape[0], legend.shape[1], 3), 255, np.uint8)
    canvas[: top.shape[0], : top.shape[1]], canvas[top.shape[0] :] = top, legend
    return save_png(canvas, png_path, overwrite=True)
