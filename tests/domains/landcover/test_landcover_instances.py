"""Instance labels: the synthetic instance raster (rows of terraced houses 1 px apart) and dataset items that carry
"instances" aligned with the mask and image through augmentation."""

import numpy as np
import pytest
import rasterio
import torch
from scipy import ndimage

from segsuite.core.errors import DataError
from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.synthetic import BUILDING, make_dataset, make_scene


def _one_px_neighbours(instances: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of different instance ids with exactly one 0 pixel between them, along rows or columns."""
    pairs = set()
    for a, gap, b in (
        (instances[:, :-2], instances[:, 1:-1], instances[:, 2:]),
        (instances[:-2], instances[1:-1], instances[2:]),
    ):
        hit = (a > 0) & (b > 0) & (gap == 0) & (a != b)
        pairs |= {(int(x), int(y)) for x, y in zip(a[hit], b[hit], strict=True)}
    return pairs


def _longest_chain(pairs: set[tuple[int, int]]) -> int:
    """Size of the largest group of instances linked by 1 px gaps."""
    parent: dict[int, int] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        parent[root(a)] = root(b)
    sizes = np.bincount([root(x) for x in parent]) if parent else np.zeros(1, int)
    return int(sizes.max())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_synthetic_instances_are_the_buildings_as_separate_rectangles_in_rows(tmp_path, seed):
    img, lbl = make_scene(tmp_path / "i.tif", tmp_path / "l.tif", 96, 96, seed=seed, path_instances=tmp_path / "n.tif")
    with rasterio.open(img) as src, rasterio.open(lbl) as lab, rasterio.open(tmp_path / "n.tif") as ins:
        assert (ins.crs, ins.transform, ins.shape) == (lab.crs, lab.transform, lab.shape)
        assert ins.dtypes[0] == "uint32" and ins.nodata in (None, 0) and ins.count == 1
        image, labels, instances = src.read(1).astype(float), lab.read(1), ins.read(1)
    np.testing.assert_array_equal(labels == BUILDING, instances > 0)  # the building class is their union
    assert (instances[labels == 255] == 0).all()
    ids = np.unique(instances[instances > 0])
    assert len(ids) >= 6
    for i, box in enumerate(ndimage.find_objects(instances), start=1):
        if box is not None:  # each instance is a filled rectangle
            assert (instances[box] == i).all()
    grown = ndimage.grey_dilation(instances, footprint=ndimage.generate_binary_structure(2, 1))
    assert (grown[instances > 0] == instances[instances > 0]).all()  # no two buildings touch (4-neighbours)
    pairs = _one_px_neighbours(instances)
    assert _longest_chain(pairs) >= 3  # a row of at least 3 houses, 1 px apart
    gap_labels = set()
    for a, gap, b in (
        (instances[:, :-2], labels[:, 1:-1], instances[:, 2:]),
        (instances[:-2], labels[1:-1], instances[2:]),
    ):
        gap_labels |= set(gap[(a > 0) & (b > 0) & (a != b)].tolist())
    assert gap_labels and gap_labels <= {0, 1, 2, 3}  # the gap is ground, not building or road
    tones = np.array([image[instances == i].mean() for i in ids])
    assert tones.max() / tones.min() > 1.1  # roofs differ in tone


def test_synthetic_instances_are_deterministic(tmp_path):
    make_dataset(tmp_path / "a", n_scenes=1, size=64, seed=5)
    make_dataset(tmp_path / "b", n_scenes=1, size=64, seed=5)
    read = lambda root: rasterio.open(root / "instances" / "scene_000.tif").read(1)  # noqa: E731
    np.testing.assert_array_equal(read(tmp_path / "a"), read(tmp_path / "b"))
    assert read(tmp_path / "a").max() > 0


def _write(path, data, nodata=None):
    """A tiny north-up UTM GeoTIFF of ``data`` ``(C, H, W)`` or ``(H, W)``."""
    data = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0],
                   dtype=data.dtype.name, crs="EPSG:32631", nodata=nodata,
                   transform=rasterio.Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 5_000_000.0))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def _instance_root(root, size=24):
    """Two scenes "a", "b" of ``size`` px: a row of three houses 1 px apart and one more building; band 1 of the
    image encodes the instance id (10 + 5 id), band 2 the pixel position; rows 0-1 of the labels are nodata."""
    instances = np.zeros((size, size), np.uint32)
    instances[3:9, 2:6], instances[3:9, 7:10], instances[3:9, 11:16] = 7, 3, 12  # ids need not be consecutive
    instances[14:20, 14:20] = 40
    instances[0:3, 18:22] = 5  # partly under the label nodata rows
    labels = np.where(instances > 0, BUILDING, 1).astype(np.uint8)
    labels[:2] = 255
    position = np.arange(1, size * size + 1, dtype=np.uint16).reshape(size, size)
    image = np.stack([10 + 5 * instances.astype(np.uint16), position])
    for stem in ("a", "b"):
        _write(root / "images" / f"{stem}.tif", image)
        _write(root / "labels" / f"{stem}.tif", labels, nodata=255)
        _write(root / "instances" / f"{stem}.tif", instances)
    return instances, labels


def _check_aligned(sample, meta):
    """The mask, the instances and the image (band 1 = 10 + 5 id) agree pixel by pixel."""
    mask, instances = sample["mask"].numpy(), sample["instances"].numpy()
    mean, std = (np.array(meta["normalization"][k])[:, None, None] for k in ("mean", "std"))
    raw = np.rint(sample["image"].numpy() * std + mean)  # (C, H, W) back to the file's values
    labelled = mask != 255
    assert (instances[~labelled] == 0).all()
    np.testing.assert_array_equal(mask[labelled] == BUILDING, instances[labelled] > 0)
    np.testing.assert_array_equal(raw[0][labelled], 10 + 5 * instances[labelled])


@pytest.mark.parametrize("patch", [16, (8, 16)])
def test_training_items_keep_instances_aligned_through_augmentation(tmp_path, patch):
    expected, _ = _instance_root(tmp_path / "r")
    ds = build_datasets(str(tmp_path / "r"), patch_size=patch, val_stems=["b"], samples_per_epoch=40,
                        stats_max_pixels=10**6)
    train = ds["train"]
    assert train.meta["has_instances"] is True
    torch.manual_seed(0)
    seen, turned = set(), 0
    for i in range(len(train)):
        sample = train[i]
        assert sample["instances"].dtype == torch.int64 and sample["instances"].shape == sample["mask"].shape
        _check_aligned(sample, train.meta)
        seen |= set(sample["instances"].unique().tolist())
        mean, std = train.meta["normalization"]["mean"][1], train.meta["normalization"]["std"][1]
        pos = np.rint(sample["image"][1].numpy() * std + mean)
        turned += bool(pos[0, 0] > pos[-1, -1])  # the position band runs backwards: flipped or rotated
    assert seen <= {0, 3, 5, 7, 12, 40} and len(seen) >= 4
    assert 0 < turned < len(train)


def test_grid_items_carry_the_instance_raster_once(tmp_path):
    expected, labels = _instance_root(tmp_path / "r")
    ds = build_datasets(str(tmp_path / "r"), patch_size=16, val_stems=["b"], augment=False)
    counts = np.zeros(expected.max() + 1, int)
    for i in range(len(ds["val"])):
        sample = ds["val"][i]
        _check_aligned(sample, ds["val"].meta)
        counts += np.bincount(sample["instances"].numpy().ravel(), minlength=len(counts))
    truth = np.where(labels == 255, 0, expected)
    np.testing.assert_array_equal(counts[1:], np.bincount(truth.ravel(), minlength=len(counts))[1:])


def test_without_instance_folder_there_is_no_instances_key(tmp_path):
    _instance_root(tmp_path / "r")
    for path in (tmp_path / "r" / "instances").iterdir():
        path.unlink()
    (tmp_path / "r" / "instances").rmdir()
    ds = build_datasets(str(tmp_path / "r"), patch_size=16, val_stems=["b"], samples_per_epoch=2)
    assert ds["train"].meta["has_instances"] is False and ds["val"].meta["has_instances"] is False
    assert set(ds["train"][0]) == {"image", "mask"} and set(ds["val"][0]) == {"image", "mask"}


def test_missing_or_mismatched_instance_raster_is_named(tmp_path):
    _instance_root(tmp_path / "r")
    missing = tmp_path / "r" / "instances" / "b.tif"
    missing.unlink()
    with pytest.raises(DataError, match=r"instance raster for image\(s\) b\.tif"):
        build_datasets(str(tmp_path / "r"), patch_size=16, val_stems=["b"])
    _write(missing, np.zeros((24, 20), np.uint32))  # wrong width
    with pytest.raises(DataError, match=r"instance raster .*b\.tif.*width x height"):
        build_datasets(str(tmp_path / "r"), patch_size=16, val_stems=["b"])
