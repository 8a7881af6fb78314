"""Instance labels of the Cityscapes layout: read from ``*_instanceIds.png``, aligned with the mask through
augmentation, absent for layouts without them, named errors for a partial set."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from segsuite.core.errors import DataError
from segsuite.domains.road_scene.augment import TrainAugment
from segsuite.domains.road_scene.datasets import build_datasets
from segsuite.domains.road_scene.labels import CITYSCAPES_CLASS_NAMES, cityscapes_id_to_train_id
from segsuite.domains.road_scene.synthetic import make_dataset

LUT = cityscapes_id_to_train_id()  # label id -> train id (255 = ignore)
THINGS = {CITYSCAPES_CLASS_NAMES.index(n) for n in ("person", "rider", "car", "truck", "bus", "train", "motorcycle",
                                                     "bicycle")}


def _instance_file(label_path):
    return label_path.with_name(label_path.name.replace("_labelIds", "_instanceIds"))


def _check_aligned(mask: np.ndarray, instances: np.ndarray) -> None:
    """Every instance pixel's mask class is the thing class its id encodes (id // 1000); ignored pixels have none."""
    inside = instances > 0
    assert (instances[mask == 255] == 0).all()
    assert set(np.unique(mask[inside]).tolist()) <= THINGS
    np.testing.assert_array_equal(LUT[instances[inside] // 1000], mask[inside])


def test_val_items_carry_the_instance_ids_of_things(cityscapes_root):
    ds = build_datasets(str(cityscapes_root), crop_size=[32, 48])
    val = ds["val"]
    assert val.meta["has_instances"] is True and json.loads(json.dumps(val.meta)) == val.meta
    for i, (_, label_path) in enumerate(val.files):
        sample = val[i]
        mask, instances = sample["mask"].numpy(), sample["instances"].numpy()
        assert sample["instances"].dtype == torch.int64 and instances.shape == mask.shape
        raw = np.asarray(Image.open(_instance_file(label_path))).astype(np.int64)
        np.testing.assert_array_equal(instances, np.where((raw >= 1000) & (mask != 255), raw, 0))
        assert (instances >= 1000).any()  # every synthetic scene has a car
        _check_aligned(mask, instances)


def test_training_items_keep_instances_aligned_through_scale_crop_and_flip(cityscapes_root):
    train = build_datasets(str(cityscapes_root), crop_size=[48, 64], scale_range=[0.5, 2.0],
                           color_jitter=[0.0, 0.0, 0.0, 0.0])["train"]
    torch.manual_seed(0)
    raw_ids = [set(np.unique(np.asarray(Image.open(_instance_file(lbl))))) for _, lbl in train.files]
    for _ in range(3):
        for i in range(len(train)):
            sample = train[i]
            mask, instances = sample["mask"].numpy(), sample["instances"].numpy()
            assert instances.shape == mask.shape == (48, 64)
            _check_aligned(mask, instances)
            assert set(np.unique(instances[instances > 0]).tolist()) <= raw_ids[i]  # ids kept as they are
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=2)))
    assert batch["instances"].shape == batch["mask"].shape == (2, 48, 64)


def test_augment_moves_instances_exactly_like_the_mask():
    gen = torch.Generator().manual_seed(0)
    blocks = torch.randint(0, 3, (6, 8), generator=gen)  # 0 road, 1 car, 2 person, in 8x8 blocks
    ids = torch.arange(6 * 8).view(6, 8) + torch.tensor([0, 26000, 24000])[blocks]  # one instance per block
    instances = torch.where(blocks > 0, ids, 0).repeat_interleave(8, 0).repeat_interleave(8, 1)  # (48, 64)
    mask = torch.tensor([0, 13, 11])[blocks].repeat_interleave(8, 0).repeat_interleave(8, 1)
    image = torch.rand(3, 48, 64, generator=gen)
    aug = TrainAugment([40, 80], [0.5, 2.0], 1.0, 0.5, [0.0, 0.0, 0.0, 0.0], ignore_index=255)
    padded = 0
    for seed in range(20):
        torch.manual_seed(seed)
        img, m, inst = aug(image, mask, instances)
        torch.manual_seed(seed)
        img2, m2 = aug(image, mask)  # the same draws with or without instances
        assert torch.equal(img, img2) and torch.equal(m, m2)
        assert inst.shape == m.shape == (40, 80) and inst.dtype == torch.int64
        padded += bool((m == 255).any())
        assert (inst[m == 255] == 0).all()  # padding: ignore in the mask, no instance
        inside = inst > 0
        assert torch.equal(torch.tensor([0] * 11 + [24] + [0] + [26])[m[inside]], inst[inside] // 1000)
        assert torch.equal(inst > 0, (m == 11) | (m == 13))
        assert set(inst.unique().tolist()) <= set(instances.unique().tolist())
    assert padded > 2  # scaled below the crop size: padding was exercised


def test_cityscapes_copy_without_instance_files_has_no_instances(tmp_path):
    root = make_dataset(tmp_path / "cs", n_train=1, n_val=1, size=(16, 32), seed=2)
    for path in root.rglob("*_instanceIds.png"):
        path.unlink()
    ds = build_datasets(str(root))
    assert ds["train"].meta["has_instances"] is False
    assert set(ds["train"][0]) == set(ds["val"][0]) == {"image", "mask"}


def test_partial_instance_files_are_named(tmp_path):
    root = make_dataset(tmp_path / "cs", n_train=2, n_val=1, size=(16, 32), seed=2)
    gone = sorted(root.rglob("*_instanceIds.png"))[1]
    gone.unlink()
    with pytest.raises(DataError, match=f"1 of 3 Cityscapes instance id files are missing: .*{gone.name}"):
        build_datasets(str(root))


def test_instance_file_of_another_size_is_named(tmp_path, write_png):
    root = make_dataset(tmp_path / "cs", n_train=1, n_val=1, size=(16, 32), seed=2)
    path = next((root / "gtFine" / "val").rglob("*_instanceIds.png"))
    write_png(path, np.zeros((16, 30), np.uint16))
    with pytest.raises(DataError, match=f"{path.name} are 16x30"):
        build_datasets(str(root))["val"][0]


def test_layouts_without_instances_have_no_key(tmp_path, write_png, kitti_root):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        write_png(tmp_path / "camvid" / split / "a.png", rng.integers(0, 256, (8, 12, 3), np.uint8))
        write_png(tmp_path / "camvid" / f"{split}annot" / "a.png", rng.integers(0, 12, (8, 12)).astype(np.uint8))
    for layout, root in (("camvid", tmp_path / "camvid"), ("kitti", kitti_root)):
        ds = build_datasets(str(root), layout=layout, crop_size=[8, 8])
        assert ds["train"].meta["has_instances"] is False
        assert set(ds["train"][0]) == set(ds["val"][0]) == {"image", "mask"}
