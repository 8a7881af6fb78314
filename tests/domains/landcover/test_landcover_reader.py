"""The land-cover reader opens an input once to check it: ``open`` reuses what ``check`` found while the file is
unchanged (path, modification time, size), and the tiles come from the reading threads' own handles."""

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rasterio.env import get_gdal_config, set_gdal_config

from segsuite.core.contracts import Item
from segsuite.core.errors import DataError
from segsuite.core.inference import InferenceOptions
from segsuite.domains.landcover import reader as reader_module
from segsuite.domains.landcover.reader import GeoTiffReader, RasterSource

META = {"bands": [1, 2], "normalization": {"mean": [50.0, 50.0], "std": [10.0, 10.0]}}


def _job(options=None):
    """What the reader reads of a job: the model's meta, channels and device, and the inference options."""
    predictor = SimpleNamespace(device=torch.device("cpu"))
    return SimpleNamespace(model=SimpleNamespace(meta=META, channels=3, engine_channels=0, predictor=predictor),
                           options=options)


@pytest.fixture
def opens(monkeypatch):
    """``check_data`` of every raster the reader opens."""
    calls, real = [], reader_module.open_raster

    def counted(path, *args, check_data=True, **kwargs):
        calls.append(check_data)
        return real(path, *args, check_data=check_data, **kwargs)

    monkeypatch.setattr(reader_module, "open_raster", counted)
    return calls


def test_open_reuses_what_check_found_until_the_file_changes(tif, opens):
    image = np.random.default_rng(0).integers(1, 100, (2, 40, 56)).astype(np.uint16)
    path = tif("scene.tif", image, nodata=0)
    job, item, reader = _job(), Item("scene.tif", path), GeoTiffReader()
    reader.check(item, job)
    assert opens == [True]
    opened = reader.open(item, job)
    source = opened.sources[0]
    assert opens == [True] and source.shape == (40, 56) and source.profile["width"] == 56  # not opened again
    data, valid = source.load((8, 16, 16, 16))  # the reading thread's own handle
    assert opens == [True, False] and bool(valid.all())
    np.testing.assert_array_equal(data, image[:, 8:24, 16:32])
    opened.close()

    reader.check(item, job)
    tif("scene.tif", image[:, :32], nodata=0)  # changed since it was checked
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with reader.open(item, job).sources[0] as source:
        assert opens[-1] is True and source.shape == (32, 56)  # checked again


def test_what_was_found_is_still_checked_against_the_checkpoints_bands(tif):
    path = tif("scene.tif", np.ones((2, 8, 8), np.uint16))
    with RasterSource(path, META) as source:
        probed = source.probed
    assert (probed.count, probed.height, probed.width) == (2, 8, 8)
    with pytest.raises(DataError, match=r"bands \[7\] not available"):
        RasterSource(path, {**META, "bands": [1, 7]}, probed=probed)


def test_the_reader_previews_a_scene_for_the_demo_page_and_not_a_broken_file(tif, tmp_path):
    image = np.stack([np.full((40, 60), v, np.uint16) for v in (10, 20, 30, 40)])
    image[:, :, 30:] *= 3
    rgb = GeoTiffReader().preview(tif("scene.tif", image), (20, 30))  # at the result's (strided) size
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8 and (rgb[:, 20:] > rgb[:, :10]).all()
    (tmp_path / "broken.tif").write_bytes(b"not a raster")
    assert GeoTiffReader().preview(tmp_path / "broken.tif", (20, 30)) is None


def test_an_opened_scene_holds_gdals_block_cache_to_what_the_engine_reads_again(tif, monkeypatch):
    path = tif("scene.tif", np.ones((2, 600, 3000), np.uint16))
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    before = get_gdal_config("GDAL_CACHEMAX")
    options = InferenceOptions(tile=(512, 512), overlap=(32, 32), readers=4, band=1024)
    reader, item = GeoTiffReader(), Item("scene.tif", path)
    opened = reader.open(item, _job(options))
    span = 1024 + 2 * 512  # a band and the windows reaching past its edges
    assert get_gdal_config("GDAL_CACHEMAX") == int(4 * (512 + 512) * span * 2 * 2 * 1.25)  # readers x rows x span x
    # bytes, and a quarter for the output rasters' blocks
    opened.close()
    assert get_gdal_config("GDAL_CACHEMAX") == before

    monkeypatch.setenv("GDAL_CACHEMAX", "64")  # the user's own setting is left alone
    set_gdal_config("GDAL_CACHEMAX", 64 << 20)
    reader.open(item, _job(options)).close()
    assert get_gdal_config("GDAL_CACHEMAX") == 64 << 20
    set_gdal_config("GDAL_CACHEMAX", before)
