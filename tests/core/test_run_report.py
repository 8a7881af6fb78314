"""The run report: how a training run went, in numbers, a picture and a warning."""

import json
from types import SimpleNamespace

import lightning as L
import numpy as np
from PIL import Image

from segsuite.core.run_report import CURVE, SUMMARY, RunReport, describe


def _trainer(steps: int, epochs: int, max_steps: int = -1, callbacks=()):
    return SimpleNamespace(global_step=steps, current_epoch=epochs, max_steps=max_steps, max_epochs=None,
                           callbacks=list(callbacks))


def _report(metrics: list[float]) -> RunReport:
    report = RunReport(monitor="val/miou", mode="max")
    report.val = [{"step": 10 * (i + 1), "epoch": i, "loss": 1.0 / (i + 1), "metric": m} for i, m in enumerate(metrics)]
    return report


def test_a_rising_curve_at_the_budget_is_still_improving():
    summary = _report([0.2, 0.3, 0.4, 0.5]).summarise(_trainer(40, 4, max_steps=40))
    assert summary["ended_by"] == "step budget" and summary["still_improving"] is True
    assert summary["best"]["step"] == 40 and "trainer.max_steps=80" in summary["advice"]


def test_a_plateau_is_not_improving():
    summary = _report([0.2, 0.5, 0.5, 0.501, 0.499, 0.5, 0.5, 0.5]).summarise(_trainer(80, 8, max_steps=80))
    assert summary["still_improving"] is False and summary["best"]["metric"] == 0.501
    assert "advice" not in summary


def test_early_stopping_is_never_still_improving():
    stopper = L.pytorch.callbacks.EarlyStopping(monitor="val/miou", mode="max")
    stopper.wait_count = stopper.patience  # (stopped_epoch stays 0 when validation runs every N steps in epoch 0)
    summary = _report([0.2, 0.3, 0.4, 0.5]).summarise(_trainer(40, 4, callbacks=[stopper]))
    assert summary["ended_by"] == "early stopping" and summary["still_improving"] is False


def test_a_minimised_monitor_and_the_log_lines():
    report = RunReport(monitor="val/loss", mode="min")
    report.val = [{"step": s, "epoch": 0, "loss": v, "metric": v} for s, v in ((5, 1.0), (10, 0.5), (15, 0.7))]
    summary = report.summarise(_trainer(15, 1))
    assert summary["best"]["step"] == 10 and summary["still_improving"] is False
    lines = describe(summary)
    assert "best val/loss 0.5000 at step 10" in lines[1] and "still improving: no" in lines[1]


def test_history_survives_a_resume():
    report = _report([0.1, 0.2])
    report.train = [(5, 1.5), (10, 1.2)]
    again = RunReport()
    again.load_state_dict(report.state_dict())
    assert again.val == report.val and again.train == report.train


def test_a_training_run_writes_its_curve_and_summary(toy_run):
    summary = json.loads((toy_run / SUMMARY).read_text())
    assert summary["steps"] > 0 and summary["validations"] >= 1 and summary["monitor"] == "val/miou"
    assert 0 <= summary["best"]["metric"] <= 1 and summary["still_improving"] in (True, False)
    picture = np.asarray(Image.open(toy_run / CURVE).convert("RGB"))
    assert picture.shape[0] > 200 and picture.shape[1] > 400 and picture.std() > 0  # a drawn figure, not blank
