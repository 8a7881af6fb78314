"""Many rasters as one: a GDAL VRT written for the user (``gdalbuildvrt`` semantics) from a glob of scenes
(``input=mosaic:scenes/*.tif``) or from a STAC ItemCollection / catalogue (:mod:`.stac`).

The GDAL Python bindings (``osgeo.gdal.BuildVRT``) are not a dependency (rasterio ships GDAL without them), so the
VRT XML is written here: one ``ComplexSource`` per input and band, placed by its transform on the union grid. Inputs
must share a CRS, pixel size, band count and data type, and lie on one pixel grid; anything else is a DataError
naming the file and what it differs in. With ``reproject``, inputs in another CRS are first warped onto the first
input's CRS and pixel grid (a ``WarpedVRT`` saved as a VRT file: bilinear, nodata where they have none of their own
is 0).
"""

from __future__ import annotations

import glob
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import rasterio.shutil
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds

from segsuite.core.errors import DataError
from segsuite.domains.landcover.io import as_location, gdal_path, is_remote, open_raster

MOSAIC_PREFIX = "mosaic:"


@dataclass(frozen=True)
class _Info:
    """What the VRT needs of one input."""

    location: str  # as the user gave it (for messages)
    path: str  # as GDAL opens it (/vsicurl/... for a URL)
    crs: str
    transform: tuple[float, ...]
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None


def _probe(location: str) -> _Info:
    with open_raster(location, check_data=False) as src:
        return _Info(str(location), gdal_path(location) if is_remote(location) else str(Path(location).resolve()),
                     src.crs.to_wkt(), tuple(src.transform)[:6], src.width, src.height, src.count, src.dtypes[0],
                     src.nodata)


def _check_alike(infos: Sequence[_Info], separate: bool) -> None:
    """One CRS, pixel size and (unless ``separate``) band count and data type: else one line naming the file."""
    first = infos[0]
    for info in infos[1:]:
        if info.crs != first.crs:
            raise DataError(f"{info.location}: CRS differs from {first.location}'s; a mosaic needs one CRS (set "
                            "domain.reader.reproject=true to warp it onto the first, or predict the scenes one by one)")
        if not all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(info.transform[:5:4], first.transform[:5:4])):
            raise DataError(f"{info.location}: pixel size {info.transform[0]} x {info.transform[4]} differs from "
                            f"{first.location}'s {first.transform[0]} x {first.transform[4]}")
        if info.transform[1] or info.transform[3]:
            raise DataError(f"{info.location}: a rotated grid cannot be mosaicked; north-up rasters are accepted")
        if not separate and (info.count, info.dtype) != (first.count, first.dtype):
            raise DataError(f"{info.location}: {info.count} band(s) of {info.dtype} but {first.location} has "
                            f"{first.count} of {first.dtype}; a mosaic needs the same bands")


def _offset(info: _Info, grid: tuple[float, ...]) -> tuple[int, int]:
    """``(col, row)`` of ``info``'s first pixel on the mosaic's grid; a DataError when it is off the pixel grid."""
    col, row = (info.transform[2] - grid[2]) / grid[0], (info.transform[5] - grid[5]) / grid[4]
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        raise DataError(f"{info.location}: not aligned with the pixel grid of the other inputs (offset {col:.3f}, "
                        f"{row:.3f} px); a mosaic needs one grid")
    return round(col), round(row)


