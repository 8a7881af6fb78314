"""A restored learning-rate schedule is refitted to the run's length."""

import math

import pytest
import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, OneCycleLR

from segsuite.core.errors import ConfigError
from segsuite.core.schedules import refit, settings


def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=1.0)


def _restored_cosine(epochs_done: int, t_max: int) -> CosineAnnealingLR:
    """A cosine schedule of ``t_max`` epochs after ``epochs_done`` epochs, as a resume restores it."""
    old = _optimizer()
    scheduler = CosineAnnealingLR(old, T_max=t_max)
    for _ in range(epochs_done):
        old.step()
        scheduler.step()
    optimizer = _optimizer()
    optimizer.load_state_dict(old.state_dict())
    restored = CosineAnnealingLR(optimizer, T_max=t_max)
    restored.load_state_dict(scheduler.state_dict())
    return restored


def test_a_longer_run_continues_the_longer_cosine():
    scheduler = _restored_cosine(epochs_done=2, t_max=2)
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(0.0)  # the old schedule has ended
    planned = settings(CosineAnnealingLR(_optimizer(), T_max=4))
    assert refit(scheduler, planned) == {"T_max": (2, 4)}
    rates = [scheduler.optimizer.param_groups[0]["lr"]]
    scheduler.optimizer.step()
    scheduler.step()
    rates.append(scheduler.optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([(1 + math.cos(math.pi * e / 4)) / 2 for e in (2, 3)])  # 0.5, 0.146
    assert refit(scheduler, planned) == {}  # nothing left to change


def test_a_schedule_without_closed_form_is_refused():
    old = OneCycleLR(_optimizer(), max_lr=1.0, total_steps=10)
    with pytest.raises(ConfigError, match=r"total_steps 10 -> 20.*OneCycleLR cannot recompute.*trainer.max_epochs"):
        refit(old, settings(OneCycleLR(_optimizer(), max_lr=1.0, total_steps=20)))
