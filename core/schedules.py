"""Learning-rate schedules over optimiser steps, and that follow the run's length when a run is resumed with another
``trainer.max_steps`` or ``trainer.max_epochs``.

:func:`build_scheduler` gives a schedule whose length was left None (``T_max: null``) the run's number of optimiser
steps, so the schedule ends where the run ends whether its length came from the plan's budget, ``max_steps`` or
``max_epochs``.

Lightning restores a scheduler's whole state from the checkpoint, its length (``T_max``, ``total_iters``) included, so
a cosine schedule resumed with more steps would stay at the old end: learning rate 0. :func:`refit` gives the
restored scheduler the settings of the schedule built for this run and sets the learning rate that schedule has at
the current step (as if the run had been planned that long from the start).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from torch.optim.lr_scheduler import LRScheduler

from segsuite.core.errors import ConfigError

log = logging.getLogger(__name__)

# Where a scheduler is in its schedule, as opposed to the schedule's settings.
RUN_STATE = {"last_epoch", "_step_count", "_last_lr", "_is_initial", "_get_lr_called_within_step", "base_lrs",
             "verbose", "optimizer"}


LENGTH_KEYS = ("T_max", "total_iters", "total_steps")  # cosine, poly / linear, one-cycle


def build_scheduler(factory: Callable[..., LRScheduler], optimizer: Any, total_steps: float) -> LRScheduler:
    """``factory(optimizer)``, a run length it leaves None (a ``functools.partial``'s ``T_max``, ``total_iters`` or
    ``total_steps``, e.g. ``T_max: null`` in conf/scheduler/) set to ``total_steps``, the run's optimiser steps."""
    open_keys = [k for k, v in getattr(factory, "keywords", {}).items() if k in LENGTH_KEYS and v is None]
    if not open_keys:
        return factory(optimizer)
    if not math.isfinite(total_steps) or total_steps < 1:
        raise ConfigError(f"the learning-rate schedule runs over the run's steps, but the run has no end "
                          f"({total_steps}); set trainer.max_steps or trainer.max_epochs, or scheduler.{open_keys[0]}")
    return partial(factory, **dict.fromkeys(open_keys, int(total_steps)))(optimizer)


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
    log.info("resumed with another schedule (%s): learning rate at step %d is now %s", diff, scheduler.last_epoch,
             ", ".join(f"{r:.3g}" for r in rates))
    return changed
