"""Shared fixtures: tiny GeoTIFFs written in code into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import hydra.utils
import numpy as np
import pytest
import rasterio
import torch
from affine import Affine

from segsuite.core.contracts import DataMeta, Job, Mode, ModelInfo
from segsuite.core.inference import InferenceOptions, TilePredictor
from segsuite.core.instances import Instancer
from segsuite.core.pipeline import run_evaluate, run_predict
from segsuite.core.task import SegmentationTask
from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.reader import GeoTiffReader
from segsuite.domains.landcover.scorers import LandCoverEvaluation
from segsuite.domains.landcover.synthetic import make_dataset
from segsuite.domains.landcover.writer import GeoTiffWriter
from tests.helpers import compose_config

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


def make_job(meta: dict, net: torch.nn.Module, mode: str = "semantic", instancer: Instancer | None = None,
             border: bool = False, **options) -> Job:
    """A predict/evaluate job for ``net`` with a checkpoint's ``meta`` (``options``: tile, overlap, ...)."""
    data = DataMeta.from_dict({"in_channels": len(meta["bands"]), **meta})
    model = ModelInfo(TilePredictor(net, "cpu"), data, data.num_classes + int(border), border, checkpoint="unused")
    return Job(model, Mode.parse(mode), instancer, InferenceOptions(**options))


def evaluate_with(job: Job, overrides: list[str], out: Path) -> dict:
    """``run_evaluate`` of the land-cover evaluation on the data the evaluate config's ``overrides`` describe."""
    cfg = compose_config("evaluate", ["domain=landcover", "checkpoint=unused", f"output_dir={out}", *overrides])
    datasets = hydra.utils.instantiate(cfg.domain.datamodule.datasets)()
    return run_evaluate(LandCoverEvaluation(), GeoTiffReader(), job, datasets, out)


def predict_with(job: Job, input: Path, output: Path, **writer) -> list[Path]:
    """``run_predict`` with the land-cover reader and writer (``writer``: its options)."""
    return run_predict(GeoTiffReader(), GeoTiffWriter(**writer), job, input, output)


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
