"""Command-line mistakes are one line and exit status 2; checkpoints are data and never run code."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from segsuite.core.cli import check_keys, check_overrides
from segsuite.core.io import STAGING_PREFIX
from segsuite.core.models.registry import NETWORK_FACTORIES
from tests.helpers import FAST_TRAIN, ROOT, run_script


@pytest.mark.parametrize("override,message", [
    ("domain=landcovr", "unknown domain 'landcovr'; choose one of camvid, cityscapes"),
    ("model=unett", "unknown model 'unett'; choose one of deeplabv3plus"),
    ("loss=dicee", "unknown loss 'dicee'"),
    ("model=out/model.onnx", "an exported model goes in runtime=onnx model_file=out/model.onnx)"),
    ("model=model.pt", "an exported model goes in runtime=torchscript model_file=model.pt)"),
    ("model=last.ckpt", "a checkpoint goes in checkpoint=last.ckpt)"),
])
def test_unknown_group_choice_is_one_line(override, message):
    assert message in check_overrides([override])


def test_the_entry_point_refuses_an_unknown_choice_before_hydra():
    proc = run_script("train", "domain=landcovr", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {check_overrides(['domain=landcovr'])}"


@pytest.mark.parametrize("args,message", [
    (["domain.inferense.tile=[64,64]"], "unknown key 'domain.inferense'; did you mean 'domain.inference'?"),
    (["domain.predict.tile=[64,64]"], "unknown key 'domain.predict'; did you mean 'domain.inference'?"),  # old name
    (["domain=landcover", "domain.inference.tiel=[64,64]"], "did you mean 'domain.inference.tile'?"),
    (["overwrit=true"], "unknown key 'overwrit'; did you mean 'overwrite'?"),
])
def test_a_misspelt_key_names_the_closest_one(args, message):
    assert check_keys(args, "predict") == message or message in check_keys(args, "predict")


def test_valid_keys_pass_the_key_check():
    assert check_keys(["domain.inference.tile=[64,64]", "hydra.run.dir=/x", "input=a", "+extra=1"], "predict") is None


def test_the_entry_point_refuses_a_misspelt_key_in_one_line(tmp_path):
    proc = run_script("predict", "domain.inferense.tile=[64,64]", "input=a.npy", "output=b.npy",
                      f"hydra.run.dir={tmp_path / 'h'}", check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "error: unknown key 'domain.inferense'; did you mean 'domain.inference'?"


def test_known_choices_and_plain_values_pass():
    assert check_overrides(["domain=toy", "model=unet,fcn", "model.arch=fcn8s", "trainer.max_epochs=3"]) is None


def test_missing_required_key_names_it_with_an_example(tmp_path):
    proc = run_script("predict", "checkpoint=x.ckpt", f"output={tmp_path / 'o.npy'}", f"hydra.run.dir={tmp_path}",
                      check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: missing input; give it on the command line")


@pytest.mark.parametrize("override,message", [
    ("domain.datamodule.batch_size=0", "domain.datamodule.batch_size=0: expected a whole number >= 1"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0: expected a whole number >= 1 (or -1: until stopped)"),
])
def test_numbers_out_of_range_are_refused(capsys, override, message):
    from segsuite.core.cli import run
    from segsuite.core.train import train
    from tests.helpers import compose_config

    cfg = compose_config("train", ["run_dir=unused", *FAST_TRAIN, override])
    with pytest.raises(SystemExit) as exit:
        run(train, cfg)
    err = capsys.readouterr().err.strip().splitlines()[-1]  # (Lightning may log its seed first)
    assert exit.value.code == 2 and err == f"error: {message}"


def test_ctrl_c_exits_130_and_leaves_nothing(toy_run, tmp_path):
    import numpy as np

    from segsuite.domains.toy.data import toy_sample

    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(24):
        np.save(inputs / f"{i}.npy", toy_sample(i, 700, 3, 3, 255)[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "predict.py"),
                             f"checkpoint={toy_run / 'checkpoints' / 'last.ckpt'}", f"input={inputs}",
                             f"output={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'h'}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            # a shell's background job ignores SIGINT and a child inherits that: a user's Ctrl-C reaches
                            # a foreground process, so give the child the default handling
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(STAGING_PREFIX + "*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "predict finished before it could be interrupted: give it more inputs"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err.strip().splitlines()[-1] == "error: interrupted; nothing was written", \
        (proc.returncode, err[-2000:])  # -6 (SIGABRT) once: a daemon thread inside torch at exit (engine._produce)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(STAGING_PREFIX + "*"))


EVIL = [("segsuite.core.io.write_json", ["VICTIM", {"pwned": True}]), ("subprocess.Popen", [["touch", "VICTIM"]]),
        ("os.system", ["touch VICTIM"]), ("builtins.exec", ["open('VICTIM', 'w').write('x')"])]


def _evil_checkpoint(toy_run, tmp_path, target: str, args: list):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    ckpt = torch.load(toy_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["model"] = {"_target_": target,
                                         "_args_": [str(victim) if a == "VICTIM" else a for a in args]}
    evil = tmp_path / f"evil_{target}.ckpt"
    torch.save(ckpt, evil)
    refusal = (f"checkpoint {evil} names the network factory {target!r}, which is not one of this project's "
               f"({', '.join(sorted(NETWORK_FACTORIES))}); refusing to build it")
    return evil, victim, refusal


@pytest.mark.parametrize("target,args", EVIL)
def test_a_checkpoint_naming_any_other_callable_is_refused(toy_run, tmp_path, target, args):
    from segsuite.core.checkpoint import load_task
    from segsuite.core.errors import ConfigError

    evil, victim, refusal = _evil_checkpoint(toy_run, tmp_path, target, args)
    with pytest.raises(ConfigError) as err:
        load_task(evil)
    assert str(err.value) == refusal
    assert victim.read_text() == "precious" and not (ROOT / "VICTIM").exists()


def test_predict_with_an_evil_checkpoint_exits_2_and_writes_nothing(toy_run, tmp_path):
    evil, victim, refusal = _evil_checkpoint(toy_run, tmp_path, *EVIL[0])
    proc = run_script("predict", f"checkpoint={evil}", "input=x.npy", f"output={tmp_path / 'o.npy'}",
                      f"hydra.run.dir={tmp_path / 'h'}", check=False)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {refusal}"
    assert victim.read_text() == "precious"


def test_a_nested_target_in_the_network_arguments_is_refused(toy_run, tmp_path):
    from segsuite.core.checkpoint import load_task
    from segsuite.core.errors import ConfigError

    victim = tmp_path / "victim.txt"
    ckpt = torch.load(toy_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"]["model"]["encoder_name"] = {"_target_": "segsuite.core.io.write_json", "path": str(victim),
                                                         "data": 1}
    torch.save(ckpt, tmp_path / "nested.ckpt")
    with pytest.raises(ConfigError, match=r"arguments \['encoder_name'\] are not plain values"):
        load_task(tmp_path / "nested.ckpt")
    assert not victim.exists()
