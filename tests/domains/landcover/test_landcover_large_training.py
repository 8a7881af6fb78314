"""Training straight from large rasters: windows are read from the file (a GeoTIFF or a VRT mosaic of several),
never the whole scene, and a VRT scene gives the samples its GeoTIFF would."""

import numpy as np
import rasterio

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
    options = dict(patch_size=32, holdout_fraction=0.25, holdout_block=32, augment=False, samples_per_epoch=4)
    sizes = []
    real = samples.read_window
    monkeypatch.setattr(samples, "read_window", lambda src, w, *a: sizes.append((w.height, w.width)) or real(src, w,
                                                                                                            *a))
    tif, vrt = (build_datasets(str(tmp_path / kind), **options) for kind in ("tif", "vrt"))
    assert vrt["train"].regions[0].scene.image.suffix == ".vrt"
    for split in ("val",):
        assert len(tif[split]) == len(vrt[split]) > 0
        for i in range(len(tif[split])):
            a, b = tif[split][i], vrt[split][i]
            assert np.array_equal(a["image"].numpy(), b["image"].numpy()) and np.array_equal(a["mask"], b["mask"])
    sizes.clear()
    item = vrt["train"][0]
    assert item["image"].shape == (4, 32, 32) and sizes == [(32, 32)]  # one window read, not the scene
