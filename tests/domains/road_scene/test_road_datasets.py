"""Readers on generated fixtures, named errors, augmentation invariants and the synthetic generator."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from segsuite.core.errors import ConfigError, DataError
from segsuite.domains.road_scene.augment import TrainAugment
from segsuite.domains.road_scene.datasets import IMAGENET_MEAN, IMAGENET_STD, build_datasets
from segsuite.domains.road_scene.labels import CAMVID_COLORS, cityscapes_id_to_train_id
from segsuite.domains.road_scene.synthetic import make_dataset, render_scene

NO_JITTER = [0.0, 0.0, 0.0, 0.0]


def _denormalise(image: torch.Tensor) -> np.ndarray:
    """Normalised ``(3, H, W)`` -> ``(H, W, 3)`` in [0, 1]."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image * std + mean).permute(1, 2, 0).numpy()


# ---------------------------------------------------------------------------------------------------------------
# Cityscapes
# ---------------------------------------------------------------------------------------------------------------


def test_cityscapes_val_is_full_resolution_with_train_ids(cityscapes_root):
    ds = build_datasets(str(cityscapes_root), layout="cityscapes", crop_size=[32, 48], train_scale=0.5)
    assert set(ds) == {"train", "val", "test"} and [len(ds[s]) for s in ("train", "val", "test")] == [4, 3, 1]
    image_path, label_path = ds["val"].files[0]
    sample = ds["val"][0]
    assert set(sample) == {"image", "mask", "instances"}  # the synthetic set has *_instanceIds.png
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, 64, 128)
    assert sample["mask"].dtype == torch.int64 and sample["mask"].shape == (64, 128)
    raw_ids = np.asarray(Image.open(label_path))
    np.testing.assert_array_equal(sample["mask"].numpy(), cityscapes_id_to_train_id()[raw_ids])
    assert 255 in sample["mask"]  # the ego-vehicle bonnet is ignored
    photo = np.asarray(Image.open(image_path)) / 255.0
    np.testing.assert_allclose(_denormalise(sample["image"]), photo, atol=1e-5)
    train = ds["train"][0]
    assert train["image"].shape == (3, 32, 48) and train["mask"].shape == (32, 48)


def test_cityscapes_meta_is_json_and_complete(cityscapes_root):
    meta = build_datasets(str(cityscapes_root), crop_size=[32, 32])["train"].meta
    assert json.loads(json.dumps(meta)) == meta
    assert meta["in_channels"] == 3 and meta["num_classes"] == 19 and meta["ignore_index"] == 255
    assert meta["patch_size"] == [32, 32] and meta["layout"] == "cityscapes"
    assert meta["normalization"]["mean"] == IMAGENET_MEAN and meta["normalization"]["std"] == IMAGENET_STD
    assert meta["native_ids"][0] == 7 and meta["native_ids"][18] == 33 and meta["native_void_id"] == 0
    assert len(meta["class_colors"]) == 19 and len(meta["categories"]["class_to_category"]) == 19
    plan = meta["plan"]  # segsuite.core.plan: the crop, the memory budget's batch, class frequencies, a step budget
    assert plan["patch_size"] == [32, 32] and meta["batch_size"] == plan["batch_size"] >= 8
    assert len(plan["class_frequencies"]) == 19 and plan["budget"]["max_steps"] >= 250
    assert build_datasets(str(cityscapes_root), crop_size=[32, 32], batch_size=3)["train"].meta["batch_size"] == 3


def test_dataloader_collates_training_batches(cityscapes_root):
    train = build_datasets(str(cityscapes_root), crop_size=[32, 64])["train"]
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    assert batch["image"].shape == (4, 3, 32, 64) and batch["mask"].shape == (4, 32, 64)


