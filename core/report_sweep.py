"""The trials of a sweep folder for ``segsuite report``: from its Optuna study (``*.db``, every trial including
pruned and failed ones) when there is one, else from its numbered job folders (``N/metrics.json`` and
``N/.hydra/overrides.yaml``, a grid ``-m`` sweep)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OBJECTIVE = "best val/miou"


def sweep_trials(folder: Path) -> tuple[list[dict[str, Any]], str]:
    """``([{"number", "state", "value", "params"}, ...], objective name)`` of the sweep in ``folder``."""
    databases = sorted(folder.glob("*.db"))
    trials = study_trials(databases[0]) if databases else job_trials(folder)
    return sorted(trials, key=lambda t: t["number"]), OBJECTIVE


def study_trials(path: Path) -> list[dict[str, Any]]:
    """Every trial of the (largest) study stored in the SQLite file ``path``."""
    import optuna

    storage = f"sqlite:///{path}"
    summaries = optuna.get_all_study_summaries(storage)
    if not summaries:
        return []
    name = max(summaries, key=lambda s: s.n_trials).study_name
    study = optuna.load_study(study_name=name, storage=storage)
    return [{"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params)}
            for t in study.trials]


def _job_order(path: Path) -> tuple[str, int]:
    """Job folders ``N`` (a grid sweep) or ``TIME_N`` (conf/hparams_search) in launch order."""
    head, _, number = path.parent.name.rpartition("_")
    return head, int(number) if number.isdigit() else -1


def job_trials(folder: Path) -> list[dict[str, Any]]:
    """One trial per numbered job folder holding ``metrics.json``."""
    from segsuite.core.cv import objective

    out = []
    for metrics in sorted(folder.glob("*/metrics.json"), key=_job_order):
        number = metrics.parent.name.split("_")[-1]  # N, or TIME_N (conf/hparams_search)
        if not number.isdigit():
            continue
        overrides = metrics.parent / ".hydra" / "overrides.yaml"
        params = {}
        if overrides.is_file():
            import yaml

            for line in yaml.safe_load(overrides.read_text(encoding="utf-8")) or []:
                key, _, value = str(line).partition("=")
                params[key] = value
        out.append({"number": len(out), "job": metrics.parent.name, "state": "COMPLETE",
                    "value": objective(json.loads(metrics.read_text(encoding="utf-8"))), "params": params})
    return out