def vrt_xml(infos: Sequence[_Info], separate: bool = False) -> str:
    """The VRT of ``infos`` on the union of their extents: each input's bands in order (``separate``: each input
    one band of the result, in order, as ``gdalbuildvrt -separate``). Later inputs draw over earlier ones."""
    _check_alike(infos, separate)
    px, py = infos[0].transform[0], infos[0].transform[4]
    x0 = min(i.transform[2] for i in infos)
    y0 = max(i.transform[5] for i in infos) if py < 0 else min(i.transform[5] for i in infos)
    grid = (px, 0.0, x0, 0.0, py, y0)
    spans = [(_offset(i, grid), i) for i in infos]
    width = max(c + i.width for (c, _), i in spans)
    height = max(r + i.height for (_, r), i in spans)
    if separate:
        bands = [[(i, 1, off)] for off, i in spans]
    else:
        bands = [[(i, b, off) for off, i in spans] for b in range(1, infos[0].count + 1)]
    lines = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"  <SRS>{escape(infos[0].crs)}</SRS>",
             f"  <GeoTransform>{x0!r}, {px!r}, 0.0, {y0!r}, 0.0, {py!r}</GeoTransform>"]
    for n, sources in enumerate(bands, 1):
        first = sources[0][0]
        lines.append(f'  <VRTRasterBand dataType="{_gdal_type(first.dtype)}" band="{n}">')
        if first.nodata is not None:
            lines.append(f"    <NoDataValue>{first.nodata!r}</NoDataValue>")
        for info, band, (col, row) in sources:
            lines += ["    <ComplexSource>",
                      f'      <SourceFilename relativeToVRT="0">{escape(info.path)}</SourceFilename>',
                      f"      <SourceBand>{band}</SourceBand>",
                      f'      <SrcRect xOff="0" yOff="0" xSize="{info.width}" ySize="{info.height}"/>',
                      f'      <DstRect xOff="{col}" yOff="{row}" xSize="{info.width}" ySize="{info.height}"/>']
            if info.nodata is not None:
                lines.append(f"      <NODATA>{info.nodata!r}</NODATA>")
            lines.append("    </ComplexSource>")
        lines.append("  </VRTRasterBand>")
    lines.append("</VRTDataset>")
    return "\n".join(lines) + "\n"


def _gdal_type(dtype: str) -> str:
    return {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
            "int32": "Int32", "float32": "Float32", "float64": "Float64"}[dtype]


def write_vrt(locations: Sequence[str], path: Path, separate: bool = False, reproject: bool = False) -> Path:
    """Probe ``locations`` (local files or URLs: a DataError names one that does not open) and write their VRT;
    ``reproject``: those in another CRS than the first are warped onto its grid first (VRTs beside ``path``)."""
    if not locations:
        raise DataError(f"no rasters to mosaic into {path.name}")
    infos = [_probe(str(as_location(x))) for x in locations]
    if reproject:
        infos = [i if i.crs == infos[0].crs else _probe(str(_warp(i, infos[0], path.with_name(f"{path.stem}_{n}.vrt"))))
                 for n, i in enumerate(infos)]
    path.write_text(vrt_xml(infos, separate))
    return path


def _warp(info: _Info, onto: _Info, path: Path) -> Path:
    """``info``'s raster warped onto ``onto``'s CRS and pixel grid, saved as a VRT at ``path``."""
    px, py, x0, y0 = onto.transform[0], onto.transform[4], onto.transform[2], onto.transform[5]
    with open_raster(info.location, check_data=False) as src:
        left, bottom, right, top = transform_bounds(src.crs, onto.crs, *src.bounds)
        col0, col1 = math.floor((left - x0) / px), math.ceil((right - x0) / px)
        row0, row1 = math.floor((top - y0) / py), math.ceil((bottom - y0) / py)
        grid = Affine(px, 0.0, x0 + col0 * px, 0.0, py, y0 + row0 * py)
        with WarpedVRT(src, crs=onto.crs, transform=grid, width=col1 - col0, height=row1 - row0,
                       resampling=Resampling.bilinear, nodata=src.nodata if src.nodata is not None else 0) as vrt:
            rasterio.shutil.copy(vrt, path, driver="VRT")
    return path


def mosaic_files(pattern: str) -> list[str]:
    """The files of ``mosaic:PATTERN`` (a glob), sorted; a DataError when there are none."""
    files = sorted(glob.glob(pattern, recursive=True))
    if not files:
        raise DataError(f"input {MOSAIC_PREFIX}{pattern}: the pattern matches no file (e.g. mosaic:scenes/*.tif)")
    return files

