"""``scripts/predict.py domain=landcover``: outputs, folders of scenes, and every bad input of the issue (exit 2,
one clear message, no partial output)."""

import csv
import json
import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from PIL import Image

import segsuite.core.cli
import segsuite.core.predict
from segsuite.core.inference import InferenceOptions
from segsuite.core.io import STAGING_PREFIX
from segsuite.core.pipeline import run_predict
from segsuite.domains.landcover.classes import DEFAULT_CLASSES
from segsuite.domains.landcover.reader import GeoTiffReader
from segsuite.domains.landcover.synthetic import make_scene
from segsuite.domains.landcover.writer import GeoTiffWriter
from tests.helpers import compose_config, run_script


def predict_inprocess(capsys, ckpt, input, output, *overrides) -> tuple[int, str]:
    """``scripts/predict.py`` minus the subprocess: the composed config through ``segsuite.core.cli.run``."""
    cfg = compose_config("predict", ["domain=landcover", f"checkpoint={ckpt}", f"input={input}", f"output={output}",
                                     *overrides])
    with pytest.raises(SystemExit) as exit_info:
        segsuite.core.cli.run(segsuite.core.predict.predict, cfg)
    return exit_info.value.code, capsys.readouterr().err


def test_predict_script_on_a_folder_writes_rasters_reports_and_previews(tiny_checkpoint, synthetic_root, tmp_path):
    out = tmp_path / "pred"
    run_script("predict", "domain=landcover", f"checkpoint={tiny_checkpoint}", f"input={synthetic_root / 'images'}",
               f"output={out}", f"hydra.run.dir={tmp_path / 'hydra'}", "domain.inference.tile=[64,64]",
               "domain.inference.overlap=[16,16]", "domain.writer.probabilities=true", "tta=true")
    names = ["scene_000", "scene_001"]
    assert sorted(os.listdir(out)) == sorted(f"{n}{s}" for n in names for s in
                                             (".tif", "_proba.tif", "_areas.csv", "_areas.json", "_preview.png"))
    for name in names:
        with rasterio.open(synthetic_root / "images" / f"{name}.tif") as src, rasterio.open(out / f"{name}.tif") as dst:
            assert (dst.crs, dst.transform, dst.shape) == (src.crs, src.transform, src.shape)
            valid = dst.read_masks(1) > 0
            np.testing.assert_array_equal(valid, src.read_masks(1) > 0)  # the 8 px nodata border
            classes = dst.read(1)
            counts = np.bincount(classes[valid], minlength=6)
        report = json.loads((out / f"{name}_areas.json").read_text())
        assert [c["pixels"] for c in report["classes"]] == counts.tolist()
        assert report["pixel_area_m2"] == 100.0  # 10 m pixels of a UTM CRS
        with open(out / f"{name}_areas.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows[-1]["name"] == "total" and int(rows[-1]["pixels"]) == valid.sum()
        assert float(rows[0]["hectares"]) == pytest.approx(counts[0] * 100 / 10_000)
        preview = np.asarray(Image.open(out / f"{name}_preview.png").convert("RGB"))  # image | 8 px | classes, legend
        h, w = classes.shape
        colours = np.array([*DEFAULT_CLASSES.colors, (255, 255, 255)], np.uint8)  # nodata white
        np.testing.assert_array_equal(preview[:h, w + 8 : 2 * w + 8], colours[np.where(valid, classes, 6)])
        assert preview.shape[0] > h  # the legend below


def test_predict_returns_what_it_wrote_and_honours_options(tiny_checkpoint, synthetic_root, tmp_path):
    job = segsuite.core.predict.load_job(compose_config("predict", [
        "domain=landcover", f"checkpoint={tiny_checkpoint}", "input=x", "output=y"]))
    scene = synthetic_root / "images" / "scene_000.tif"
    tiles = dict(tile=(48, 40), overlap=(8, 8))
    written = run_predict(GeoTiffReader(), GeoTiffWriter(report=False, preview=False),
                          replace(job, options=InferenceOptions(**tiles)), scene, tmp_path)
    assert written == [tmp_path / "scene_000.tif"]  # an existing folder as output: the input's name inside it
    again = run_predict(GeoTiffReader(), GeoTiffWriter(report=False, preview=False),
                        replace(job, options=InferenceOptions(**tiles, blend="cosine", batch_size=1)), scene,
                        tmp_path / "b.tif")
    with rasterio.open(written[0]) as a, rasterio.open(again[0]) as b:
        assert (a.read(1) == b.read(1)).mean() > 0.99  # a 1x1 conv: blending only matters at near-ties


@pytest.fixture
def bad_inputs(tmp_path, synthetic_root):
    """name -> (input path, expected message) for each bad input the issue lists."""
    good = synthetic_root / "images" / "scene_000.tif"
    data = good.read_bytes()
    (tmp_path / "garbage.tif").write_bytes(b"this is not a GeoTIFF" * 50)
    (tmp_path / "truncated.tif").write_bytes(data[: len(data) // 2])  # the directory (at the end) is lost
    rasterio.shutil.copy(good, tmp_path / "cog.tif", driver="COG")  # the directory first, then the tiles
    cog = (tmp_path / "cog.tif").read_bytes()
    (tmp_path / "truncated_tiles.tif").write_bytes(cog[: len(cog) * 3 // 4])  # opens, but the last tiles are gone
    with rasterio.open(good) as src:
        profile, image = src.profile, src.read()
    with rasterio.open(tmp_path / "three_bands.tif", "w", **{**profile, "count": 3}) as dst:
        dst.write(image[:3])
    with rasterio.open(tmp_path / "no_crs.tif", "w", **{**profile, "crs": None}) as dst:
        dst.write(image)
    with rasterio.open(tmp_path / "all_nodata.tif", "w", **profile) as dst:
        dst.write(np.zeros_like(image))
    return {
        "garbage": (tmp_path / "garbage.tif", "not a readable raster"),
        "truncated": (tmp_path / "truncated.tif", "not a readable raster"),
        "truncated_tiles": (tmp_path / "truncated_tiles.tif", "truncated or corrupt"),
        "bands": (tmp_path / "three_bands.tif", "has 3 band(s) but the model was trained on 4-band images"),
        "no_crs": (tmp_path / "no_crs.tif", "has no CRS"),
        "all_nodata": (tmp_path / "all_nodata.tif", "every pixel is nodata"),
        "missing": (tmp_path / "missing.tif", "does not exist"),
    }


@pytest.mark.parametrize("case", ["garbage", "truncated", "truncated_tiles", "bands", "no_crs", "all_nodata",
                                  "missing"])
def test_bad_input_exits_2_and_writes_nothing(case, bad_inputs, tiny_checkpoint, tmp_path, capsys):
    path, message = bad_inputs[case]
    code, err = predict_inprocess(capsys, tiny_checkpoint, path, tmp_path / "out" / "pred.tif")
    assert code == 2 and message in err and str(path.name) in err, err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_one_bad_scene_in_a_folder_stops_before_any_output(bad_inputs, synthetic_root, tiny_checkpoint, tmp_path,
                                                           capsys):
    folder = tmp_path / "scenes"
    folder.mkdir()
    shutil.copy(synthetic_root / "images" / "scene_000.tif", folder / "a.tif")
    shutil.copy(bad_inputs["no_crs"][0], folder / "b.tif")
    code, err = predict_inprocess(capsys, tiny_checkpoint, folder, tmp_path / "out")
    assert code == 2 and "b.tif: raster has no CRS" in err
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_existing_output_needs_overwrite(synthetic_root, tiny_checkpoint, tmp_path, capsys):
    scene = synthetic_root / "images" / "scene_000.tif"
    (tmp_path / "pred_areas.csv").write_text("keep me")
    code, err = predict_inprocess(capsys, tiny_checkpoint, scene, tmp_path / "pred.tif")
    assert code == 2 and "pred_areas.csv already exists; pass overwrite=true" in err
    assert sorted(os.listdir(tmp_path)) == ["pred_areas.csv"]  # nothing written, nothing replaced
    cfg = compose_config("predict", ["domain=landcover", f"checkpoint={tiny_checkpoint}", f"input={scene}",
                                     f"output={tmp_path / 'pred.tif'}", "overwrite=true",
                                     "domain.writer.preview=false"])
    segsuite.core.cli.run(segsuite.core.predict.predict, cfg)
    assert (tmp_path / "pred_areas.csv").read_text().startswith("id,name,pixels")


def test_unwritable_output_folder_exits_2(synthetic_root, tiny_checkpoint, tmp_path, capsys):
    (tmp_path / "file").write_text("")  # tests run as root: a folder "inside" a regular file is unwritable
    code, err = predict_inprocess(capsys, tiny_checkpoint, synthetic_root / "images" / "scene_000.tif",
                                  tmp_path / "file" / "pred.tif")
    assert code == 2 and "file is a file, not a folder" in err
    assert sorted(os.listdir(tmp_path)) == ["file"]


def test_predict_script_reports_a_truncated_scene_without_traceback(bad_inputs, tiny_checkpoint, tmp_path):
    path, message = bad_inputs["truncated_tiles"]
    proc = run_script("predict", "domain=landcover", f"checkpoint={tiny_checkpoint}", f"input={path}",
                      f"output={tmp_path / 'out.tif'}", f"hydra.run.dir={tmp_path / 'hydra'}", check=False)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.tif").exists() and not list(tmp_path.glob(".*"))
    assert not list(tmp_path.glob(STAGING_PREFIX + "*"))


def test_scene_with_other_band_count_is_refused_even_with_one_good_band_subset(tmp_path, tiny_checkpoint, capsys):
    img, _ = make_scene(tmp_path / "five.tif", tmp_path / "five_labels.tif", 40, 40, bands=5)
    code, err = predict_inprocess(capsys, tiny_checkpoint, img, tmp_path / "pred.tif")
    assert code == 2 and "has 5 band(s)" in err and not (tmp_path / "pred.tif").exists()


def test_a_list_and_a_pattern_of_inputs_write_one_folder(synthetic_root, tiny_checkpoint, tmp_path):
    images = synthetic_root / "images"
    other = tmp_path / "more"
    other.mkdir()
    shutil.copy(images / "scene_001.tif", other / "extra.tif")
    for input, output in [(f"[{images / 'scene_000.tif'},{other}]", tmp_path / "a"),
                          (f"{images}/scene_00*.tif", tmp_path / "b")]:
        segsuite.core.cli.run(segsuite.core.predict.predict, compose_config("predict", [
            "domain=landcover", f"checkpoint={tiny_checkpoint}", f"input={input}", f"output={output}",
            "domain.writer.preview=false", "domain.writer.report=false"]))
    assert sorted(os.listdir(tmp_path / "a")) == ["extra.tif", "scene_000.tif"]
    assert sorted(os.listdir(tmp_path / "b")) == ["scene_000.tif", "scene_001.tif"]
    for name, again in [("scene_000.tif", "scene_000.tif"), ("extra.tif", "scene_001.tif")]:
        with rasterio.open(tmp_path / "a" / name) as x, rasterio.open(tmp_path / "b" / again) as y:
            np.testing.assert_array_equal(x.read(), y.read())
            assert (x.crs, x.transform) == (y.crs, y.transform)


@pytest.mark.parametrize("input, message", [("[]", "input is an empty list"),
                                            ("nowhere/*.tif", "input pattern 'nowhere/*.tif' matches no files")])
def test_an_empty_list_or_pattern_is_one_line(input, message, tiny_checkpoint, tmp_path, capsys):
    code, err = predict_inprocess(capsys, tiny_checkpoint, input, tmp_path / "out")
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_two_inputs_of_one_name_are_refused_before_any_work(synthetic_root, tiny_checkpoint, tmp_path, capsys):
    other = tmp_path / "copy"
    other.mkdir()
    shutil.copy(synthetic_root / "images" / "scene_000.tif", other / "scene_000.tif")
    code, err = predict_inprocess(capsys, tiny_checkpoint, f"[{synthetic_root / 'images'},{other}]", tmp_path / "out")
    assert code == 2 and "would both be written to" in err
    assert not (tmp_path / "out").exists()
