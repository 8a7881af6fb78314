"""How a training run went: one summary, a training-curve picture and a warning when it stopped too early.

:class:`RunReport` is a Lightning callback (``conf/callbacks/default.yaml``). It records the training loss per
step (averaged over ``trainer.log_every_n_steps`` steps, so the device is read once per interval, not per step), the
validation loss and the monitored metric at every validation, and at the end of ``fit`` writes into the run folder

* ``training_curve.png``: loss (train per step, validation per round) and the monitored metric per round, the best
  round marked, with a legend;
* ``training_summary.json``: steps, epochs, validations, the best metric with its step and epoch, the last one,
  why the run ended and whether it was still improving,

and logs the summary in a few lines, with a warning when the metric was still improving at the end. Its history is
kept in checkpoints, so a resumed run's curve covers the whole run. Lightning's own loggers record the same numbers
for TensorBoard or MLflow; this is what a user sees without opening either.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch

from segsuite.core.io import atomic_path, write_json

log = logging.getLogger(__name__)

CURVE, SUMMARY = "training_curve.png", "training_summary.json"


class RunReport(L.Callback):
    """Records a run's curves and reports how it went (see the module's docstring).

    Args:
        monitor: the validation metric that decides the best round (the checkpoint callback's).
        mode: ``max`` (a score) or ``min`` (a loss).
        min_delta: a change smaller than this is no improvement.
        window: the last share of validation rounds looked at for "still improving": the run was still improving
            when the best round lies in that window (at least the last round) and beats every earlier round by more
            than ``min_delta``.
    """

    def __init__(self, monitor: str = "val/miou", mode: str = "max", min_delta: float = 0.005,
                 window: float = 0.25) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"mode={mode!r}: expected max or min")
        self.monitor, self.mode, self.min_delta, self.window = monitor, mode, float(min_delta), float(window)
        self.train: list[tuple[int, float]] = []  # (step, mean training loss since the previous point)
        self.val: list[dict[str, float]] = []  # {step, epoch, loss, metric} per validation round
        self._sum: torch.Tensor | None = None
        self._count = 0
        self.summary: dict[str, Any] = {}
        self._epochs = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._epochs = int(trainer.current_epoch) + 1  # (after fit, current_epoch has moved one past the last)

    # -- recording ------------------------------------------------------------------------------------------------

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float()
        self._sum = loss if self._sum is None else self._sum + loss
        self._count += 1
        if self._count >= max(1, int(trainer.log_every_n_steps or 1)):
            self._flush(trainer.global_step)

    def _flush(self, step: int) -> None:
        if self._count:
            self.train.append((int(step), float(self._sum) / self._count))  # one read of the device per interval
        self._sum, self._count = None, 0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        value = metrics.get(self.monitor)
        if value is None:
            return
        loss = metrics.get("val/loss")
        self.val.append({"step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
                         "loss": float(loss) if loss is not None else math.nan, "metric": float(value)})

    # -- the report ----------------------------------------------------------------------------------------------

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._flush(trainer.global_step)
        self.summary = self.summarise(trainer)
        if not trainer.is_global_zero:
            return
        run_dir = Path(trainer.default_root_dir)
        write_json(run_dir / SUMMARY, self.summary)
        if self.train or self.val:
            plot_curves(self.train, self.val, self.monitor, self.summary.get("best"), run_dir / CURVE)
        for line in describe(self.summary):
            log.info(line)
        if self.summary.get("still_improving"):
            log.warning(self.summary["advice"])

    def summarise(self, trainer: L.Trainer) -> dict[str, Any]:
        """The run in numbers: steps, epochs, the best and last validation, why it ended, still improving?"""
        summary: dict[str, Any] = {"steps": int(trainer.global_step), "epochs": self._epochs or 1,
                                   "validations": len(self.val), "monitor": self.monitor, "mode": self.mode,
                                   "ended_by": _ended_by(trainer)}
        if not self.val:
            summary["still_improving"] = None
            return summary
        best = self._best_index()
        summary["best"] = self.val[best]
        summary["last"] = self.val[-1]
        summary["still_improving"] = self._still_improving(best) and summary["ended_by"] != "early stopping"
        if summary["still_improving"]:
            top = self.val[best]
            summary["advice"] = (f"the run ended while {self.monitor} was still improving (best {top['metric']:.4f} "
                                 f"at step {top['step']} of {summary['steps']}): train longer, e.g. "
                                 f"trainer.max_steps={2 * max(1, summary['steps'])}")
        return summary

    def _better(self, a: float, b: float) -> bool:
        return a > b + self.min_delta if self.mode == "max" else a < b - self.min_delta

    def _best_index(self) -> int:
        scored = [(v["metric"], i) for i, v in enumerate(self.val) if not math.isnan(v["metric"])]
        if not scored:
            return len(self.val) - 1
        return (max(scored, key=lambda p: (p[0], -p[1])) if self.mode == "max" else min(scored))[1]

    def _still_improving(self, best: int) -> bool:
        n = len(self.val)
        start = min(n - 1, int(math.floor(n * (1 - self.window))))  # the window holds at least the last round
        if best < start:
            return False
        earlier = [v["metric"] for v in self.val[:start] if not math.isnan(v["metric"])]
        if not earlier:
            return True
        return self._better(self.val[best]["metric"], max(earlier) if self.mode == "max" else min(earlier))

    def state_dict(self) -> dict[str, Any]:
        return {"train": list(self.train), "val": list(self.val)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train = [tuple(p) for p in state.get("train", [])]
        self.val = list(state.get("val", []))


def stopped_early(trainer: L.Trainer) -> bool:
    """Whether early stopping ended the run (its wait count; ``stopped_epoch`` stays 0 when validation runs every N
    steps within the first epoch). Read it before ``trainer.test``, which restores the callbacks' state."""
    return any(isinstance(c, L.pytorch.callbacks.EarlyStopping) and c.wait_count >= c.patience
               for c in trainer.callbacks)


def _ended_by(trainer: L.Trainer) -> str:
    if stopped_early(trainer):
        return "early stopping"
    if trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        return "step budget"
    if trainer.max_epochs not in (None, -1) and trainer.current_epoch >= trainer.max_epochs:
        return "epoch limit"
    return "interrupted" if getattr(trainer, "interrupted", False) else "stopped"


def describe(summary: dict[str, Any]) -> list[str]:
    """The summary as a few log lines."""
    lines = [f"training: {summary['steps']} steps in {summary['epochs']} epoch(s), {summary['validations']} "
             f"validation round(s), ended by {summary['ended_by']}"]
    if summary.get("best"):
        best, last = summary["best"], summary["last"]
        lines.append(f"best {summary['monitor']} {best['metric']:.4f} at step {best['step']} (epoch {best['epoch']}); "
                     f"last {last['metric']:.4f} at step {last['step']}; still improving: "
                     f"{'yes' if summary['still_improving'] else 'no'}")
    return lines


def plot_curves(train: list[tuple[int, float]], val: list[dict[str, float]], monitor: str,
                best: dict[str, float] | None, path: Path) -> None:
    """Loss per step (train and validation) beside the monitored metric per validation round, best round marked."""
    from segsuite.core.plots import plt  # matplotlib set to a file backend there

    fig, (ax_loss, ax_metric) = plt.subplots(1, 2, figsize=(11, 4))
    if train:
        steps, losses = zip(*train)
        ax_loss.plot(steps, losses, color="tab:blue", lw=1, label="training loss (mean per interval)")
    if val:
        ax_loss.plot([v["step"] for v in val], [v["loss"] for v in val], "o-", color="tab:orange", ms=3,
                     label="validation loss")
        ax_metric.plot([v["step"] for v in val], [v["metric"] for v in val], "o-", color="tab:green", ms=3,
                       label=f"validation {monitor}")
    if best:
        ax_metric.plot([best["step"]], [best["metric"]], "*", color="tab:red", ms=14,
                       label=f"best {best['metric']:.3f} (step {best['step']})")
    ax_loss.set(xlabel="optimiser step", ylabel="loss", title="loss")
    ax_metric.set(xlabel="optimiser step", ylabel=monitor, title=monitor)
    for ax in (ax_loss, ax_metric):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    with atomic_path(path, overwrite=True) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
