"""``segsuite cv``: train every fold of a k-fold split in turn, then summarise them.

``cross_validate(cfg)`` trains fold 0..folds-1 (:mod:`segsuite.core.folds`) into ``RUN/fold_K/`` (each a complete
training run: checkpoints, ``metrics.json``, ``splits.json``) and writes ``RUN/cv_summary.json`` and
``RUN/cv_summary.csv``: every scalar metric of the folds' ``metrics.json`` (``val/...`` and ``test/...``, per class
included), per fold, with the mean and the sample standard deviation over the folds. A fold whose ``metrics.json``
exists already is not trained again (a cross-validation interrupted after fold 2 resumes at fold 3).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from segsuite.core.distributed import Ranks
from segsuite.core.folds import check_fold, read_splits
from segsuite.core.io import write_csv, write_json

log = logging.getLogger(__name__)

SUMMARY_JSON, SUMMARY_CSV = "cv_summary.json", "cv_summary.csv"


def fold_dir(run_dir: str | Path, fold: int) -> Path:
    return Path(run_dir) / f"fold_{fold}"


def count_folds(cfg: DictConfig) -> int:
    """The number of folds: ``folds``, or the length of the user's ``splits`` file."""
    folds = len(read_splits(cfg.splits)) if cfg.get("splits") else cfg.get("folds", 5)
    check_fold(0, folds)
    return int(folds)


def fold_config(cfg: DictConfig, fold: int) -> DictConfig:
    """A copy of ``cfg`` for fold ``fold``, in its own run folder under the CV folder (``${run_dir}`` references
    follow it; values the data fills in, e.g. ``domain.num_classes``, stay open)."""
    sub = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(sub):
        sub.fold, sub.run_dir = fold, str(fold_dir(cfg.run_dir, fold))
    OmegaConf.set_struct(sub, True)
    return sub


def cross_validate(cfg: DictConfig) -> dict[str, Any]:
    """Train every fold of ``cfg`` (``fold=all``), then write and return the summary (module docstring)."""
    from segsuite.core.train import train  # imports Lightning

    with open_dict(cfg):
        cfg.run_dir = str(Path(cfg.run_dir))  # resolve ${hydra:...} once, in the parent process
    folds = count_folds(cfg)
    for k in range(folds):
        done = fold_dir(cfg.run_dir, k) / "metrics.json"
        if done.is_file():
            log.info("fold %d/%d: %s exists, not trained again", k + 1, folds, done)
            continue
        log.info("fold %d/%d: training into %s", k + 1, folds, fold_dir(cfg.run_dir, k))
        train(fold_config(cfg, k))
    return summarise(cfg.run_dir, folds)


def objective(metrics: dict[str, Any]) -> float:
    """The number a hyper-parameter search optimises: the best validation score of the run (``best.score``,
    the checkpoint callback's monitor), else the last ``val/miou``."""
    score = (metrics.get("best") or {}).get("score")
    return float(score if score is not None else metrics.get("val", {}).get("val/miou", float("nan")))


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in ("val", "test"):
        out.update({k: float(v) for k, v in (metrics.get(part) or {}).items() if isinstance(v, (int, float))})
    return out


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for one value) over the finite values; NaN when none."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    mean = math.fsum(finite) / len(finite)
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
    return mean, sd


def summarise(cv_dir: str | Path, folds: int | None = None) -> dict[str, Any]:
    """Read ``cv_dir/fold_K/metrics.json`` of every fold and write ``cv_summary.json`` and ``cv_summary.csv``."""
    cv_dir = Path(cv_dir)
    paths = ([fold_dir(cv_dir, k) / "metrics.json" for k in range(folds)] if folds is not None
             else sorted(cv_dir.glob("fold_*/metrics.json"), key=lambda p: int(p.parent.name.split("_")[1])))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        from segsuite.core.errors import DataError

        raise DataError(f"{cv_dir} is not a finished cross-validation: missing {missing[0] if missing else 'fold_*'}")
    per_fold = [_scalars(json.loads(p.read_text(encoding="utf-8"))) for p in paths]
    if Ranks.from_env().rank != 0:  # DDP: the first process writes
        return {"folds": len(paths)}
    names = sorted({k for f in per_fold for k in f})
    stats = {n: mean_sd([f.get(n, math.nan) for f in per_fold]) for n in names}
    summary = {"folds": len(paths), "metrics": names,
               "per_fold": [{"fold": k, "dir": str(p.parent), **f} for k, (p, f) in enumerate(zip(paths, per_fold))],
               "mean": {n: stats[n][0] for n in names}, "sd": {n: stats[n][1] for n in names}}
    write_json(cv_dir / SUMMARY_JSON, summary)
    columns = ["metric", *(f"fold_{k}" for k in range(len(paths))), "mean", "sd"]
    rows = [dict(zip(columns, [n, *(fold.get(n, math.nan) for fold in per_fold), *stats[n]])) for n in names]
    write_csv(cv_dir / SUMMARY_CSV, [{k: _cell(v) if k != "metric" else v for k, v in r.items()} for r in rows],
              columns=columns)
    log.info("cross-validation of %d folds: %s", len(paths), ", ".join(
        f"{n} {stats[n][0]:.4f} ± {stats[n][1]:.4f}" for n in names if n.endswith("miou")))
    log.info("summary written to %s and %s", cv_dir / SUMMARY_JSON, cv_dir / SUMMARY_CSV)
    return summary


def _cell(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6g}"
