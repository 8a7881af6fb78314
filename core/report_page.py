"""``segsuite report FOLDER``: one self-contained HTML page (figures inline as base64 PNG, no network) plus its PNGs
and a table in Markdown and LaTeX, for a training run, a cross-validation (``segsuite cv``) or a sweep
(``segsuite train -m``, Optuna or grid).

* a **run** (``metrics.json``): its training curve, per-class IoU bars, the test confusion matrix;
* a **cross-validation** (``cv_summary.json``): the monitored metric per fold, per-class IoU mean ± sd over the
  folds, the confusion matrix summed over the folds, every fold's training curve;
* a **sweep** (numbered job folders and/or an Optuna study in ``*.db``): the objective per trial and a table of the
  trials with their parameters.

``examples=[a.tif,...]`` adds each input predicted by the folder's model (a CV folder's folds as one ensemble),
drawn over the input with a legend. Everything goes to ``FOLDER/report/`` (``output=DIR`` elsewhere):
``report.html``, the PNGs, ``table.md``, ``table.tex``; written into a staging folder first, so an existing report
is replaced only with ``overwrite=true``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from segsuite.core import report_figures as figs
from segsuite.core.errors import ConfigError
from segsuite.core.report_sweep import sweep_trials


def kind_of(folder: Path) -> str:
    """``cv``, ``run`` or ``sweep``: what ``folder`` holds."""
    if (folder / "cv_summary.json").is_file():
        return "cv"
    if (folder / "metrics.json").is_file():
        return "run"
    if list(folder.glob("*.db")) or any(p.parent.name.split("_")[-1].isdigit()
                                                 for p in folder.glob("*/metrics.json")):
        return "sweep"
    raise ConfigError(f"{folder} holds no metrics.json, cv_summary.json, numbered sweep jobs or study (*.db); give "
                      "a run folder of segsuite train, a segsuite cv folder or a sweep folder of segsuite train -m")


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _part(mean: dict[str, float]) -> str:
    """``test`` scores when the run has them, else ``val``."""
    return "test" if any(k.startswith("test/iou_") for k in mean) else "val"


def _run_sections(folder: Path, out: Path) -> tuple[list[tuple[str, Path]], list]:
    metrics = _read(folder / "metrics.json")
    scores = {**metrics.get("val", {}), **metrics.get("test", {})}
    part = _part(scores)
    figures = []
    if (folder / "training_curve.png").is_file():
        figures.append(("Training curve", shutil.copy(folder / "training_curve.png", out / "training_curve.png")))
    rows = figs.class_scores(scores, None, part)
    figures.append((f"IoU per class ({part})", figs.plot_class_bars(rows, f"IoU per class ({part})",
                                                                     out / "class_iou.png")))
    if metrics.get("test_confusion"):
        figures.append(("Confusion matrix (test)", figs.plot_confusion_of(metrics["test_confusion"],
                                                                           out / "confusion.png")))
    dice = dict((n, m) for n, m, _ in figs.class_scores(scores, None, part, "dice"))
    table = [(n, [(m, None), (dice.get(n, math.nan), None)]) for n, m, _ in rows]
    table.append(("mean", [(scores.get(f"{part}/miou", math.nan), None), (scores.get(f"{part}/mdice", math.nan),
                                                                          None)]))
    return figures, [table, [f"{part} IoU", f"{part} Dice"]]


def _cv_sections(folder: Path, out: Path) -> tuple[list[tuple[str, Path]], list]:
    summary = _read(folder / "cv_summary.json")
    mean, sd, n = summary["mean"], summary["sd"], int(summary["folds"])
    part = _part(mean)
    figures = [("Validation mIoU per fold", figs.plot_fold_metric(
        [f.get("val/miou", math.nan) for f in summary["per_fold"]], "val/miou", out / "fold_miou.png"))]
    rows = figs.class_scores(mean, sd, part)
    figures.append((f"IoU per class ({part}), mean ± sd over {n} folds",
                    figs.plot_class_bars(rows, f"IoU per class ({part})", out / "class_iou.png", folds=n)))
    confusion = _summed_confusion([Path(f["dir"]) for f in summary["per_fold"]], folder)
    if confusion:
        figures.append((f"Confusion matrix (test, summed over {n} folds)",
                        figs.plot_confusion_of(confusion, out / "confusion.png")))
    for k, fold in enumerate(summary["per_fold"]):
        curve = _fold_path(Path(fold["dir"]), folder, k) / "training_curve.png"
        if curve.is_file():
            figures.append((f"Training curve, fold {k}", shutil.copy(curve, out / f"training_curve_fold{k}.png")))
    dice = {name: (m, s) for name, m, s in figs.class_scores(mean, sd, part, "dice")}
    table = [(name, [(m, s), dice.get(name, (math.nan, None))]) for name, m, s in rows]
    table.append(("mean", [(mean.get(f"{part}/miou", math.nan), sd.get(f"{part}/miou")),
                           (mean.get(f"{part}/mdice", math.nan), sd.get(f"{part}/mdice"))]))
    return figures, [table, [f"{part} IoU", f"{part} Dice"]]


def _fold_path(recorded: Path, folder: Path, k: int) -> Path:
    """A fold's folder as recorded, or ``folder/fold_k`` when the CV folder was moved."""
    return recorded if recorded.is_dir() else folder / f"fold_{k}"


