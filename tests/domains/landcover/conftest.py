"""Shared fixtures: tiny GeoTIFFs written in code into tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from domains.landcover.synthetic import make_dataset

UTM31 = "EPSG:32631"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0)  # 10 m pixels, north-up


def write_tif(
    path: Path,
    data: np.ndarray,
    nodata: float | None = None,
    crs: str | None = UTM31,
    transform=TRANSFORM,
    block: int | None = 16,
    **extra,
) -> Path:
    """Write ``data`` ``(C, H, W)`` or ``(H, W)`` as a GeoTIFF (tiled with ``block`` px tiles unless None)."""
    data = data[None] if data.ndim == 2 else data
    profile = dict(
        driver="GTiff",
        height=data.shape[1],
        width=data.shape[2],
        count=data.shape[0],
        dtype=data.dtype.name,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    if block:
        profile.update(tiled=True, blockxsize=block, blockysize=block)
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def tif(tmp_path: Path):
    """Factory: ``tif(name, data, **kw)`` writes ``tmp_path/name`` via ``write_tif``."""
    return lambda name, data, **kw: write_tif(tmp_path / name, np.asarray(data), **kw)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic 96x96 scenes in the ROOT/images + ROOT/labels layout (shared, read-only)."""
    root = tmp_path_factory.mktemp("landcover") / "data"
    make_dataset(root, n_scenes=2, size=96, seed=3)
    return root
