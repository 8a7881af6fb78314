"""The task trains the border channel and weights its class loss per pixel when given border weighting."""

import pytest
import torch
from segmentation_models_pytorch.losses import DiceLoss

from segsuite.core.errors import ConfigError
from segsuite.core.instances import InstanceTargets
from segsuite.core.losses import CrossEntropyLoss
from segsuite.core.task import SegmentationTask

MODEL = {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 3, "kernel_size": 1}  # 2 classes + border


def task(loss=None) -> SegmentationTask:
    settings = InstanceTargets(things=["building"]).describe()
    t = SegmentationTask(MODEL, num_classes=2, class_names=["ground", "building"], loss=loss or CrossEntropyLoss(),
                         instances=settings)
    t.log = lambda *a, **k: None  # no trainer attached
    return t


def batch(weight: float = 1.0) -> dict:
    torch.manual_seed(0)
    mask = torch.randint(0, 2, (2, 8, 8))
    mask[0, 0] = 255
    return {"image": torch.randn(2, 3, 8, 8), "mask": mask, "weight": torch.full((2, 8, 8), weight),
            "border": (torch.rand(2, 8, 8) > 0.9).float()}


def test_border_channel_is_trained_and_weights_scale_the_class_loss():
    t = task()
    assert t.out_channels == 3 and t.border_channel
    b = batch()
    loss = t.model_step(b, "train")
    loss.backward()
    grad = t.net.weight.grad[:, :, 0, 0]
    assert grad[2].abs().sum() > 0  # the border logit gets a gradient
    with torch.no_grad():
        logits = t.net(b["image"])
        class_loss = CrossEntropyLoss()(logits[:, :2], b["mask"])
        border_loss = t.border_loss(logits[:, 2], b["border"], b["mask"])
        assert torch.allclose(loss, class_loss + border_loss)
        doubled = t.model_step(batch(weight=2.0), "val")
        assert torch.allclose(doubled, 2 * class_loss + border_loss)


def test_a_loss_without_pixel_weights_is_refused():
    with pytest.raises(ConfigError, match="loss=ce or loss=dice_ce"):
        task(DiceLoss(mode="multiclass"))
