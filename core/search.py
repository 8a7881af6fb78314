"""Hyper-parameter search with Hydra's Optuna sweeper, resumable (``segsuite train -m hparams_search=landcover_quick``).

The search configs (``conf/hparams_search/*.yaml``) keep the Optuna study in a SQLite file in the sweep folder and
ask for ``search_trials`` finished trials. Hydra's sweeper runs ``n_trials`` more trials every time it starts, so
the configs set ``n_trials`` through the ``trials_left`` resolver registered here: the trials still missing to
``search_trials`` finished (complete or pruned) ones in the stored study. Starting the same command again after an
interruption therefore resumes the search: the sampler sees every stored trial (its seed moved on by their number,
``sampler_seed``) and only the missing trials run (a
trial the interruption cut short stays ``RUNNING`` in the study and counts as not finished). Job folders carry the
launch time (``N_YYYYmmdd-HHMMSS``), so a resumed search never trains into an earlier trial's folder.

Each trial optimises what ``segsuite train`` returns: the best validation score of the run
(:func:`segsuite.core.cv.objective`); hopeless trials stop early (:mod:`segsuite.core.pruning`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

log = logging.getLogger(__name__)

FINISHED = ("COMPLETE", "PRUNED")


def stored_trials(storage: str, study_name: str) -> list[str]:
    """The states (``COMPLETE``, ``RUNNING``...) of the stored study's trials; [] when the file or the study does
    not exist. Reads only: nothing in the study changes."""
    if storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_file():
        return []
    import optuna

    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # the file holds no study of that name
        return []
    return [t.state.name for t in study.get_trials(deepcopy=False)]


def finished_trials(storage: str, study_name: str) -> int:
    """Complete or pruned trials of the stored study."""
    return sum(state in FINISHED for state in stored_trials(storage, study_name))


def sampler_seed(seed: int, storage: str, study_name: str) -> int:
    """``seed`` plus the stored trials: a resumed search's sampler does not draw the first start's trials again."""
    return int(seed) + len(stored_trials(str(storage), str(study_name)))


def trials_left(total: int, storage: str, study_name: str) -> int:
    """``total`` minus the finished trials of the stored study (at least 0); the sqlite file's folder is made."""
    total = int(total)
    if str(storage).startswith("sqlite:///"):
        Path(str(storage).removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    done = finished_trials(str(storage), str(study_name))
    if done:
        log.info("study %s: %d of %d trials finished; running the other %d", study_name, done, total,
                 max(total - done, 0))
    return max(total - done, 0)


def register_resolvers() -> None:
    """``${trials_left:TOTAL,STORAGE,STUDY}`` and ``${sampler_seed:SEED,STORAGE,STUDY}`` for the search configs."""
    for name, fn in (("trials_left", trials_left), ("sampler_seed", sampler_seed)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