def test_missing_root_and_synthetic_generation(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        build_datasets(str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="kitti"):
        build_datasets(str(tmp_path / "nowhere"), layout="kitti", synthetic_if_missing=True)
    ds = build_datasets(str(tmp_path / "gen"), synthetic_if_missing=True, synthetic_size=[32, 64],
                        synthetic_n_train=2, synthetic_n_val=1, crop_size=[16, 16])
    assert len(ds["train"]) == 2 and len(ds["val"]) == 1 and ds["val"][0]["mask"].shape == (32, 64)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left behind


@pytest.mark.parametrize("kwargs, fragment", [
    ({"layout": "mapillary"}, "layout"),
    ({"crop_size": [0, 8]}, "crop_size"),
    ({"scale_range": [2.0, 1.0]}, "scale_range"),
    ({"ignore_index": 3}, "ignore_index"),
    ({"color_jitter": [0.1, 0.1]}, "color_jitter"),
])
def test_config_errors_name_the_value(cityscapes_root, kwargs, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_datasets(str(cityscapes_root), **kwargs)


def test_errors_name_the_file(tmp_path, write_png):
    root = make_dataset(tmp_path / "cs", n_train=1, n_val=1, size=(16, 32), seed=9)
    image_path = next((root / "leftImg8bit" / "val").rglob("*.png"))
    label_path = next((root / "gtFine" / "val").rglob("*_labelIds.png"))
    write_png(label_path, np.full((16, 32), 40, np.uint8))  # id 40 does not exist
    with pytest.raises(DataError, match=r"label ids \[40\].*") as err:
        build_datasets(str(root))["val"][0]
    assert label_path.name in str(err.value)
    write_png(label_path, np.full((16, 30), 7, np.uint8))  # wrong size
    with pytest.raises(DataError, match="16x32.*16x30") as err:
        build_datasets(str(root))["val"][0]
    assert image_path.name in str(err.value) and label_path.name in str(err.value)
    image_path.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"cannot read image .*{image_path.name}"):
        build_datasets(str(root))["val"][0]
    label_path.unlink()
    with pytest.raises(DataError, match=f"no label for image .*{image_path.name}.*{label_path.name}"):
        build_datasets(str(root))


# ---------------------------------------------------------------------------------------------------------------
# CamVid, KITTI, folder
# ---------------------------------------------------------------------------------------------------------------


def _camvid_index_root(tmp_path, write_png):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i in range(2):
            label = rng.integers(0, 12, size=(12, 16)).astype(np.uint8)  # 0..10 classes, 11 Void
            write_png(tmp_path / split / f"0001TP_{i:06d}.png", rng.integers(0, 256, (12, 16), np.uint8))  # grey
            write_png(tmp_path / f"{split}annot" / f"0001TP_{i:06d}.png", label)
    return tmp_path


def test_camvid_index_labels_with_class_subset(tmp_path, write_png):
    root = _camvid_index_root(tmp_path, write_png)
    ds = build_datasets(str(root), layout="camvid", classes=["Road", "Car", "Sky"])
    assert ds["train"].meta["class_names"] == ["Road", "Car", "Sky"]
    assert ds["train"].meta["native_ids"] == [3, 8, 0] and ds["train"].meta["native_void_id"] == 11
    sample = ds["val"][1]
    assert sample["image"].shape == (3, 12, 16)  # grey replicated
    raw = np.asarray(Image.open(ds["val"].files[1][1]))
    expected = np.select([raw == 3, raw == 8, raw == 0], [0, 1, 2], 255)
    np.testing.assert_array_equal(sample["mask"].numpy(), expected)
    write_png(ds["val"].files[0][1], np.full((12, 16), 12, np.uint8))
    with pytest.raises(DataError, match=r"label ids \[12\]"):
        ds["val"][0]


def test_camvid_colour_labels(tmp_path, write_png):
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[:3] = CAMVID_COLORS["Sky"]
    rgb[3:, :4] = CAMVID_COLORS["Road"]
    rgb[3:, 4:] = (128, 0, 192)  # LaneMkgsDriv: valid CamVid colour outside the 11 classes -> ignore
    photo = np.dstack([np.full((6, 8), 9, np.uint8)] * 3 + [np.full((6, 8), 7, np.uint8)])  # RGBA
    for split in ("train", "val"):
        write_png(tmp_path / split / "Seq05VD_f00000.png", photo)
        write_png(tmp_path / f"{split}_labels" / "Seq05VD_f00000_L.png", rgb)
    ds = build_datasets(str(tmp_path), layout="camvid")
    sample = ds["val"][0]
    np.testing.assert_allclose(_denormalise(sample["image"]), 9 / 255, atol=1e-5)  # alpha dropped
    mask = sample["mask"].numpy()
    assert (mask[:3] == 0).all() and (mask[3:, :4] == 3).all() and (mask[3:, 4:] == 255).all()
    rgb[0, 0] = (1, 2, 3)
    write_png(tmp_path / "val_labels" / "Seq05VD_f00000_L.png", rgb)
    with pytest.raises(DataError, match=r"Seq05VD_f00000_L.png.*\(1, 2, 3\)"):
        ds["val"][0]


def test_kitti_reader_binary_road(kitti_root):
    ds = build_datasets(str(kitti_root), layout="kitti", val_fraction=0.4, seed=1)
    assert len(ds["train"]) == 3 and len(ds["val"]) == 2 and "test" not in ds
    names = {p.name for s in ds.values() for p, _ in s.files}
    assert len(names) == 5
    for image_path, label_path in ds["train"].files:
        assert label_path.name == image_path.name.replace("_", "_road_", 1)
    mask = ds["val"][0]["mask"].numpy()
    assert mask.shape == (24, 40)
    assert (mask[:3] == 255).all() and (mask[12:, 8:32] == 1).all() and (mask[3:12] == 0).all()
    meta = ds["val"].meta
    assert meta["num_classes"] == 2 and meta["label_format"] == "kitti_road"
    again = build_datasets(str(kitti_root), layout="kitti", val_fraction=0.4, seed=1)
    assert again["val"].files == ds["val"].files  # the split is reproducible


def test_kitti_missing_road_gt_is_named(kitti_root):
    gt = kitti_root / "training" / "gt_image_2" / "uu_road_000002.png"
    gt.unlink()
    with pytest.raises(DataError, match="uu_000002.png.*uu_road_000002.png"):
        build_datasets(str(kitti_root), layout="kitti")


def test_folder_layout_with_class_map(tmp_path, write_png):
    (tmp_path / "classes.csv").write_text("id,name,r,g,b\n10,road,128,64,128\n20,car,0,0,142\n")
    for split in ("train", "val"):
        mask = np.full((8, 10), 10, np.uint8)
        mask[4:, 5:] = 20
        mask[0, 0] = 255
        write_png(tmp_path / "images" / split / "a.jpg", np.full((8, 10, 3), 128, np.uint8))
        write_png(tmp_path / "masks" / split / "a.png", mask)
    ds = build_datasets(str(tmp_path), layout="folder", crop_size=[4, 4], scale_range=[1.0, 1.0])
    m = ds["val"][0]["mask"].numpy()
    assert m[0, 0] == 255 and m[1, 1] == 0 and m[7, 9] == 1
    assert ds["val"].meta["native_ids"] == [10, 20] and ds["val"].meta["class_names"] == ["road", "car"]
    assert ds["train"][0]["image"].shape == (3, 4, 4)
    write_png(tmp_path / "masks" / "val" / "a.png", np.full((8, 10), 30, np.uint8))
    with pytest.raises(DataError, match=r"a.png: label ids \[30\]"):
        ds["val"][0]


def test_folder_flat_layout_is_split_by_seed(tmp_path, write_png):
    (tmp_path / "classes.json").write_text(json.dumps([{"id": 0, "name": "bg", "color": [0, 0, 0]},
                                                       {"id": 1, "name": "road", "color": [1, 1, 1]}]))
    for i in range(10):
        write_png(tmp_path / "images" / f"{i}.png", np.zeros((4, 4, 3), np.uint8))
        write_png(tmp_path / "masks" / f"{i}.png", np.zeros((4, 4), np.uint8))
    ds = build_datasets(str(tmp_path), layout="folder", val_fraction=0.3)
    assert len(ds["train"]) == 7 and len(ds["val"]) == 3
    assert not {f for f, _ in ds["train"].files} & {f for f, _ in ds["val"].files}


# ---------------------------------------------------------------------------------------------------------------
# Augmentation
# ---------------------------------------------------------------------------------------------------------------

PALETTE = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.1, 0.5], [0.4, 0.8, 0.2], [0.6, 0.6, 0.9]])


