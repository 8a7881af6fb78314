"""Datasets and the builder: sample contract, metadata, statistics, splits, nodata, weighting, errors."""

import json

import numpy as np
import pytest
import rasterio
import torch
from torch.utils.data import DataLoader

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.regions import cells, holdout_split
from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.io import as_window
from segsuite.domains.landcover.rasterstats import band_stats
from segsuite.domains.landcover.samples import augment_d4


def _scene(tif, root, stem, image, labels, **kw):
    """Write ``root/images/stem.tif`` and ``root/labels/stem.tif``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    tif(f"{root.name}/images/{stem}.tif", image, **kw)
    tif(f"{root.name}/labels/{stem}.tif", labels)


def _all(dataset):
    return [dataset[i] for i in range(len(dataset))]


def test_contract_meta_and_collate(synthetic_root):
    ds = build_datasets(str(synthetic_root), patch_size=32, holdout_fraction=0.25, samples_per_epoch=6)
    assert set(ds) == {"train", "val"} and len(ds["train"]) == 6
    for split in ("train", "val"):
        sample = ds[split][0]
        assert set(sample) == {"image", "mask", "instances"}  # the synthetic data has ROOT/instances
        assert sample["instances"].dtype == torch.int64 and sample["instances"].shape == (32, 32)
        assert sample["image"].dtype == torch.float32 and sample["image"].shape == (4, 32, 32)
        assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (32, 32)
        assert set(sample["mask"].unique().tolist()) <= {0, 1, 2, 3, 4, 5, 255}
    batch = next(iter(DataLoader(ds["train"], batch_size=3, num_workers=2)))
    assert batch["image"].shape == (3, 4, 32, 32) and batch["mask"].shape == batch["instances"].shape == (3, 32, 32)
    meta = ds["train"].meta
    assert json.loads(json.dumps(meta)) == meta and ds["val"].meta == meta
    assert meta["in_channels"] == 4 and meta["num_classes"] == 6 and meta["ignore_index"] == 255
    assert meta["patch_size"] == [32, 32] and meta["band_names"] == ["red", "green", "blue", "nir"]
    assert meta["class_names"][0] == "dense forest" and len(meta["class_colors"]) == 6
    assert len(meta["normalization"]["mean"]) == len(meta["normalization"]["std"]) == 4
    assert meta["has_instances"] is True and meta["alpha_is_mask"] is None


def test_statistics_come_from_the_training_part_only(synthetic_root):
    ds = build_datasets(str(synthetic_root), patch_size=32, holdout_fraction=0.25, bands=[4, 1])
    train_rects, _ = holdout_split(96, 96, 0.25)
    cells_ = [
        (synthetic_root / "images" / f"scene_00{i}.tif", as_window(c))
        for i in (0, 1)
        for c in cells(train_rects[0], (512, 512))
    ]
    expected = band_stats(cells_, bands=[4, 1])
    assert ds["val"].meta["normalization"]["mean"] == expected["mean"]
    assert ds["val"].meta["normalization"]["std"] == expected["std"]
    assert ds["train"].meta["band_names"] == ["nir", "red"] and ds["train"].meta["in_channels"] == 2


def test_val_grid_counts_every_held_out_pixel_once(synthetic_root):
    ds = build_datasets(str(synthetic_root), patch_size=(24, 40), holdout_fraction=0.3, augment=False)
    _, val_rects = holdout_split(96, 96, 0.3)
    expected = np.zeros(7, int)
    for i in (0, 1):
        with rasterio.open(synthetic_root / "labels" / f"scene_00{i}.tif") as src:
            part = src.read(1, window=as_window(val_rects[0]))
        expected += np.bincount(np.where(part == 255, 6, part).ravel(), minlength=7)
    got = np.zeros(7, int)
    for sample in _all(ds["val"]):
        m = sample["mask"].numpy()
        got += np.bincount(np.where(m == 255, 6, m).ravel(), minlength=7)
    np.testing.assert_array_equal(got[:6], expected[:6])  # every labelled pixel exactly once


def test_nodata_becomes_ignore_and_zero_and_values_are_normalised(tif, tmp_path):
    root = tmp_path / "nd"
    rng = np.random.default_rng(0)
    image = rng.integers(100, 200, (2, 32, 32)).astype(np.uint16)
    image[:, 0:3, 0:5] = 0  # nodata block
    image[1, 10, 10] = 0  # nodata in one band only
    labels = rng.integers(0, 6, (32, 32)).astype(np.uint8)
    _scene(tif, root, "a", image, labels, nodata=0)
    _scene(tif, root, "b", image, labels, nodata=0)
    ds = build_datasets(str(root), patch_size=32, val_stems=["b"])
    sample = ds["val"][0]
    mask, img = sample["mask"].numpy(), sample["image"].numpy()
    invalid = (image == 0).any(axis=0)
    assert (mask[invalid] == 255).all() and (img[:, invalid] == 0).all()
    np.testing.assert_array_equal(mask[~invalid], labels[~invalid])
    mean, std = (np.array(ds["val"].meta["normalization"][k])[:, None] for k in ("mean", "std"))
    np.testing.assert_allclose(img[:, ~invalid], (image[:, ~invalid] - mean) / std, atol=1e-5)
    valid_px = image[:, ~invalid].astype(np.float64)
    np.testing.assert_allclose(mean[:, 0], valid_px.mean(axis=1))  # train scene "a" == "b"


def test_holdout_strip_never_reaches_training_samples(tif, tmp_path):
    root = tmp_path / "strip"
    labels = np.zeros((64, 128), np.uint8)
    labels[:, 96:] = 3  # the held-out strip (last quarter of the columns) is the only class 3
    image = np.where(labels == 3, 50, 10)[None].repeat(2, 0).astype(np.uint8)
    _scene(tif, root, "s", image, labels)
    ds = build_datasets(str(root), patch_size=16, holdout_fraction=0.25, samples_per_epoch=200)
    train = _all(ds["train"])
    assert all(3 not in s["mask"].unique().tolist() for s in train)
    assert all(torch.allclose(s["image"], train[0]["image"][:, :1, :1]) for s in train)  # only class-0 pixels
    assert sum((s["mask"] == 3).sum().item() for s in _all(ds["val"])) == 64 * 32


def test_rare_class_weighting_shows_rare_classes_more_often(tif, tmp_path):
    root = tmp_path / "rare"
    labels = np.zeros((128, 128), np.uint8)
    labels[100:108, 100:108] = 4  # one small building
    _scene(tif, root, "r", np.ones((1, 128, 128), np.uint8) + labels, labels)
    _scene(tif, root, "v", np.ones((1, 16, 16), np.uint8), np.zeros((16, 16), np.uint8))
    hits = {}
    for weighted in (False, True):
        torch.manual_seed(0)
        ds = build_datasets(
            str(root), patch_size=16, val_stems=["v"], samples_per_epoch=1000, rare_class_weighting=weighted
        )
        hits[weighted] = sum(4 in s["mask"].unique().tolist() for s in _all(ds["train"]))
    assert hits[False] < 67 and hits[True] > 2 * hits[False]  # about 4 % of uniform windows touch it, 10 % weighted


def test_many_small_tiles_smaller_than_the_patch(tif, tmp_path):
    root = tmp_path / "tiles"
    rng = np.random.default_rng(0)
    for i in range(6):
        _scene(
            tif,
            root,
            f"t{i}",
            rng.integers(1, 9, (3, 20, 20)).astype(np.uint8),
            rng.integers(0, 6, (20, 20)).astype(np.uint8),
        )
    ds = build_datasets(str(root), patch_size=32, val_stems=["t4"], test_stems=["t5"], samples_per_epoch=10)
    assert set(ds) == {"train", "val", "test"} and len(ds["val"]) == len(ds["test"]) == 1
    for sample in _all(ds["train"]) + _all(ds["test"]):
        mask = sample["mask"]
        assert (mask != 255).sum() == 400 and sample["image"].shape == (3, 32, 32)  # padding is ignored


def test_builder_errors(tif, tmp_path, synthetic_root):
    with pytest.raises(DataError, match="data root .*nowhere does not exist"):
        build_datasets(str(tmp_path / "nowhere"), patch_size=16)
    with pytest.raises(ConfigError, match=r"unknown scene stem\(s\) \['scene_009'\]"):
        build_datasets(str(synthetic_root), val_stems=["scene_009"])
    with pytest.raises(ConfigError, match="in both val_stems and test_stems"):
        build_datasets(str(synthetic_root), val_stems=["scene_000"], test_stems=["scene_000"])
    with pytest.raises(ConfigError, match=r"holdout_block \(8\) must be at least the patch size \[16, 16\]"):
        build_datasets(str(synthetic_root), patch_size=16, holdout_fraction=0.2, holdout_mode="blocks", holdout_block=8)
    with pytest.raises(ConfigError, match="no validation data"):
        build_datasets(str(synthetic_root))
    with pytest.raises(ConfigError, match="no training scenes left"):
        build_datasets(str(synthetic_root), val_stems=["scene_000"], test_stems=["scene_001"])
    root = tmp_path / "badlabels"
    _scene(tif, root, "x", np.ones((1, 16, 16), np.uint8), np.full((16, 16), 9, np.uint8))
    with pytest.raises(DataError, match=r"badlabels/labels/x.tif: label values 9 are not in the class map"):
        build_datasets(str(root), holdout_fraction=0.5)
    (root / "labels" / "x.tif").unlink()
    with pytest.raises(DataError, match=r"no label raster for image\(s\) x.tif"):
        build_datasets(str(root), holdout_fraction=0.5)


def test_synthetic_if_missing_generates_the_layout(tmp_path):
    root = tmp_path / "demo"
    ds = build_datasets(
        str(root), patch_size=32, holdout_fraction=0.2, synthetic_if_missing=True, synthetic_scenes=1, synthetic_size=64
    )
    assert (root / "images" / "scene_000.tif").is_file() and (root / "classes.json").is_file()
    assert ds["train"][0]["image"].shape == (4, 32, 32)


def test_block_holdout_regions_partition_each_scene(synthetic_root):
    ds = build_datasets(str(synthetic_root), patch_size=16, holdout_fraction=0.3, holdout_mode="blocks", seed=4)
    for train, val in zip(ds["train"].regions, ds["val"].regions, strict=True):
        assert train.scene == val.scene
        count = np.zeros((96, 96), int)
        for r in train.rects + val.rects:
            count[r.row0 : r.row1, r.col0 : r.col1] += 1
        assert (count == 1).all() and len(val.rects) >= 1


def test_samples_per_epoch_defaults_to_one_pass_over_the_training_area(synthetic_root):
    ds = build_datasets(str(synthetic_root), patch_size=16, holdout_fraction=0.25, holdout_mode="blocks",
                        holdout_block=32, rare_class_weighting=False)
    pixels = sum(rect.area for region in ds["train"].regions for rect in region.rects)
    assert 0 < pixels < 2 * 96 * 96 and len(ds["train"]) == pixels // (16 * 16)
    small = build_datasets(str(synthetic_root), patch_size=48, val_stems=["scene_001"], batch_size=8)
    assert len(small["train"]) == 8  # 96 x 96 / 48 x 48 = 4 windows, raised to one batch


def test_alpha_rule_is_kept_in_meta_and_applied_to_training_reads(tif, tmp_path):
    root = tmp_path / "rgbn"
    image = np.random.default_rng(0).integers(1, 255, (4, 32, 32)).astype(np.uint8)
    image[3, :8] = 0  # NIR 0; rasterio's defaults make GDAL flag band 4 as alpha
    _scene(tif, root, "a", image, np.zeros((32, 32), np.uint8))
    ds = build_datasets(str(root), patch_size=32, holdout_fraction=0.5, holdout_mode="strip", augment=False)
    assert ds["train"].meta["alpha_is_mask"] is None and ds["train"].meta["in_channels"] == 4
    own = ds["train"][0]["mask"] != 255  # the training half (the strip hold-out is the far half)
    assert own.sum() == 32 * 16 and own[:8].sum() == 8 * 16  # rows with NIR 0 are labelled, not nodata
    masked = build_datasets(str(root), patch_size=32, holdout_fraction=0.5, holdout_mode="strip", augment=False,
                            alpha_is_mask=True)
    assert masked["train"].meta["alpha_is_mask"] is True
    assert (masked["train"][0]["mask"] != 255).sum() == 24 * 16 and (masked["train"][0]["mask"][:8] == 255).all()
    with pytest.raises(ConfigError, match="alpha_is_mask='yes': accepted true, false or null"):
        build_datasets(str(root), patch_size=32, holdout_fraction=0.5, alpha_is_mask="yes")


def test_augmentation_is_identical_on_image_and_mask():
    rng = np.random.default_rng(0)
    mask = np.arange(36).reshape(6, 6)
    image = np.stack([mask, -mask]).astype(np.float32)  # (2, 6, 6): both channels encode the mask
    seen = set()
    for _ in range(200):
        img, msk = augment_d4(image, mask, rng)
        assert img.flags.c_contiguous and msk.flags.c_contiguous
        np.testing.assert_array_equal(img[0], msk)
        np.testing.assert_array_equal(img[1], -msk)
        seen.add(tuple(msk.ravel().tolist()))
    assert len(seen) == 8  # the whole dihedral group (4 rotations x flip) is used
    reference = {tuple(np.rot90(m, k).ravel().tolist()) for m in (mask, mask[:, ::-1]) for k in range(4)}
    assert seen == reference
    wide = np.arange(12).reshape(3, 4)
    shapes = {augment_d4(wide[None], wide, rng)[1].shape for _ in range(50)}
    assert shapes == {(3, 4)}  # non-square patches keep their shape