def _summed_confusion(dirs: list[Path], folder: Path) -> dict[str, Any] | None:
    total, names = None, None
    for k, d in enumerate(dirs):
        path = _fold_path(d, folder, k) / "metrics.json"
        confusion = _read(path).get("test_confusion") if path.is_file() else None
        if not confusion:
            return None
        matrix = confusion["matrix"]
        names = confusion["class_names"]
        total = matrix if total is None else [[a + b for a, b in zip(r, s, strict=True)]
                                              for r, s in zip(total, matrix, strict=True)]
    return {"class_names": names, "matrix": total} if total else None


def _sweep_sections(folder: Path, out: Path) -> tuple[list[tuple[str, Path]], list]:
    trials, objective = sweep_trials(folder)
    figures = [("Search: objective per trial", figs.plot_trials(trials, objective, out / "trials.png"))]
    params = sorted({p for t in trials for p in t["params"]})
    table = [(f"{t['number']} ({t['state'].lower()})",
              [(t["value"] if t["value"] is not None else math.nan, None)]) for t in trials]
    md_params = [f"| {t['number']} | {t['state']} | " + " | ".join(str(t["params"].get(p, "")) for p in params)
                 + " |" for t in trials]
    extra = ("| trial | state | " + " | ".join(params) + " |\n|---|---|" + "---|" * len(params) + "\n"
             + "\n".join(md_params) + "\n")
    return figures, [table, [objective], extra]


def _img(title: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{data}\">"
            f"<figcaption>{html.escape(title)}</figcaption></figure>")


def _page(title: str, figures: list[tuple[str, Path]], markdown: str, latex: str, extra: str) -> str:
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}figure{margin:1.5em 0}"
             "img{max-width:100%}pre{background:#f4f4f4;padding:1em;overflow-x:auto}")
    parts = [f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>",
             *(_img(t, p) for t, p in figures), "<h2>Table (Markdown)</h2>", f"<pre>{html.escape(markdown)}</pre>",
             "<h2>Table (LaTeX, booktabs)</h2>", f"<pre>{html.escape(latex)}</pre>"]
    if extra:
        parts += ["<h2>Trials</h2>", f"<pre>{html.escape(extra)}</pre>"]
    return "".join([*parts, "</body></html>\n"])


def write_report(folder: str | Path, output: str | Path | None = None, overwrite: bool = False,
                 examples: list[str] | None = None) -> Path:
    """Write the report of ``folder`` (module docstring); returns the HTML page's path. ``examples``: inputs the
    folder's model predicts, drawn over the input with a legend (:mod:`segsuite.core.report_examples`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"report: {folder} is not a folder; give a run, segsuite cv or sweep folder")
    out = Path(output) if output else folder / "report"
    if out.exists() and not overwrite:
        raise ConfigError(f"report: {out} exists; give overwrite=true to replace it (or output=DIR)")
    kind = kind_of(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".report-", dir=out.parent))
    try:
        sections = {"run": _run_sections, "cv": _cv_sections, "sweep": _sweep_sections}[kind]
        figures, (table, columns, *extra) = sections(folder, stage)
        if examples:
            from segsuite.core.report_examples import plot_examples

            figures += plot_examples(folder, kind, examples, stage)
        markdown, latex = figs.tables(table, columns, "trial" if kind == "sweep" else "class")
        (stage / "table.md").write_text(markdown + (extra[0] if extra else ""), encoding="utf-8")
        (stage / "table.tex").write_text(latex, encoding="utf-8")
        title = {"run": "Training run", "cv": "Cross-validation", "sweep": "Hyper-parameter search"}[kind]
        page = _page(f"{title}: {folder.resolve().name}", figures, markdown, latex, extra[0] if extra else "")
        (stage / "report.html").write_text(page, encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        stage.rename(out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return out / "report.html"
