"""The figures and tables of ``segsuite report`` (:mod:`segsuite.core.report_page`), from the files a run, a
cross-validation or a sweep leaves: PNGs written with matplotlib (Agg), tables as Markdown and LaTeX."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from segsuite.core.plots import plot_confusion  # noqa: E402


def class_scores(mean: Mapping[str, float], sd: Mapping[str, float] | None, part: str, score: str = "iou"
                 ) -> list[tuple[str, float, float]]:
    """``(class, mean, sd)`` of ``{part}/{score}_<class>`` (sd 0 without folds)."""
    prefix = f"{part}/{score}_"
    return [(k[len(prefix):], float(v), float((sd or {}).get(k, 0.0) or 0.0))
            for k, v in sorted(mean.items()) if k.startswith(prefix)]


def plot_class_bars(rows: Sequence[tuple[str, float, float]], title: str, path: Path, folds: int = 1) -> Path:
    """Per-class bars (mean) with error bars (± sd over ``folds`` folds when there are several)."""
    names = [r[0] for r in rows]
    means = np.array([r[1] for r in rows], float)
    sds = np.array([r[2] for r in rows], float)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(rows) + 1.5), 3.2))
    ax.bar(range(len(rows)), np.nan_to_num(means), yerr=np.nan_to_num(sds) if folds > 1 else None, capsize=4,
           color="#4c72b0", label="mean" + (f" ± sd over {folds} folds" if folds > 1 else ""))
    ax.set_xticks(range(len(rows)), names, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel(title.split()[0])
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_fold_metric(values: Sequence[float], name: str, path: Path) -> Path:
    """One bar per fold of metric ``name``, the mean as a line."""
    fig, ax = plt.subplots(figsize=(max(3.5, 0.6 * len(values) + 1.5), 3.0))
    ax.bar(range(len(values)), np.nan_to_num(np.asarray(values, float)), color="#55a868", label="fold")
    finite = [v for v in values if math.isfinite(v)]
    if finite:
        ax.axhline(float(np.mean(finite)), color="black", linestyle="--", label="mean")
    ax.set_xticks(range(len(values)), [f"fold {k}" for k in range(len(values))])
    ax.set_ylabel(name)
    ax.set_title(f"{name} per fold")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_confusion_of(confusion: Mapping[str, Any], path: Path) -> Path:
    plot_confusion(np.asarray(confusion["matrix"]), list(confusion["class_names"]), path)
    return path


def plot_trials(trials: Sequence[Mapping[str, Any]], objective: str, path: Path) -> Path:
    """The sweep's objective per trial (finished trials as dots, the best so far as a line)."""
    numbers = [int(t["number"]) for t in trials]
    values = [t.get("value") for t in trials]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    done = [(n, v) for n, v in zip(numbers, values, strict=True) if v is not None and math.isfinite(v)]
    if done:
        ax.plot([n for n, _ in done], [v for _, v in done], "o", color="#4c72b0", label="trial")
        best = np.maximum.accumulate([v for _, v in done])
        ax.step([n for n, _ in done], best, where="post", color="#c44e52", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.set_title("search: objective per trial")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path


def _fmt(mean: float, sd: float | None) -> tuple[str, str]:
    if not math.isfinite(mean):
        return "n/a", "n/a"
    if sd is None:
        return f"{mean:.3f}", f"{mean:.3f}"
    return f"{mean:.3f} ± {sd:.3f}", f"${mean:.3f} \\pm {sd:.3f}$"


def tables(rows: Sequence[tuple[str, Sequence[tuple[float, float | None]]]], columns: Sequence[str],
           first: str = "class") -> tuple[str, str]:
    """A Markdown and a LaTeX (booktabs) table: one row per name, one cell per column, ``mean ± sd``."""
    md = [f"| {first} | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    tex = ["\\begin{tabular}{l" + "r" * len(columns) + "}", "\\toprule",
           f"{first} & " + " & ".join(c.replace("_", "\\_") for c in columns) + " \\\\", "\\midrule"]
    for name, cells in rows:
        pairs = [_fmt(m, s) for m, s in cells]
        md.append(f"| {name} | " + " | ".join(p[0] for p in pairs) + " |")
        tex.append(name.replace("_", "\\_") + " & " + " & ".join(p[1] for p in pairs) + " \\\\")
    tex += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(md) + "\n", "\n".join(tex) + "\n"
