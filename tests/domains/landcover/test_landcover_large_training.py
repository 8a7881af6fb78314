"""Training straight from large rasters: windows are read from the file (a GeoTIFF or a VRT mosaic of several),
never the whole scene (chunk by chunk), and a VRT scene gives the samples its GeoTIFF would."""

import numpy as np
import pytest
import rasterio
import torch

from segsuite.core.errors import ConfigError
from segsuite.domains.landcover import samples
from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.mosaic import write_vrt
from segsuite.domains.landcover.synthetic import make_dataset


def _as_vrt_root(src_root, root, cut=48):
    """``src_root``'s scene split into four GeoTIFF quarters per raster, each raster a VRT of its quarters."""
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
        with rasterio.open(src_root / folder / "scene_000.tif") as src:
            parts = []
            for r in (0, cut):
                for c in (0, cut):
                    window = rasterio.windows.Window(c, r, cut, cut)
                    profile = {**src.profile, "width": cut, "height": cut, "transform": src.window_transform(window),
                               "tiled": False}
                    profile.pop("blockxsize", None), profile.pop("blockysize", None)
                    path = root / f"{folder}_{r}_{c}.tif"
                    with rasterio.open(path, "w", **profile) as dst:
                        dst.write(src.read(window=window))
                    parts.append(str(path))
        write_vrt(parts, root / folder / "scene_000.vrt")


def test_training_reads_windows_from_a_vrt_mosaic_as_from_its_geotiff(tmp_path, monkeypatch):
    make_dataset(tmp_path / "tif", n_scenes=1, size=96, seed=2)
    _as_vrt_root(tmp_path / "tif", tmp_path / "vrt")
    # chunks of 32 x 32 corners (63 px areas), 4 windows each, 2 at a time
    options = dict(patch_size=32, holdout_fraction=0.25, holdout_block=32, augment=False, samples_per_epoch=40,
                   chunks={"size": 32, "windows": 4, "buffer": 2})
    tif, vrt = (build_datasets(str(tmp_path / kind), **options) for kind in ("tif", "vrt"))
    assert vrt["train"].regions[0].scene.image.suffix == ".vrt"
    assert len(tif["val"]) == len(vrt["val"]) > 0
    for a, b in zip(tif["val"], vrt["val"], strict=True):
        assert np.array_equal(a["image"].numpy(), b["image"].numpy()) and np.array_equal(a["mask"], b["mask"])
    reads = []
    real = samples.read_tile
    monkeypatch.setattr(samples, "read_tile", lambda src, w, *a: reads.append(w) or real(src, w, *a))
    items = []
    for ds in (tif, vrt):
        assert ds["train"].chunking == (32, 4, 2)
        torch.manual_seed(0)
        items.append([ds["train"][i] for i in range(40)])
    for a, b in zip(*items, strict=True):  # the same stream of windows, the same pixels
        assert a["image"].shape == (4, 32, 32) and all(np.array_equal(a[k], b[k]) for k in b)
    assert len(reads) <= 5 * (40 // 4 + 2)  # per chunk of 4 windows (2 left over): image, labels (, instances)
    assert max(w.height * w.width for w in reads) <= 63 * 63 < 96 * 72  # chunks, never the training area whole


def test_unknown_chunk_settings_are_refused(tmp_path):
    make_dataset(tmp_path / "tif", n_scenes=1, size=64, seed=2)
    with pytest.raises(ConfigError, match=r"datasets.chunks has unknown keys \['windows_per_chunk'\]"):
        build_datasets(str(tmp_path / "tif"), patch_size=32, chunks={"windows_per_chunk": 8})


def test_a_decoded_cache_gives_the_same_samples_and_later_epochs_read_no_file(tmp_path, monkeypatch):
    make_dataset(tmp_path / "data", n_scenes=1, size=96, seed=1)
    options = dict(patch_size=32, holdout_fraction=0.25, holdout_block=32, samples_per_epoch=24,
                   chunks={"size": 32, "windows": 4, "buffer": 2})
    plain = build_datasets(str(tmp_path / "data"), **options)
    cached = build_datasets(str(tmp_path / "data"), cache=str(tmp_path / "cache"), **options)

    def epoch(datasets):
        datasets["train"]._sampler = None  # a fresh stream, as a new run (or a fold or a trial) draws
        torch.manual_seed(0)
        return [datasets[s][i] for s in ("train", "val") for i in range(len(datasets[s]))]

    expected, first = epoch(plain), epoch(cached)
    monkeypatch.setattr(samples, "read_tile", lambda *a, **k: pytest.fail("read a file through a warm cache"))
    for a, b, c in zip(expected, first, epoch(cached), strict=True):
        assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in a)
