"""Pruning of hopeless trials in a search (``segsuite train -m hparams_search=...``).

Optuna's own Lightning callback needs the trial object inside the training, which Hydra's sweeper never hands to
the job (and optuna 2.x's callback predates Lightning 2), so this callback finds its trial itself: the study's
running trial whose parameters are this job's overrides (the sweeper runs one job at a time). After every
validation it stores the monitored score as the trial's intermediate value and asks a median pruner (Optuna's
``MedianPruner``: stop when the score is below the median of the finished trials at the same validation) whether
to go on. A pruned run stops like an early-stopped one and returns its best score; the trial keeps that score and
says where it stopped (user attribute ``pruned_at_validation``): the sweeper records a job's return, it has no
pruned state for one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.callbacks import Callback

log = logging.getLogger(__name__)


class SearchPruning(Callback):
    """Reports ``monitor`` to the search's running trial after each validation and stops hopeless runs."""

    def __init__(self, storage: str, study_name: str, monitor: str = "val/miou", n_startup_trials: int = 2,
                 n_warmup_steps: int = 1, overrides: Sequence[str] | None = None) -> None:
        self.storage, self.study_name, self.monitor = str(storage), str(study_name), monitor
        self.n_startup_trials, self.n_warmup_steps = int(n_startup_trials), int(n_warmup_steps)
        self.overrides = overrides
        self.study: Any = None
        self.trial_id: int | None = None
        self.validations = 0

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0 or self.monitor not in trainer.callback_metrics:
            return
        if self.study is False or (self.study is None and not self._find_trial()):
            return
        step, self.validations = self.validations, self.validations + 1
        value = float(trainer.callback_metrics[self.monitor])
        storage = self.study._storage
        storage.set_trial_intermediate_value(self.trial_id, step, value)
        import optuna

        pruner = optuna.pruners.MedianPruner(self.n_startup_trials, self.n_warmup_steps)
        if pruner.prune(self.study, storage.get_trial(self.trial_id)):
            storage.set_trial_user_attr(self.trial_id, "pruned_at_validation", step)
            log.info("search: trial %d pruned after validation %d (%s %.4f, below the median of finished trials)",
                     storage.get_trial_number_from_id(self.trial_id), step, self.monitor, value)
            trainer.should_stop = True

    def _find_trial(self) -> bool:
        """The study's running trial with this job's parameters; False (pruning off, said once) if there is none."""
        import optuna

        self.study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        given = set(self.overrides if self.overrides is not None else _job_overrides())
        running = [t for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
                   if {f"{k}={v}" for k, v in t.params.items()} <= given]
        if len(running) != 1:
            log.warning("search: no running trial of study %s has this job's parameters; not pruning this run",
                        self.study_name)
            self.study = False
            return False
        self.trial_id = running[-1]._trial_id
        return True


def _job_overrides() -> list[str]:
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task)
