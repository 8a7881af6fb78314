from pathlib import Path

import hydra.utils
import pytest
import torch
from omegaconf import OmegaConf

LOSS_CONFIGS = sorted(p.stem for p in (Path(__file__).parents[2] / "conf" / "loss").glob("*.yaml"))


def _loss(name: str, ignore_index: int = 255):
    cfg = OmegaConf.load(Path(__file__).parents[2] / "conf" / "loss" / f"{name}.yaml")
    cfg = OmegaConf.merge({"domain": {"ignore_index": ignore_index}}, {"loss": cfg})
    return hydra.utils.instantiate(cfg.loss)


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_ignored_pixels_change_neither_value_nor_gradient(name):
    torch.manual_seed(0)
    loss = _loss(name)
    target = torch.randint(0, 3, (2, 9, 11))
    target[:, :3] = 255  # the first rows are unlabeled
    logits = torch.randn(2, 3, 9, 11, requires_grad=True)
    value = loss(logits, target)
    value.backward()
    assert torch.isfinite(value)
    assert logits.grad[:, :, :3].abs().max() == 0

    other = logits.detach().clone()
    other[:, :, :3] = torch.randn_like(other[:, :, :3]) * 10
    torch.testing.assert_close(loss(other, target), value.detach())


@pytest.mark.parametrize("name", LOSS_CONFIGS)
def test_perfect_prediction_beats_wrong_one(name):
    loss = _loss(name)
    target = torch.randint(0, 3, (2, 8, 8))
    good = torch.nn.functional.one_hot(target, 3).permute(0, 3, 1, 2).float() * 20
    bad = torch.nn.functional.one_hot((target + 1) % 3, 3).permute(0, 3, 1, 2).float() * 20
    assert loss(good, target) < loss(bad, target)


def test_class_weights_scale_cross_entropy():
    from segsuite.core.losses import CrossEntropyLoss

    target = torch.zeros(1, 4, 4, dtype=torch.long)
    logits = torch.randn(1, 2, 4, 4)
    plain = CrossEntropyLoss()(logits, target)
    # With one class present, the weighted mean equals the plain mean; the weight shows in the sum.
    summed = torch.nn.functional.cross_entropy(logits, target, weight=torch.tensor([3.0, 1.0]), reduction="sum")
    torch.testing.assert_close(summed, 3 * plain * 16)
    assert CrossEntropyLoss(class_weights=[3.0, 1.0]).weight.tolist() == [3.0, 1.0]


def test_weighted_sum_combines():
    from segsuite.core.losses import CrossEntropyLoss, WeightedSum

    ce = CrossEntropyLoss()
    combo = WeightedSum({"a": ce, "b": ce}, {"a": 0.25, "b": 2.0})
    logits, target = torch.randn(1, 3, 5, 5), torch.randint(0, 3, (1, 5, 5))
    torch.testing.assert_close(combo(logits, target), 2.25 * ce(logits, target))
    with pytest.raises(ValueError, match="unknown losses"):
        WeightedSum({"a": ce}, {"c": 1.0})


def test_cross_entropy_weight_map_weighs_pixels_and_skips_ignored():
    from segsuite.core.losses import CrossEntropyLoss, WeightedSum

    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 5)
    target = torch.randint(0, 3, (2, 4, 5))
    target[0, 0, 0] = 255
    ce = CrossEntropyLoss(ignore_index=255)
    ones = torch.ones(2, 4, 5)
    assert torch.allclose(ce(logits, target, weight_map=ones), ce(logits, target))
    w = torch.rand(2, 4, 5) * 5
    per_pixel = torch.nn.functional.cross_entropy(logits, target, ignore_index=255, reduction="none")
    assert torch.allclose(ce(logits, target, weight_map=w), (per_pixel * w).sum() / 39)
    dice_ce = WeightedSum({"ce": CrossEntropyLoss(), "other": CrossEntropyLoss()}, {"other": 0.5})
    assert dice_ce.takes_weight_map
    assert torch.allclose(dice_ce(logits, target, weight_map=w), 1.5 * ce(logits, target, weight_map=w))
