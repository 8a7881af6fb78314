"""``segsuite evaluate domain=landcover baseline=rf``: a per-pixel Random Forest scored beside the model."""

import json
import os

import pytest

import segsuite.core.cli
import segsuite.core.evaluate
from tests.helpers import compose_config

DATA = ["domain.datamodule.datasets.patch_size=[32,32]", "domain.datamodule.datasets.holdout_block=32",
        "domain.datamodule.datasets.val_stems=[scene_001]"]


def _evaluate(overrides: list[str]):
    cfg = compose_config("evaluate", overrides)
    return segsuite.core.cli.run(segsuite.core.evaluate.evaluate, cfg)


def test_baseline_rf_is_scored_on_the_same_pixels_and_reported_beside_the_model(synthetic_root, tiny_checkpoint,
                                                                                  tmp_path):
    out = tmp_path / "eval"
    summary = _evaluate(["domain=landcover", f"checkpoint={tiny_checkpoint}", f"output_dir={out}", "baseline=rf",
                         f"domain.datamodule.datasets.root={synthetic_root}", *DATA])
    assert sorted(os.listdir(out / "baseline_rf")) == ["confusion.png", "metrics.json", "per_class.csv"]
    model = json.loads((out / "metrics.json").read_text())
    forest = json.loads((out / "baseline_rf" / "metrics.json").read_text())
    assert 0 <= forest["miou"] <= 1 and 0 <= forest["pixel_accuracy"] <= 1 and forest["trees"] == 100
    assert all(0 <= row["iou"] <= 1 for row in forest["per_class"])
    # the same pixels: the confusion matrices' rows (true classes) agree
    assert [sum(r) for r in forest["confusion_matrix"]] == [sum(r) for r in model["confusion_matrix"]]
    assert forest["pixel_accuracy"] > 0.5  # the synthetic classes differ in their band values
    assert summary["baseline_rf"]["miou"] == pytest.approx(forest["miou"])
    assert summary["model_vs_rf"].startswith(f"mIoU model {model['miou']:.3f} vs rf {forest['miou']:.3f}")


@pytest.mark.parametrize("overrides,message", [
    (["domain=landcover", "baseline=xgb"], "error: baseline='xgb' is not known; accepted: null (none) or rf"),
    (["domain=toy", "baseline=rf"], "error: baseline=rf is available for landcover, not for domain 'toy'"),
])
def test_a_bad_baseline_is_one_line_and_exit_2(tmp_path, capsys, overrides, message):
    with pytest.raises(SystemExit) as info:
        _evaluate([*overrides, "checkpoint=unused.ckpt", f"output_dir={tmp_path / 'eval'}"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.strip().startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "eval").exists()
