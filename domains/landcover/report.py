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
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from segsuite.core.errors import DataError
from segsuite.core.io import write_csv, write_json
from segsuite.domains.landcover.classes import DEFAULT_CLASSES, ClassMap
from segsuite.domains.landcover.io import check_bands, open_raster, remote_env
from segsuite.domains.landcover.rasterstats import count_values

M2_PER_HECTARE = 10_000.0
M2_PER_KM2 = 1_000_000.0
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


def _decimated(src: rasterio.DatasetReader, bands: list[int], max_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour read of ``bands`` at most ``max_size`` px on the long side: ``(C, h, w)``, valid ``(h, w)``."""
    scale = max(1.0, max(src.height, src.width) / max_size)
    shape = (len(bands), max(1, math.ceil(src.height / scale)), max(1, math.ceil(src.width / scale)))
    try:
        with remote_env(src.name):  # a URL's overviews are read with the same COG options as its tiles
            data = src.read(bands, out_shape=shape, resampling=Resampling.nearest).astype(np.float32)
            valid = (src.read_masks(bands, out_shape=shape, resampling=Resampling.nearest) > 0).all(axis=0)
    except RasterioError as exc:
        raise DataError(f"{src.name}: decimated read for the preview failed: {exc}") from exc
    return data, valid & np.isfinite(data).all(axis=0)


def _stretch(data: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """2-98 percentile stretch per band of ``(3, h, w)`` to an RGB float image ``(h, w, 3)`` in [0, 1]."""
    rgb = np.zeros(data.shape[1:] + (3,), np.float32)
    for i, band in enumerate(data):
        if valid.any():
            lo, hi = np.percentile(band[valid], [2, 98])
            rgb[..., i] = np.clip((band - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb[~valid] = 0.0
    return rgb


def preview_png(image_path: str | Path, pred_path: str | Path, png_path: str | Path, class_map: ClassMap | None = None,
                bands: Sequence[int] | None = None, max_size: int = 1024) -> Path:
    """PNG with the image (RGB from ``bands``, 1-based, default 1, 2, 3 or band 1 as grey; 2-98 % stretch) and the
    prediction in class colours side by side, with a legend. Rasters are read decimated to ``max_size`` px (from
    overviews when present, e.g. ``cog=True`` outputs) so huge scenes stay cheap."""
    class_map = class_map or DEFAULT_CLASSES
    with open_raster(image_path, require_crs=False, check_data=False) as src:
        rgb_bands = check_bands(src, bands) if bands is not None else [1, 2, 3] if src.count >= 3 else [1, 1, 1]
        if len(rgb_bands) != 3:
            raise DataError(f"{image_path}: preview needs 3 bands for RGB; got bands={rgb_bands}")
        rgb = _stretch(*_decimated(src, rgb_bands, max_size))
    with open_raster(pred_path, require_crs=False, check_data=False) as src:
        pred, pred_valid = _decimated(src, [1], max_size)
    lut = np.zeros((256, 3), np.float32)
    for c in class_map.classes:
        lut[c.id] = np.array(c.color) / 255.0
    ids = np.clip(pred[0], 0, 255).astype(np.uint8)
    colour = np.where(pred_valid[..., None], lut[ids], 1.0)  # (h, w, 3), nodata white
    fig = Figure(figsize=(12, 6), dpi=100)
    FigureCanvasAgg(fig)
    for ax, img, title in zip(fig.subplots(1, 2), (rgb, colour), ("image", "prediction"), strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    handles = [Patch(color=np.array(c.color) / 255.0, label=f"{c.id}: {c.name}") for c in class_map.classes]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), frameon=False)
    fig.savefig(png_path, format="png", bbox_inches="tight")
    return Path(png_path)
