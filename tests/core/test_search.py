"""The Optuna search (conf/hparams_search/landcover_quick.yaml, core/search.py): 4 tiny trials, interrupted after the
second, resumed by the same command to 4 finished trials, and the report shows them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from segsuite.core.report_page import write_report
from tests.helpers import ROOT

pytestmark = pytest.mark.slow  # about 45 s on 2 CPU cores: two starts of the command, 4 trainings

optuna = pytest.importorskip("optuna", reason="the search needs pip install -e '.[search]'")
pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")

TINY = ["domain.datamodule.datasets.synthetic_size=128", "domain.datamodule.datasets.holdout_block=64",
        "domain.datamodule.datasets.samples_per_epoch=4", "domain.datamodule.batch_size=4", "trainer.max_epochs=1",
        "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
        "logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
        "+model.encoder_depth=3", "+model.decoder_channels=[16,8,8]"]


def _search(sweep, data):
    args = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", "hparams_search=landcover_quick",
            f"hydra.sweep.dir={sweep}", "search_trials=4", f"domain.datamodule.datasets.root={data}", *TINY]
    # Ctrl-C as in a terminal: a suite started in the background by a shell inherits SIGINT ignored (POSIX), and a
    # Python child keeps ignoring it, so the interrupted search would run on to the end.
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "HYDRA_FULL_ERROR": "0"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _states(sweep):
    study = optuna.load_study(study_name="landcover_quick", storage=f"sqlite:///{sweep / 'study.db'}")
    return [t.state.name for t in study.trials]


def test_a_search_is_interrupted_resumes_and_reports_its_trials(tmp_path):
    sweep, data = tmp_path / "search", tmp_path / "data"
    proc = _search(sweep, data)
    deadline = time.time() + 240
    # The sweeper tells the study a trial's value only after its job returns, and starts the next job after that:
    # the third job's folder (<launch time>_2) is the first sign that two trials are COMPLETE in the study.
    while not list(sweep.glob("*_2")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C during the third trial
    proc.wait(60)
    first = _states(sweep)
    assert 2 <= first.count("COMPLETE") < 4, first
    resumed = _search(sweep, data)
    assert resumed.wait(240) == 0, resumed.stderr.read()[-2000:]
    states = _states(sweep)
    assert states.count("COMPLETE") == 4 and len(states) <= 5, states  # only the missing trials ran
    finished = [t for t in optuna.load_study(study_name="landcover_quick", storage=f"sqlite:///{sweep / 'study.db'}")
                .trials if t.state.name == "COMPLETE"]
    assert all(t.intermediate_values for t in finished)  # the pruning callback found each job's trial
    assert len({tuple(sorted(t.params.items())) for t in optuna.load_study(
        study_name="landcover_quick", storage=f"sqlite:///{sweep / 'study.db'}").trials}) > 1
    page = write_report(sweep)
    md = (page.parent / "table.md").read_text()
    assert md.count("COMPLETE") == 4 and "optimizer.lr" in md and (page.parent / "trials.png").is_file()
