"""Search pruning (core/pruning.py): the running trial found by its parameters gets every validation score, and a
run below the median of the finished trials stops."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

optuna = pytest.importorskip("optuna", reason="the search needs pip install -e '.[search]'")

from segsuite.core.pruning import SearchPruning  # noqa: E402

LR = optuna.distributions.LogUniformDistribution(1e-4, 1e-2)


def _study(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    for lr, scores in ((1e-3, [0.6, 0.8]), (2e-3, [0.5, 0.7])):  # two finished trials
        study.add_trial(optuna.trial.create_trial(params={"optimizer.lr": lr}, distributions={"optimizer.lr": LR},
                                                  value=scores[-1], intermediate_values=dict(enumerate(scores))))
    return storage, study


def _validations(callback, scores):
    trainer = SimpleNamespace(sanity_checking=False, global_rank=0, should_stop=False, callback_metrics={})
    stopped = []
    for score in scores:
        trainer.callback_metrics = {"val/miou": torch.tensor(score)}
        callback.on_validation_end(trainer, None)
        stopped.append(trainer.should_stop)
    return stopped


def test_a_hopeless_run_stops_after_the_warm_up_and_a_good_one_goes_on(tmp_path):
    storage, study = _study(tmp_path)
    for score, expected in ((0.1, [False, True]), (0.9, [False, False])):
        trial = study.ask({"optimizer.lr": LR})
        overrides = [f"optimizer.lr={trial.params['optimizer.lr']}", "trainer.max_steps=10"]
        callback = SearchPruning(storage, "s", n_startup_trials=2, n_warmup_steps=1, overrides=overrides)
        assert _validations(callback, [score, score]) == expected
        stored = optuna.load_study(study_name="s", storage=storage).trials[trial.number]
        assert stored.intermediate_values == {0: pytest.approx(score), 1: pytest.approx(score)}
        assert ("pruned_at_validation" in stored.user_attrs) == expected[-1]
        study.tell(trial, score)


def test_without_its_trial_a_run_is_not_pruned(tmp_path, caplog):
    storage, _ = _study(tmp_path)
    callback = SearchPruning(storage, "s", overrides=["optimizer.lr=0.5"])
    assert _validations(callback, [0.0, 0.0, 0.0]) == [False, False, False]
    assert caplog.text.count("not pruning this run") == 1
