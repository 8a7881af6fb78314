"""A 3D checkpoint (``spatial_dims`` 3) predicts through the pipeline: one volume source tiled by the training patch
with half a patch of overlap, batches capped at the plan's, a voxel-wise model reproduced exactly on the input's
grid, mirror TTA over the axis combinations, tile values checked, and the predict entry point with tta and amp (an
untrained tiny DynUNet checkpoint).

An untrained voxel-wise (1x1x1) 3D convolution stands in for the network where outputs are compared (fast, and
independent of tiling); ``test_mri_cross_resolution.py`` trains a real 3D U-Net.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segsuite.core.contracts import DataMeta, Item, Job, ModelInfo
from segsuite.core.errors import ConfigError
from segsuite.core.inference import InferenceOptions, TilePredictor
from segsuite.core.pipeline import predict_item
from segsuite.core.task import SegmentationTask
from segsuite.domains.mri_dixon.dataset import build_datasets
from segsuite.domains.mri_dixon.inputs import check_tta_flips
from segsuite.domains.mri_dixon.io import read_volume
from segsuite.domains.mri_dixon.phantom import CHANNELS
from segsuite.domains.mri_dixon.reader import DixonReader, volume_options
from tests.domains.mri_dixon.test_mri_predict import _run_predict

PATCH = [16, 16, 8]


@pytest.fixture(scope="module")
def meta3d(phantom_root) -> dict:
    """The phantom's real 3D training meta (plan, patch 16 x 16 x 8, batch size from the plan)."""
    return build_datasets(str(phantom_root), patch_size=PATCH, spatial_dims=3)["train"].meta


class Recording(torch.nn.Module):
    """A fixed 1x1x1 convolution that records the shape of every batch."""

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(channels, classes, 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.conv(x)


def _job(meta: dict, net: torch.nn.Module, tile=None, overlap=(0, 0), batch_size: int = 16) -> Job:
    model = ModelInfo(TilePredictor(net, "cpu"), DataMeta.from_dict(meta), meta["num_classes"], False)
    return Job(model, options=InferenceOptions(tile, overlap, batch_size))


def test_volume_is_tiled_by_the_patch_and_equals_the_model(meta3d, phantom_root):
    job = _job(meta3d, Recording(meta3d["in_channels"], meta3d["num_classes"]))
    net = job.model.predictor.model  # the network the predictor runs: its own copy, in eval mode
    files = {n: phantom_root / "imagesTr" / f"phantom_000_{i:04d}.nii.gz" for i, n in enumerate(CHANNELS)}
    opened = DixonReader().open(Item("phantom_000", files), job)
    assert len(opened.sources) == 1 and opened.sources[0].shape == opened.case.image.shape[1:] == (32, 32, 12)
    assert opened.options == InferenceOptions(tuple(PATCH), (8, 8, 4), min(16, meta3d["batch_size"]))
    prediction = next(predict_item(opened, job))
    # 3 x 3 x 2 boxes of the patch (the last ones shifted inward), in batches of the plan's size
    assert {s[2:] for s in net.shapes} == {tuple(PATCH)} and sum(s[0] for s in net.shapes) == 18
    assert max(s[0] for s in net.shapes) == opened.options.batch_size
    with torch.inference_mode():
        expected = net.conv(torch.from_numpy(opened.case.image)[None])[0].argmax(0).numpy()  # (X, Y, Z) RAS+
    np.testing.assert_array_equal(prediction.classes, opened.case.to_original(expected))
    assert prediction.logits.shape[1:] == opened.case.reference.shape


def test_volume_options_default_to_the_patch_and_let_the_user_win(meta3d):
    plan_batch = meta3d["batch_size"]
    assert volume_options(None, meta3d) == InferenceOptions((16, 16, 8), (8, 8, 4), 1)
    assert volume_options(InferenceOptions(None, (0, 0), 16), meta3d).batch_size == min(16, plan_batch)
    assert volume_options(InferenceOptions(None, (4, 4, 2), 1), meta3d).overlap == (4, 4, 2)
    given = InferenceOptions((24, 24, 12), (6, 6, 0), 1, "cosine")
    assert volume_options(given, meta3d) == given


def test_tile_values_must_fit_the_model(meta3d):
    net = Recording(meta3d["in_channels"], meta3d["num_classes"])
    with pytest.raises(ConfigError, match=r"tile=\[32, 32\]: a 3D model takes \[x, y, z\]"):
        DixonReader().find("unused", _job(meta3d, net, tile=(32, 32)))
    meta2d = {**meta3d, "spatial_dims": 2}
    with pytest.raises(ConfigError, match=r"tile=\[16, 16, 8\]: a 2D model takes \[h, w\]"):
        DixonReader().find("unused", _job(meta2d, net, tile=(16, 16, 8), overlap=(0, 0, 0)))


@pytest.mark.parametrize("labels,expected", [
    ({"background": 0, "kidneys": 1}, [(-3,), (-2,), (-1,), (-3, -2), (-3, -1), (-2, -1), (-3, -2, -1)]),
    ({"background": 0, "kidney_left": 1, "kidney_right": 2}, [(-2,), (-1,), (-2, -1)]),  # no left-right mirror
])
def test_tta_of_a_3d_model_mirrors_every_axis_combination(meta3d, labels, expected):
    predictor = TilePredictor(torch.nn.Identity(), device="cpu", tta_flips=[-1])
    check_tta_flips(predictor, {**meta3d, "labels": labels})
    assert predictor.tta_flips == expected
    off = TilePredictor(torch.nn.Identity(), device="cpu")
    check_tta_flips(off, {**meta3d, "labels": labels})
    assert off.tta_flips == []  # tta=false stays off


def test_predict_entry_point_with_tta_and_amp_keeps_the_geometry(meta3d, phantom_root, tmp_path, capsys):
    torch.manual_seed(0)
    model = {"_target_": "segsuite.core.models.create_dynunet", "in_channels": meta3d["in_channels"],
             "classes": meta3d["num_classes"], "patch_size": PATCH, "spacing": meta3d["target_spacing"],
             "base_filters": 4}
    task = SegmentationTask(model=model, num_classes=meta3d["num_classes"], ignore_index=meta3d["ignore_index"],
                            class_names=meta3d["class_names"], data_meta=meta3d, domain="mri_dixon")
    checkpoint = tmp_path / "conv3d.ckpt"
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, checkpoint)
    case = phantom_root / "imagesTr" / "phantom_001_000?.nii.gz"
    outputs = {}
    for name, extra in {"plain": [], "tta_amp": ["tta=true", "amp=true"]}.items():
        code, err = _run_predict(checkpoint, f"'{case}'", tmp_path / f"{name}.nii.gz", capsys, *extra)
        assert code == 0, err
        outputs[name] = read_volume(tmp_path / f"{name}.nii.gz")
    label = read_volume(phantom_root / "labelsTr" / "phantom_001.nii.gz")
    for volume in outputs.values():
        assert volume.shape == label.shape and np.array_equal(volume.affine, label.affine)
        assert set(np.unique(volume.array)) <= set(range(meta3d["num_classes"]))
