"""Reading (axes, pixel size, pairing, normalisation), the synthetic root, the CTC result layout, the object CSV and
one-line refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from segsuite.core.errors import DataError
from segsuite.core.instances import Instances
from segsuite.domains.microscopy.data import (
    build_datasets,
    find_pairs,
    make_dataset,
    normalize,
    read_tiff,
    synthetic_image,
    write_tiff,
)
from segsuite.domains.microscopy.io import OpenedStack, object_rows, result_name
from tests.helpers import run_inline


@pytest.mark.parametrize(("shape", "kw", "expected"), [
    ((20, 30), {}, (1, 1, 20, 30)),
    ((4, 20, 30), {"imagej": True, "metadata": {"axes": "ZYX"}}, (1, 4, 20, 30)),
    ((2, 20, 30), {"imagej": True, "metadata": {"axes": "CYX"}}, (2, 1, 20, 30)),
    ((20, 30, 3), {"photometric": "rgb"}, (3, 1, 20, 30)),
    ((4, 2, 20, 30), {"imagej": True, "metadata": {"axes": "ZCYX"}}, (2, 4, 20, 30)),
])
def test_axes_become_czyx(tmp_path, shape, kw, expected):
    data = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    tifffile.imwrite(tmp_path / "a.tif", data, **kw)
    assert read_tiff(tmp_path / "a.tif")[0].shape == expected


def test_pixel_size_from_imagej_and_centimetre_tags(tmp_path):
    write_tiff(tmp_path / "ij.tif", np.zeros((8, 8), np.uint8), pixel_um=0.25)
    tifffile.imwrite(tmp_path / "cm.tif", np.zeros((8, 8), np.uint8), resolution=(20000, 20000), resolutionunit=3)
    tifffile.imwrite(tmp_path / "none.tif", np.zeros((8, 8), np.uint8))
    assert [read_tiff(tmp_path / f"{n}.tif")[1] for n in ("ij", "cm", "none")] == [pytest.approx(0.25),
                                                                                 pytest.approx(0.5), None]


def test_percentile_normalisation_per_channel():
    image = np.stack([np.arange(1000.0), 10 * np.arange(1000.0) + 7]).reshape(2, 1, 10, 100)
    out = normalize(image)
    for channel in out:
        lo, hi = np.percentile(channel, [1, 99.8])
        assert lo == pytest.approx(0, abs=1e-6) and hi == pytest.approx(1, abs=1e-6)


def test_ctc_pairing_prefers_gold_then_silver_and_skips_unlabelled(tmp_path):
    blank = np.zeros((8, 8), np.uint16)
    for name in ("01/t000.tif", "01/t001.tif", "01/t002.tif", "01_GT/SEG/man_seg000.tif", "01_ST/SEG/man_seg000.tif",
                 "01_ST/SEG/man_seg001.tif", "01_GT/SEG/man_seg_002_005.tif", "02/t000.tif",
                 "02_GT/SEG/man_seg000.tif"):
        write_tiff(tmp_path / name, blank)
    pairs = [(i.relative_to(tmp_path).as_posix(), m.relative_to(tmp_path).as_posix()) for i, m in find_pairs(tmp_path)]
    assert pairs == [("01/t000.tif", "01_GT/SEG/man_seg000.tif"), ("01/t001.tif", "01_ST/SEG/man_seg001.tif"),
                     ("02/t000.tif", "02_GT/SEG/man_seg000.tif")]


def test_plain_folders_pair_by_stem(tmp_path):
    for name in ("images/a.tif", "images/b.tiff", "masks/a.tif", "masks/b.tif"):
        write_tiff(tmp_path / name, np.zeros((8, 8), np.uint16))
    assert [(i.name, m.name) for i, m in find_pairs(tmp_path)] == [("a.tif", "a.tif"), ("b.tiff", "b.tif")]
    (tmp_path / "masks/b.tif").unlink()
    with pytest.raises(DataError, match="no label for image .*b.tiff"):
        find_pairs(tmp_path)


def test_the_synthetic_root_appears_whole(tmp_path):
    make_dataset(tmp_path / "root", n_images=2, size=48)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]  # no temporary folder left beside it
    image, labels = synthetic_image(0, 48)
    assert image.dtype == np.uint16 and labels.max() >= 2
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "root/01/t000.tif"), image)


def test_result_names_follow_the_ctc_layout():
    assert result_name(Path("01/t000.tif")) == Path("01_RES/mask000.tif")
    assert result_name(Path("t0123.tif")) == Path("mask0123.tif")
    assert result_name(Path("plate/well_a.tiff")) == Path("plate/well_a.tif")


def test_object_rows_measure_area_centroid_and_intensity():
    raw = np.zeros((2, 1, 6, 8), np.uint16)
    raw[0, 0, 1:3, 1:4], raw[1, 0, 1:3, 1:4] = 10, 4
    ids = np.zeros((6, 8), np.int32)
    ids[1:3, 1:4], ids[4:6, 6:8] = 1, 2
    rows = object_rows(Instances(ids, np.array([-1, 1, 1])), OpenedStack(raw, pixel_um=0.5))
    assert rows[0]["area_px"] == 6 and rows[0]["area_um2"] == pytest.approx(1.5)
    assert (rows[0]["centroid_y"], rows[0]["centroid_x"]) == (pytest.approx(1.5), pytest.approx(2.0))
    assert (rows[0]["mean_intensity_c0"], rows[0]["mean_intensity_c1"], rows[1]["mean_intensity_c0"]) == (10, 4, 0)


def test_predict_writes_the_ctc_result_layout(checkpoint, ctc_root, tmp_path):
    out = tmp_path / "out"
    assert run_inline("predict", "domain=microscopy", f"checkpoint={checkpoint}", f"input={ctc_root}",
                      f"output={out}", "task=instance") == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names[:3] == ["01_RES/mask000.tif", "01_RES/mask000_objects.csv", "01_RES/mask000_overlay.png"]
    assert len(names) == 18
    mask = tifffile.imread(out / "01_RES/mask000.tif")
    assert mask.dtype == np.uint16 and mask.shape == (64, 64)
    with open(out / "01_RES/mask000_objects.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(np.unique(mask)) - 1
    if rows:
        assert {"id", "area_px", "area_um2", "centroid_y", "centroid_x", "mean_intensity_c0"} <= set(rows[0])


def test_a_stack_is_predicted_slice_by_slice_into_3d_objects(checkpoint, tmp_path):
    stack = np.stack([synthetic_image(z, 40)[0] for z in range(3)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    assert run_inline("predict", "domain=microscopy", f"checkpoint={checkpoint}", f"input={tmp_path / 'stack.tif'}",
                      f"output={tmp_path / 'pred.tif'}", "task=instance") == 0
    assert tifffile.imread(tmp_path / "pred.tif").shape == (3, 40, 40)


@pytest.mark.parametrize(("make", "output", "message"), [
    (lambda p: p.write_bytes(b"\x89PNG not a tiff"), "out/", "is not one of the TIFF images"),
    (lambda p: tifffile.imwrite(p, np.zeros((2, 16, 16), np.uint16), imagej=True, metadata={"axes": "CYX"}),
     "out/", "has 2 channel(s)"),
    (lambda p: write_tiff(p, np.zeros((16, 16), np.uint16)), "out.png", "must be a .tif file"),
])
def test_bad_inputs_exit_2_with_one_line(checkpoint, tmp_path, capsys, make, output, message):
    path = tmp_path / ("in.png" if "TIFF images" in message else "in.tif")
    make(path)
    assert run_inline("predict", "domain=microscopy", f"checkpoint={checkpoint}", f"input={path}",
                      f"output={tmp_path / output}") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_gold_truth_validates_and_silver_truth_only_trains(ctc_root):
    splits = build_datasets(str(ctc_root), patch_size=32)
    assert [(i.name, m.parent.parent.name) for i, m in splits["val"].files] == [("t004.tif", "01_GT")]
    assert [i.name for i, _ in splits["train"].files] == ["t000.tif", "t001.tif", "t002.tif", "t003.tif", "t005.tif"]
    sample = splits["train"][0]
    assert sample["image"].shape == (1, 32, 32) and set(sample["mask"].unique().tolist()) <= {0, 1}
    assert ((sample["instances"] > 0) == (sample["mask"] == 1)).all()
    assert splits["train"].meta["plan"]["patch_size"] == [32, 32] and splits["train"].meta["pixel_size_um"] == 0.5


def test_a_requested_fold_splits_the_images(ctc_root):
    from segsuite.core.folds import FoldRequest, requested

    with requested(request := FoldRequest(1, 3, 0)):
        splits = build_datasets(str(ctc_root), patch_size=32)
    val = [i.relative_to(ctc_root).as_posix() for i, _ in splits["val"].files]
    assert val == request.splits[1]["val"] and len(val) == 2 and len(splits["train"].files) == 4
