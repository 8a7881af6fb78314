"""Export (segsuite.core.export, scripts/export.py) and predict with an exported model (segsuite.core.runtime,
runtime=onnx|torchscript) on the toy domain, plus a hand-built checkpoint with a border channel."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import segsuite.core.export
from segsuite.core.checkpoint import describe
from segsuite.core.cli import run
from segsuite.core.contracts import DataMeta
from segsuite.core.errors import ConfigError
from segsuite.core.export import export
from segsuite.core.instances import InstanceTargets
from segsuite.core.io import STAGING_PREFIX
from segsuite.core.predict import load_job
from segsuite.core.runtime import file_sha256, read_metadata
from segsuite.core.task import SegmentationTask
from segsuite.domains.toy.data import toy_sample
from tests.export_checks import assert_export_parity, assert_runtime_matches_torch, export_file, predict_with
from tests.helpers import ROOT, compose_config, run_script

FORMATS = ["onnx", "torchscript"]
TILED = ["domain.inference.tile=[48,48]", "domain.inference.overlap=[16,16]", "tta=true"]  # padded tiles, blending
BORDER_META = {"in_channels": 3, "num_classes": 2, "class_names": ["ground", "building"], "ignore_index": 255,
               "class_colors": [[0, 0, 0], [200, 30, 30]], "normalization": {"mean": [0.1, 0.2, 0.3],
                                                                            "std": [1.0, 2.0, 3.0]},
               "bands": ["r", "g", "b"], "patch_size": [64, 64], "domain": "toy"}


@pytest.fixture(scope="module")
def checkpoint(toy_run) -> Path:
    return toy_run / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def models(checkpoint, tmp_path_factory) -> dict[str, Path]:
    """The toy checkpoint exported once per format: ONNX through the entry point, TorchScript by the function."""
    folder = tmp_path_factory.mktemp("exported")
    run_script("export", f"checkpoint={checkpoint}", "format=onnx", f"output={folder / 'toy.onnx'}",
               f"hydra.run.dir={folder / 'h'}")
    return {"onnx": folder / "toy.onnx", "torchscript": export_file(checkpoint, "torchscript", folder / "toy.pt")}


def hand_built_checkpoint(path: Path, arch: str = "Unet") -> Path:
    """An untrained checkpoint with a border channel (2 classes + the border logit), colours and normalisation."""
    torch.manual_seed(0)
    model = {"_target_": "segsuite.core.models.create_model", "arch": arch, "encoder_name": "resnet18",
             "encoder_weights": None, "in_channels": 3, "classes": 3}
    task = SegmentationTask(model, num_classes=2, class_names=["ground", "building"], data_meta=BORDER_META,
                            domain="toy", instances=InstanceTargets(things=["building"]).describe())
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def border(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """The hand-built border checkpoint and its exports."""
    folder = tmp_path_factory.mktemp("border")
    path = hand_built_checkpoint(folder / "border.ckpt")
    return path, {fmt: export_file(path, fmt, folder / f"border.{fmt}") for fmt in FORMATS}


@pytest.fixture
def image(tmp_path) -> Path:
    path = tmp_path / "in.npy"
    np.save(path, toy_sample(7, 150, 3, 3, 255)[0])
    return path


# ----------------------------------------------------------------------------------------------------------------
# Parity and metadata
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_logits_match_the_checkpoint(checkpoint, models, fmt):
    diffs = assert_export_parity(checkpoint, models[fmt], fmt)
    print(f"toy {fmt}: max |diff| {diffs}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_border_model_matches_with_its_border_logit(border, fmt):
    diffs = assert_export_parity(border[0], border[1][fmt], fmt)
    print(f"border {fmt}: max |diff| {diffs}")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["FPN", "fcn8s"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_other_architectures_export_with_dynamic_sizes(tmp_path, arch, fmt):
    checkpoint = hand_built_checkpoint(tmp_path / "model.ckpt", arch)
    diffs = assert_export_parity(checkpoint, export_file(checkpoint, fmt, tmp_path / f"model.{fmt}"), fmt)
    print(f"{arch} {fmt}: max |diff| {diffs}")


@pytest.mark.slow
def test_an_onnx_export_that_fixes_sizes_is_refused(tmp_path):
    checkpoint = hand_built_checkpoint(tmp_path / "model.ckpt", "PSPNet")  # adaptive pooling: baked by the exporter
    with pytest.raises(ConfigError, match="cannot export architecture 'PSPNet' to onnx: the file differs"):
        export_file(checkpoint, "onnx", tmp_path / "model.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_carries_what_predict_needs(checkpoint, models, fmt):
    stored = read_metadata(models[fmt])
    hp = describe(checkpoint)
    assert stored["format"] == fmt and stored["domain"] == "toy" and stored["segsuite_version"]
    assert stored["class_names"] == ["background", "class1", "class2"] and stored["num_classes"] == 3
    assert stored["data_meta"] == DataMeta.from_dict(hp["data_meta"]).to_dict()  # patch size, normalisation...
    assert stored["stride"] == 32 and stored["min_size"] == 0 and stored["model"] == hp["model"]
    assert stored["border_channel"] is False and stored["out_channels"] == 3 and stored["things"] == []
    assert stored["inference"] == {"tile": [256, 256], "overlap": [32, 32], "batch_size": 8, "blend": "gaussian"}
    assert stored["tta_flips"] == [-1, -2]


@pytest.mark.parametrize("fmt", FORMATS)
def test_metadata_round_trips_colours_normalisation_and_the_border_flag(border, fmt):
    stored = read_metadata(border[1][fmt])
    meta = DataMeta.from_dict(stored["data_meta"])
    assert meta == DataMeta.from_dict(BORDER_META)
    assert meta["normalization"] == BORDER_META["normalization"] and meta.class_colors == ((0, 0, 0), (200, 30, 30))
    assert stored["border_channel"] is True and stored["out_channels"] == 3 and stored["things"] == ["building"]


# ----------------------------------------------------------------------------------------------------------------
# Predict through the same pipeline
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_predict_writes_what_torch_writes(checkpoint, models, image, tmp_path, fmt):
    assert_runtime_matches_torch("toy", checkpoint, models[fmt], fmt, image, tmp_path, TILED)


def test_instances_with_a_border_channel_through_onnx(border, image, tmp_path):
    cfg = compose_config("predict", ["runtime=onnx", f"model_file={border[1]['onnx']}", "task=instance",
                                     f"input={image}", "output=x"])
    job = load_job(cfg)
    assert job.model.border and job.model.channels == 3 and job.model.things == ("building",)
    assert job.instancer.thing_ids == [1] and job.model.meta.class_names == ("ground", "building")
    assert_runtime_matches_torch("toy", border[0], border[1]["onnx"], "onnx", image, tmp_path, ["task=instance"])


def test_onnx_predict_runs_without_lightning(checkpoint, models, image, tmp_path):
    args = ["runtime=onnx", f"model_file={models['onnx']}", f"input={image}", f"output={tmp_path / 'onnx.npy'}",
            f"hydra.run.dir={tmp_path / 'h'}"]
    code = ("import runpy, sys\n"
            "sys.modules['lightning'] = sys.modules['pytorch_lightning'] = None  # import lightning fails\n"
            f"sys.argv = ['scripts/predict.py', *{args!r}]\n"
            "runpy.run_path('scripts/predict.py', run_name='__main__')\n"
            "assert not {'segsuite.core.task', 'segsuite.core.checkpoint'} & set(sys.modules), 'the training stack was "
            "imported'\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert predict_with("toy", image, tmp_path / "torch.npy", f"checkpoint={checkpoint}") == 0
    assert np.array_equal(np.load(tmp_path / "onnx.npy"), np.load(tmp_path / "torch.npy"))


# ----------------------------------------------------------------------------------------------------------------
# Refusals: one line, exit 2, nothing written
# ----------------------------------------------------------------------------------------------------------------


def _export_status(checkpoint: Path, output: Path, *extra: str) -> int:
    cfg = compose_config("export", [f"checkpoint={checkpoint}", f"output={output}", *extra])
    try:
        run(export, cfg)
    except SystemExit as exit:
        return int(exit.code)
    return 0


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_an_unknown_format_is_refused_on_the_command_line(checkpoint, tmp_path):
    proc = run_script("export", f"checkpoint={checkpoint}", "format=tflite", f"output={tmp_path / 'm'}",
                      f"hydra.run.dir={tmp_path / 'h'}", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: format='tflite' is not one of onnx, torchscript"
    assert not (tmp_path / "m").exists()


def test_an_existing_output_is_kept_without_overwrite(checkpoint, tmp_path, capsys):
    output = tmp_path / "model.pt"
    output.write_text("keep me")
    assert _export_status(checkpoint, output, "format=torchscript") == 2
    assert "already exists; pass overwrite=true" in _one_line(capsys) and output.read_text() == "keep me"


def test_a_torchscript_export_prints_the_sha256_that_predict_trusts(checkpoint, tmp_path, capsys):
    assert _export_status(checkpoint, tmp_path / "model.pt", "format=torchscript") == 0
    assert f"sha256 {file_sha256(tmp_path / 'model.pt')}" in capsys.readouterr().out


def test_an_exporter_failure_names_the_architecture_and_format(checkpoint, tmp_path, capsys, monkeypatch):
    def fail(*args):
        raise RuntimeError("Unsupported operator aten::mystery\nmore detail")

    monkeypatch.setitem(segsuite.core.export.WRITERS, "onnx", fail)
    assert _export_status(checkpoint, tmp_path / "model.onnx") == 2
    assert _one_line(capsys) == ("error: cannot export architecture 'Unet' to onnx: Unsupported operator "
                                 "aten::mystery; try format=torchscript")
    assert not list(tmp_path.iterdir())  # no output, no staging folder


@pytest.mark.parametrize("overrides, message", [
    (["runtime=tensorrt"], "runtime='tensorrt' is not one of torch, onnx, torchscript"),
    (["runtime=onnx"], "runtime=onnx needs model_file=PATH"),
    (["runtime=torchscript", "model_file=MODELS/onnx"], "as a TorchScript model"),
    (["runtime=onnx", "model_file=MODELS/torchscript"], "as an ONNX model"),
    (["runtime=onnx", "model_file=MODELS/onnx", "domain.name=other"], "was trained for domain 'toy', not 'other'"),
    (["runtime=onnx", "model_file=/nonexistent.onnx"], "model file /nonexistent.onnx does not exist"),
])
def test_bad_runtime_settings_exit_2_with_one_line(models, image, tmp_path, capsys, overrides, message):
    overrides = [o.replace("MODELS/onnx", str(models["onnx"])).replace("MODELS/torchscript", str(models["torchscript"]))
                 for o in overrides]
    assert predict_with("toy", image, tmp_path / "out.npy", *overrides) == 2
    assert message in _one_line(capsys)
    assert not (tmp_path / "out.npy").exists() and not list(tmp_path.glob(STAGING_PREFIX + "*"))


def test_a_checkpoint_is_read_once_per_file_version(checkpoint, image, tmp_path, monkeypatch):
    import segsuite.core.checkpoint as ckpt_module

    calls = []
    real = ckpt_module.load_task
    monkeypatch.setattr(ckpt_module, "load_task", lambda path: calls.append(path) or real(path))
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(Path(checkpoint).read_bytes())
    cfg = compose_config("predict", [f"checkpoint={copy}", f"input={image}", "output=x"])
    first, second = load_job(cfg), load_job(cfg)
    assert len(calls) == 1 and first.model.predictor is not second.model.predictor
    os.utime(copy, ns=(0, 10**9))  # a new version of the file (another mtime) is read again
    load_job(cfg)
    assert len(calls) == 2
