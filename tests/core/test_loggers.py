"""logger=mlflow: a local MLflow store that MLflow's own client reads back."""

from mlflow.tracking import MlflowClient

from segsuite.core.train import train
from tests.helpers import FAST_TRAIN


def test_mlflow_logger_writes_a_local_store(compose_cfg, tmp_path):
    run_dir = tmp_path / "runs" / "one"
    cfg = compose_cfg("train", [f"run_dir={run_dir}", *FAST_TRAIN, "logger=mlflow", "trainer.limit_train_batches=1",
                                "trainer.limit_val_batches=1", "trainer.limit_test_batches=1",
                                "trainer.enable_progress_bar=false"])
    train(cfg)
    store = tmp_path / "runs" / "mlruns"  # the default: beside the run directories
    assert store.is_dir() and (run_dir / "logs" / "csv" / "metrics.csv").is_file()  # the CSV log is kept too
    client = MlflowClient(tracking_uri=f"file:{store}")
    experiment = client.get_experiment_by_name("toy")
    (run,) = client.search_runs([experiment.experiment_id])
    assert 0 <= run.data.metrics["val/miou"] <= 1 and "test/miou" in run.data.metrics
    assert [m.step for m in client.get_metric_history(run.info.run_id, "lr-AdamW")] == [0]
    assert run.data.params["domain"] == "toy"


def test_an_unwritable_tracking_folder_is_one_line(compose_cfg, tmp_path, capsys):
    import os

    import pytest

    from segsuite.core.cli import run

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    folders = [blocker / "mlruns", "/proc/segsuite_mlruns"]  # under a file; on a filesystem nobody writes, root too
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o555)
        folders.append(tmp_path / "ro" / "mlruns")
    for folder in folders:
        cfg = compose_cfg("train", [f"run_dir={tmp_path / 'run'}", *FAST_TRAIN, "logger=mlflow",
                                    f"logger.mlflow.tracking_uri={folder}"])
        with pytest.raises(SystemExit) as exit:
            run(train, cfg)
        err = capsys.readouterr().err.strip().splitlines()
        assert exit.value.code == 2 and len(err) == 1, err
        assert err[0].startswith(f"error: logger=mlflow cannot write its tracking folder {folder}")
