"""Learning-rate schedules that follow the run's length when a run is resumed with another ``trainer.max_epochs``.

Lightning restores a scheduler's whole state from the checkpoint, its length (``T_max``, ``total_iters``) included, so
a cosine schedule resumed with more epochs would stay at the old end: learning rate 0. :func:`refit` gives the
restored scheduler the settings of the schedule built for this run and sets the learning rate that schedule has at
the current epoch (as if the run had been planned that long from the start).
"""

from __future__ import annotations

import logging
from typing import Any

from torch.optim.lr_scheduler import LRScheduler

from segsuite.core.errors import ConfigError

log = logging.getLogger(__name__)

# Where a scheduler is in its schedule, as opposed to the schedule's settings.
RUN_STATE = {"last_epoch", "_step_count", "_last_lr", "_is_initial", "_get_lr_called_within_step", "base_lrs",
             "verbose", "optimizer"}


def settings(scheduler: LRScheduler) -> dict[str, Any]:
    """The schedule's settings (length, floor, power...), without its position."""
    return {k: v for k, v in scheduler.state_dict().items() if k not in RUN_STATE}


def refit(scheduler: LRScheduler, planned: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Give a restored ``scheduler`` the ``planned`` settings of this run and the learning rate the planned schedule
    has at the current epoch. Returns the changed settings ``{name: (restored, planned)}`` (empty: nothing to do).

    Raises ConfigError when the settings differ and the scheduler has no closed form to recompute the rate from.
    """
    changed = {k: (v, planned[k]) for k, v in settings(scheduler).items() if k in planned and v != planned[k]}
    if not changed:
        return {}
    diff = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in changed.items())
    if not hasattr(scheduler, "_get_closed_form_lr"):
        raise ConfigError(f"resuming changes the learning-rate schedule ({diff}), which {type(scheduler).__name__} "
                          f"cannot recompute mid-run; resume with the checkpoint's trainer.max_epochs and scheduler "
                          f"settings, or use scheduler=cosine or scheduler=poly")
    scheduler.__dict__.update({k: new for k, (_, new) in changed.items()})
    rates = scheduler._get_closed_form_lr()
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = list(rates)
    log.info("resumed with another schedule (%s): learning rate at epoch %d is now %s", diff, scheduler.last_epoch,
             ", ".join(f"{r:.3g}" for r in rates))
    return changed
