"""Shared fixtures: tiny GeoTIFFs written in code into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from core.task import SegmentationTask
from domains.landcover.dataset import build_datasets
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


class Linear1x1(torch.nn.Module):
    """A fixed per-pixel linear "model": logits = W x (+ b), with no spatial context, so tiling cannot change it."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None = None) -> None:
        super().__init__()
        k, c = weight.shape
        self.conv = torch.nn.Conv2d(c, k, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.as_tensor(weight, dtype=torch.float32).view(k, c, 1, 1))
            self.conv.bias.copy_(torch.as_tensor(bias if bias is not None else np.zeros(k), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def fake_task(meta: dict, net: torch.nn.Module | None = None) -> SimpleNamespace:
    """What predict/evaluate read from a ``SegmentationTask``: ``hparams`` (and ``net``)."""
    hparams = SimpleNamespace(data_meta=meta, num_classes=meta["num_classes"], class_names=meta["class_names"],
                              ignore_index=meta["ignore_index"])
    return SimpleNamespace(hparams=hparams, net=net, border_channel=False)


@pytest.fixture(scope="session")
def trained_meta(synthetic_root: Path) -> dict:
    """The ``meta`` a checkpoint trained on ``synthetic_root`` carries (4 bands, the 6 lecture classes)."""
    meta = build_datasets(str(synthetic_root), patch_size=32, val_stems=["scene_001"])["train"].meta
    return json.loads(json.dumps(meta))  # plain, as restored from a checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory, trained_meta: dict) -> Path:
    """A real land-cover checkpoint (1x1 conv network, no training) that ``scripts/predict.py`` can load."""
    model = {"_target_": "torch.nn.Conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 1}
    torch.manual_seed(0)
    task = SegmentationTask(model=model, num_classes=6, class_names=trained_meta["class_names"],
                            data_meta=trained_meta, domain="landcover")
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, path)
    return path
