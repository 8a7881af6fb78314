"""nnU-Net's U-Net layout (segsuite.core.models.topology), the DynUNet factory and 3D batches through the task."""

from __future__ import annotations

import pytest
import torch

from segsuite.core.errors import ConfigError
from segsuite.core.losses import CrossEntropyLoss, WeightedSum
from segsuite.core.models import create_dynunet, topology
from segsuite.core.task import SegmentationTask


def test_isotropic_layout_pools_every_axis_down_to_four_voxels():
    layout = topology([1.0, 1.0, 1.0], [128, 128, 128])
    assert layout.strides == [[1, 1, 1]] + [[2, 2, 2]] * 5 and layout.divisor == [32, 32, 32]
    assert layout.kernels == [[3, 3, 3]] * 6 and layout.patch_size == [128, 128, 128]


def test_thick_slices_are_pooled_and_convolved_only_once_the_others_catch_up():
    layout = topology([0.8, 0.8, 5.0], [320, 320, 20])
    assert layout.strides[1] == [2, 2, 1] and layout.strides[2] == [2, 2, 1]  # z waits: 5 / 1.6 >= 2
    assert layout.strides[3] == [2, 2, 2]  # 3.2 vs 5: within a factor 2
    assert layout.kernels[0] == [3, 3, 1] and layout.kernels[-1] == [3, 3, 3]
    assert layout.divisor[2] < layout.divisor[0]


def test_patch_is_rounded_up_to_the_divisor():
    layout = topology([1.0, 1.0, 1.0], [100, 70, 33])
    assert all(p % d == 0 and p >= q for p, d, q in zip(layout.patch_size, layout.divisor, [100, 70, 33]))


@pytest.mark.parametrize("size", [(16, 16, 8), (21, 13, 7), (5, 9, 3)])
def test_forward_keeps_any_size(size):
    net = create_dynunet(3, 5, patch_size=[16, 16, 8], spacing=[1.5, 1.5, 3.0], base_filters=4).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def test_two_dimensional_variant():
    net = create_dynunet(2, 4, patch_size=[32, 32], spacing=[1.0, 1.0], spatial_dims=2, base_filters=4).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 2, 37, 30)).shape == (1, 4, 37, 30)


def test_missing_plan_values_are_a_config_error():
    with pytest.raises(ConfigError, match="patch_size and model.spacing are null"):
        create_dynunet(1, 2, patch_size=None, spacing=None)
    with pytest.raises(ConfigError, match="one patch_size and spacing value per axis"):
        create_dynunet(1, 2, patch_size=[16, 16], spacing=[1, 1, 1])
    with pytest.raises(ConfigError, match="patch_size \\[8, 8, 8\\] leaves room for 1 down-sampling"):
        create_dynunet(1, 2, patch_size=[8, 8, 8], spacing=[1, 1, 1])


@pytest.mark.parametrize("dice", [False, True])
def test_task_steps_on_volumes(dice):
    """5D batches (B, C, D, H, W) with masks (B, D, H, W): loss, ignore index, metrics, one optimiser step."""
    from segmentation_models_pytorch.losses import DiceLoss

    ce = CrossEntropyLoss(ignore_index=255)
    loss = WeightedSum({"ce": ce, "dice": DiceLoss("multiclass", ignore_index=255)}) if dice else ce
    model = {"_target_": "segsuite.core.models.create_dynunet", "in_channels": 2, "classes": 3, "patch_size": [16, 16,
                                                                                                               16],
             "spacing": [1, 1, 1], "base_filters": 4}
    task = SegmentationTask(model=model, num_classes=3, loss=loss, optimizer=lambda p: torch.optim.SGD(p, lr=0.1))
    masks = torch.randint(0, 3, (2, 8, 8, 8))
    masks[:, 0] = 255
    batch = {"image": torch.randn(2, 2, 8, 8, 8), "mask": masks}
    task.log = lambda *args, **kwargs: None  # no trainer attached
    value = task.model_step(batch, "train")
    value.backward()
    assert torch.isfinite(value)
    confmat = task.metrics["train_metrics"].compute()["confmat"]
    assert int(confmat.sum()) == 2 * 7 * 8 * 8  # the ignored slab is not counted
