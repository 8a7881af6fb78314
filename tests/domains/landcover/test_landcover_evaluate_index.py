"""Evaluate on a many-scene folder scores without building the training sampler's rare-class index."""

import pytest
import torch

from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.samples import LandCoverTrainDataset
from segsuite.domains.landcover.synthetic import make_dataset
from tests.domains.landcover.conftest import evaluate_with, make_job


class Always(torch.nn.Module):
    def forward(self, x):
        out = torch.zeros(x.shape[0], 6, *x.shape[-2:])
        out[:, 1] = 1.0
        return out


def test_evaluate_never_builds_the_sampler_index(tmp_path, trained_meta, monkeypatch):
    root = tmp_path / "data"
    make_dataset(root, n_scenes=6, size=48, seed=1)
    built = []

    def index(self, max_cells):
        built.append(max_cells)
        raise AssertionError("evaluate built the training sampler's index")

    monkeypatch.setattr(LandCoverTrainDataset, "_rare_class_index", index)
    data = {"root": root, "patch_size": "[32,32]", "holdout_block": 32, "holdout_fraction": 0.25,
            "rare_class_weighting": True, "test_stems": "[scene_004,scene_005]"}
    job = make_job(trained_meta, Always(), tile=(32, 32), overlap=(8, 8), batch_size=4)
    result = evaluate_with(job, [f"domain.datamodule.datasets.{k}={v}" for k, v in data.items()], tmp_path / "out")
    assert result["split"] == "test" and sum(map(sum, result["confusion_matrix"])) > 0 and built == []
    train = build_datasets(str(root), patch_size=32, holdout_fraction=0.25, holdout_block=32,
                           rare_class_weighting=True)["train"]
    with pytest.raises(AssertionError, match="built the training"):  # training draws build it, on the first one
        train[0]
