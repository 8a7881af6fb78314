"""Ensembles (core/ensemble.py): two checkpoints predict as one model whose probabilities are the mean of theirs,
through the one pipeline: a land-cover scene through the streaming engine and an MRI volume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segsuite.core.api import Segmenter, compose_predict
from segsuite.core.ensemble import StackedLogits, checkpoint_paths, mean_probabilities
from segsuite.core.errors import ConfigError
from tests.helpers import run_inline, untrained_checkpoint

# Overlapping Gaussian-blended windows and column bands: each model's logits are blended on their own before the
# probabilities are averaged (core/ensemble.py), so the ensemble equals the mean of the single runs everywhere.
LANDCOVER = ["domain.inference.tile=[32,32]", "domain.inference.overlap=[12,12]", "domain.inference.blend=gaussian",
             "domain.inference.band=40"]


def _probabilities(paths, domain, x, overrides=()):
    cfg = compose_predict([f"domain={domain}", f"checkpoint=[{','.join(str(p) for p in paths)}]", "device=cpu",
                           *overrides])
    return Segmenter(cfg).predict(x, probabilities=True)


def test_mean_probabilities_is_the_log_of_the_mean_softmax():
    torch.manual_seed(0)
    nets = [torch.nn.Conv2d(3, 4, 1) for _ in range(3)]
    x = torch.randn(1, 3, 5, 5)
    expected = torch.stack([n(x)[0].softmax(0) for n in nets]).mean(0)
    stacked = StackedLogits(nets, 4)(x)[0]  # (3 * 4, 5, 5): every model's logits, blended by the engine as they are
    torch.testing.assert_close(mean_probabilities(stacked, 3).softmax(0), expected, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def landcover(tmp_path_factory):
    from segsuite.domains.landcover.dataset import build_datasets
    from segsuite.domains.landcover.synthetic import make_dataset

    root = tmp_path_factory.mktemp("lc") / "data"
    make_dataset(root, n_scenes=2, size=96, seed=3)
    meta = build_datasets(str(root), patch_size=32, val_stems=["scene_001"])["train"].meta
    ckpts = [untrained_checkpoint(root.parent / f"m{s}.ckpt", meta, "landcover", seed=s) for s in (1, 2)]
    return root / "images" / "scene_000.tif", ckpts


def test_landcover_ensemble_streams_the_mean_of_the_models_probabilities(landcover):
    scene, ckpts = landcover
    single = Segmenter(compose_predict(["domain=landcover", f"checkpoint={ckpts[0]}", *LANDCOVER]))
    job = single.job()
    opened = single.reader.open(single.reader.find(scene, job)[0], job)
    assert opened.streaming  # the raster goes through the strip merger, window by window
    opened.close()
    singles = [_probabilities([c], "landcover", scene, LANDCOVER) for c in ckpts]
    both = _probabilities(ckpts, "landcover", scene, LANDCOVER)
    mean = (singles[0].probabilities + singles[1].probabilities) / 2
    valid = both.classes != 255  # the scene's nodata border
    assert valid.sum() > 0 and both.probabilities.shape == mean.shape
    np.testing.assert_allclose(both.probabilities[:, valid], mean[:, valid], atol=1e-6, rtol=0)
    np.testing.assert_array_equal(both.classes[valid], mean.argmax(0)[valid])
    assert not np.array_equal(singles[0].classes, singles[1].classes)  # two different models


def test_mri_ensemble_volume_is_the_mean_of_the_models_probabilities(tmp_path):
    from segsuite.domains.mri_dixon.dataset import build_datasets
    from segsuite.domains.mri_dixon.phantom import make_dataset

    root = make_dataset(tmp_path / "Dataset001_Dixon", n_cases=2, shape=(32, 32, 8), spacing=(3.0, 3.0, 6.0),
                        seed=7, n_test=1)
    meta = build_datasets(str(root), patch_size=[32, 32])["train"].meta
    ckpts = [untrained_checkpoint(tmp_path / f"m{s}.ckpt", meta, "mri_dixon", seed=s) for s in (1, 2)]
    case = sorted((root / "imagesTs").glob("*_000?.nii.gz"))
    singles = [_probabilities([c], "mri_dixon", case) for c in ckpts]
    both = _probabilities(ckpts, "mri_dixon", case)
    mean = (singles[0].probabilities + singles[1].probabilities) / 2
    assert both.probabilities.ndim == 4 and both.probabilities.shape == mean.shape
    np.testing.assert_allclose(both.probabilities, mean, atol=1e-6, rtol=0)


def test_models_of_another_domain_or_classes_are_refused(landcover, tmp_path, capsys):
    scene, ckpts = landcover
    meta = {"in_channels": 3, "num_classes": 3, "class_names": ["a", "b", "c"], "ignore_index": 255}
    toy = untrained_checkpoint(tmp_path / "toy.ckpt", meta, "landcover")
    status = run_inline("predict", "domain=landcover", f"checkpoint=[{ckpts[0]},{toy}]", f"input={scene}",
                        f"output={tmp_path / 'out.tif'}", "device=cpu")
    err = capsys.readouterr().err.strip()
    assert status == 2 and err.startswith(f"error: checkpoint {toy} differs from {ckpts[0]} in its classes")
    assert not (tmp_path / "out.tif").exists()
    with pytest.raises(ConfigError, match="without fold_"):
        checkpoint_paths(str(tmp_path))


def test_an_ensemble_exports_to_one_onnx_file_that_predicts_the_mean(landcover, tmp_path):
    import json

    import onnx

    scene, ckpts = landcover
    path = tmp_path / "ensemble.onnx"
    assert run_inline("export", f"checkpoint=[{ckpts[0]},{ckpts[1]}]", "format=onnx", f"output={path}") == 0
    metadata = json.loads({p.key: p.value for p in onnx.load(str(path)).metadata_props}["segsuite"])
    assert [m["file"] for m in metadata["ensemble"]] == [c.name for c in ckpts]
    assert metadata["out_channels"] == metadata["num_classes"]
    whole = ["domain.inference.tile=[96,96]", "domain.inference.overlap=[0,0]", "domain.inference.band=null"]
    exported = Segmenter(compose_predict(["domain=landcover", "runtime=onnx", f"model_file={path}", *whole]))
    got = exported.predict(scene, probabilities=True)
    both = _probabilities(ckpts, "landcover", scene, whole)  # one window: no blending to tell them apart
    valid = both.classes != 255
    np.testing.assert_allclose(got.probabilities[:, valid], both.probabilities[:, valid], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(got.classes, both.classes)