def _blocky_pair(h=48, w=64):
    """Mask of 8x8 blocks of classes 0..3 (asymmetric) and an image coloured by class ``(3, H, W)``."""
    gen = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 4, (h // 8, w // 8), generator=gen).repeat_interleave(8, 0).repeat_interleave(8, 1)
    return PALETTE[mask].permute(2, 0, 1).contiguous(), mask


def test_augmentation_keeps_image_and_mask_aligned_exactly_without_scaling():
    image, mask = _blocky_pair()
    aug = TrainAugment([40, 80], [1.0, 1.0], 1.0, 0.5, NO_JITTER, ignore_index=255)
    torch.manual_seed(0)
    for _ in range(20):
        img, m = aug(image, mask)
        assert img.shape == (3, 40, 80) and m.shape == (40, 80) and m.dtype == torch.int64
        valid = m != 255
        assert (~valid).any()  # width 64 < 80: padded, and the padding is ignored
        assert torch.equal(img.permute(1, 2, 0)[valid], PALETTE[m[valid]])
        assert torch.all(img[:, ~valid] == 0)


def test_augmentation_with_scaling_stays_aligned_inside_regions():
    image, mask = _blocky_pair()
    aug = TrainAugment([32, 32], [0.5, 2.0], 1.0, 0.5, NO_JITTER, ignore_index=255)
    torch.manual_seed(1)
    for _ in range(20):
        img, m = aug(image, mask)
        # pixels whose 3x3 neighbourhood has one class (crop-border pixels excluded: their neighbours were cut off)
        padded = torch.nn.functional.pad(m[None, None].float(), (1, 1, 1, 1), value=-1.0)
        interior = (torch.nn.functional.max_pool2d(padded, 3, 1) == -torch.nn.functional.max_pool2d(-padded, 3, 1))
        interior = interior[0, 0] & (m != 255)
        assert interior.any()
        err = (img.permute(1, 2, 0)[interior] - PALETTE[m[interior]]).abs().max()
        assert err < 1e-4


def test_augmentation_flips_horizontally_but_never_vertically():
    h, w = 16, 16
    mask = torch.zeros(h, w, dtype=torch.int64)
    mask[: h // 2] = 1  # top half class 1 (a vertical flip would put it at the bottom)
    mask[:, : w // 4] += 2  # left band marks orientation
    image = PALETTE[mask].permute(2, 0, 1).contiguous()
    aug = TrainAugment([h, w], [1.0, 1.0], 1.0, 0.5, [0.3, 0.3, 0.3, 0.05], ignore_index=255)
    torch.manual_seed(2)
    flipped = 0
    for _ in range(40):
        img, m = aug(image, mask)
        assert (m[: h // 2] % 2 == 1).all() and (m[h // 2:] % 2 == 0).all()  # top stays top
        flipped += bool(m[0, -1] >= 2)
        assert torch.equal(m, mask) or torch.equal(m, mask.flip(1))  # colour jitter leaves the mask alone
    assert 5 < flipped < 35


def test_train_scale_reduces_training_resolution_only(cityscapes_root):
    ds = build_datasets(str(cityscapes_root), crop_size=None, train_scale=0.5, scale_range=[1.0, 1.0])
    assert ds["train"][0]["mask"].shape == (32, 64)
    assert ds["val"][0]["mask"].shape == (64, 128)
    assert ds["train"].meta["train_scale"] == 0.5 and ds["train"].meta["patch_size"] == [64, 128]


# ---------------------------------------------------------------------------------------------------------------
# Synthetic generator
# ---------------------------------------------------------------------------------------------------------------


def test_synthetic_scene_is_deterministic_and_uses_official_ids():
    a, b = render_scene((48, 96), 7), render_scene((48, 96), 7)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], render_scene((48, 96), 8)[0])
    photo, ids, instances = a
    assert photo.shape == (48, 96, 3) and ids.shape == instances.shape == (48, 96)
    assert set(np.unique(ids)) <= {1, 7, 8, 11, 17, 20, 21, 22, 23, 24, 26}
    assert {7, 23, 26} <= set(np.unique(ids))  # road, sky and at least one car every time
    has_instances = instances >= 1000
    np.testing.assert_array_equal(instances[has_instances] // 1000, ids[has_instances])
    np.testing.assert_array_equal(instances[~has_instances], ids[~has_instances])


def test_make_dataset_layout_and_refuses_overwrite(tmp_path):
    root = make_dataset(tmp_path / "s", n_train=1, n_val=1, size=(16, 24), seed=0)
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    assert "leftImg8bit/train/synthtrain/synthtrain_000000_000019_leftImg8bit.png" in names
    assert "gtFine/val/synthval/synthval_000000_000019_gtFine_labelIds.png" in names
    assert len(names) == 8  # image, labelIds, instanceIds, color per scene
    with pytest.raises(DataError, match="already exists"):
        make_dataset(root, n_train=1, n_val=0, size=(16, 24), seed=0)
