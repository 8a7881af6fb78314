"""Prediction over many inputs shared among processes launched by torchrun (two CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from segsuite.core.io import STAGING_PREFIX
from segsuite.domains.toy.data import toy_sample
from tests.helpers import ROOT, run_script


def _torchrun(*overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           str(ROOT / "scripts" / "predict.py"), *overrides], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def _inputs(folder, count: int = 5):
    folder.mkdir()
    for i in range(count):
        np.save(folder / f"img_{i}.npy", toy_sample(10 + i, 60 + 7 * i, 3, 3, 255)[0])
    return folder


def test_two_processes_write_what_one_writes_with_a_manifest(toy_run, tmp_path):
    ckpt = f"checkpoint={toy_run / 'checkpoints' / 'last.ckpt'}"
    inputs = _inputs(tmp_path / "in")
    run_script("predict", ckpt, f"input={inputs}", f"output={tmp_path / 'one'}", f"hydra.run.dir={tmp_path / 'h1'}")
    proc = _torchrun(ckpt, f"input={inputs}", f"output={tmp_path / 'two'}", f"hydra.run.dir={tmp_path / 'h2'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(one + ["segsuite_manifest.json"])
    for name in one:
        np.testing.assert_array_equal(np.load(tmp_path / "one" / name), np.load(tmp_path / "two" / name))
    manifest = json.loads((tmp_path / "two" / "segsuite_manifest.json").read_text())
    assert manifest["ranks"] == 2 and sorted(f["path"] for f in manifest["files"]) == one
    assert {f["rank"] for f in manifest["files"]} == {0, 1}
    assert not list(tmp_path.glob(STAGING_PREFIX + "*"))
