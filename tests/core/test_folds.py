"""K-fold splits over whole items (core/folds.py) and the cross-validation summary (core/cv.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from segsuite.core import folds
from segsuite.core.cv import cross_validate
from segsuite.core.errors import ConfigError
from tests.helpers import compose_config, run_inline, run_script

NAMES = [f"case{i:02d}" for i in range(11)]
TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "logger=none", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false"]
SMALL_NET = ["+model.encoder_depth=3", "+model.decoder_channels=[16,8,8]"]


def test_kfold_covers_every_item_once_and_is_seeded():
    splits = folds.kfold(NAMES, 5, seed=3)
    vals = [n for f in splits for n in f["val"]]
    assert sorted(vals) == NAMES and len(splits) == 5
    assert all(set(f["train"]) == set(NAMES) - set(f["val"]) for f in splits)
    assert sorted(len(f["val"]) for f in splits) == [2, 2, 2, 2, 3]
    assert folds.kfold(NAMES, 5, seed=3) == splits and folds.kfold(NAMES, 5, seed=4) != splits


def test_groups_stay_whole():
    groups = [n[:-1] for n in NAMES]  # case0x and case1x
    names = [f"{c}_{i}" for c in "abcdef" for i in range(3)]
    splits = folds.kfold(names, 3, seed=0, groups=[n[0] for n in names])
    for f in splits:
        assert not {n[0] for n in f["val"]} & {n[0] for n in f["train"]}
    with pytest.raises(ConfigError, match="folds=5 but the data has 2 groups"):
        folds.kfold(NAMES, 5, groups=groups)


@pytest.mark.parametrize("fold,count,message", [
    (5, 5, "fold=5: expected a whole number from 0 to 4"), (0, 1, "folds=1: expected a whole number >= 2"),
    ("x", 5, "fold='x'"),
])
def test_bad_fold_options_are_one_line(fold, count, message):
    with pytest.raises(ConfigError, match=message):
        folds.FoldRequest(fold, count)


def test_assign_reads_a_users_splits_file(tmp_path):
    path = tmp_path / "splits_final.json"
    path.write_text(json.dumps([{"train": NAMES[2:], "val": NAMES[:2]}, {"train": NAMES[:2], "val": NAMES[2:]}]))
    assert folds.assign(NAMES) is None  # no request: the domain splits as before
    with folds.requested(folds.FoldRequest(1, path=str(path))) as request:
        assert folds.assign(NAMES) == (NAMES[:2], NAMES[2:])
    assert request.folds == 2 and request.splits[0]["val"] == NAMES[:2]
    with folds.requested(folds.FoldRequest(0, path=str(path))), pytest.raises(ConfigError, match="not items"):
        folds.assign(NAMES[:5])


def _check_summary(cv_dir, count):
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    metrics = [json.loads((cv_dir / f"fold_{k}" / "metrics.json").read_text()) for k in range(count)]
    assert summary["folds"] == count and "val/miou" in summary["mean"]
    for name in summary["metrics"]:
        part = name.split("/")[0]
        values = np.array([m[part].get(name, math.nan) for m in metrics], float)
        if np.isfinite(values).any():
            assert summary["mean"][name] == pytest.approx(float(np.nanmean(values)), abs=1e-12)
    vals = [set(json.loads((cv_dir / f"fold_{k}" / "splits.json").read_text())[k]["val"]) for k in range(count)]
    assert all(not a & b for i, a in enumerate(vals) for b in vals[i + 1:])  # every fold validates other items
    rows = (cv_dir / "cv_summary.csv").read_text().splitlines()
    assert rows[0] == ",".join(["metric", *(f"fold_{k}" for k in range(count)), "mean", "sd"])
    return summary


def test_toy_cv_summary_is_the_mean_of_the_folds(tmp_path):
    cv_dir = tmp_path / "cv"
    cfg = compose_config("cv", [f"run_dir={cv_dir}", "folds=2", *TINY, *SMALL_NET,
                                "domain.datamodule.datasets.n_train=6", "domain.datamodule.datasets.n_val=3",
                                "domain.datamodule.datasets.n_test=2", "domain.datamodule.datasets.size=32",
                                "domain.datamodule.batch_size=3"])
    cross_validate(cfg)
    summary = _check_summary(cv_dir, 2)
    assert {"val/iou_class1", "test/iou_background"} <= set(summary["mean"])  # per class


def test_mri_phantom_5_fold_cv(tmp_path):
    """``segsuite cv domain=mri_dixon ...`` in process (the command is a thin wrapper of cross_validate)."""
    cv_dir = tmp_path / "cv"
    cross_validate(compose_config("cv", [
        f"run_dir={cv_dir}", "domain=mri_dixon", *TINY, *SMALL_NET, "domain.datamodule.batch_size=2",
        f"domain.datamodule.datasets.root={tmp_path / 'phantom'}", "domain.datamodule.datasets.synthetic_cases=5",
        "domain.datamodule.datasets.synthetic_shape=[32,32,4]"]))
    _check_summary(cv_dir, 5)
    vals = [json.loads((cv_dir / f"fold_{k}" / "splits.json").read_text())[k]["val"] for k in range(5)]
    assert all(len(val) == 1 for val in vals) and len({val[0] for val in vals}) == 5  # each case validated once


def test_landcover_5_fold_cv_over_spatial_blocks(tmp_path):
    cv_dir = tmp_path / "cv"
    data = {"root": str(tmp_path / "scenes"), "synthetic_scenes": 2, "synthetic_size": 128, "patch_size": [32, 32],
            "holdout_block": 64, "samples_per_epoch": 4}
    run_script("cv", f"hydra.run.dir={cv_dir}", "domain=landcover", *TINY, "domain.datamodule.batch_size=4",
               *(f"domain.datamodule.datasets.{k}={json.dumps(v)}" for k, v in data.items()),
               *SMALL_NET)
    _check_summary(cv_dir, 5)
    splits = json.loads((cv_dir / "splits.json").read_text()) if (cv_dir / "splits.json").exists() else \
        json.loads((cv_dir / "fold_0" / "splits.json").read_text())
    assert len({n for f in splits for n in f["val"]}) == 8 and all(":" in n for n in splits[0]["val"])


def test_a_fold_beyond_the_data_is_one_line(tmp_path, capsys):
    assert run_inline("train", f"run_dir={tmp_path / 'run'}", "fold=7", "folds=5") == 2
    assert capsys.readouterr().err.strip() == "error: fold=7: expected a whole number from 0 to 4 (folds=5), or all"
    assert not (tmp_path / "run" / "splits.json").exists()


def test_road_folds_keep_cities_whole_and_the_test_split():
    from pathlib import Path

    from segsuite.domains.road_scene.datasets import _fold, _Layout

    def pairs(split, city, n):
        return [(Path(f"/d/leftImg8bit/{split}/{city}/{city}_{i:06d}_leftImg8bit.png"), Path(f"/d/gt/{city}_{i}.png"))
                for i in range(n)]

    splits = {"train": pairs("train", "aachen", 3) + pairs("train", "bonn", 2), "val": pairs("val", "lindau", 2),
              "test": pairs("test", "berlin", 1)}
    layout = _Layout({k: list(v) for k, v in splits.items()}, decode=None, meta={},
                     instances={k: [p for _, p in v] for k, v in splits.items()})
    with folds.requested(folds.FoldRequest(0, 3)) as request:
        _fold(layout, "cityscapes")
    cities = {split: {img.parent.name for img, _ in layout.splits[split]} for split in ("train", "val")}
    assert len(cities["val"]) == 1 and not cities["val"] & cities["train"] and len(request.splits) == 3
    assert layout.splits["test"] == splits["test"] and len(layout.splits["train"]) + len(layout.splits["val"]) == 7
    assert [p for _, p in layout.splits["val"]] == layout.instances["val"]  # instance files follow their images
    assert request.splits[0]["val"][0].startswith(f"{next(iter(cities['val']))}/")
