"""Prediction over many inputs shared among processes launched by torchrun or srun (two CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from segsuite.core.io import _HOST, STAGING_PREFIX
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _srun(rank: int, port: int, *overrides: str) -> subprocess.Popen:
    """One rank of a 2-task ``srun`` step (SLURM's variables, no launcher agent watching the ranks)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", SLURM_STEP_ID="0", SLURM_PROCID=str(rank),
               SLURM_NTASKS="2", SLURM_LOCALID=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "predict.py"), *overrides], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_when_a_rank_is_killed_the_other_names_it_and_stops_within_the_timeout(toy_run, tmp_path):
    ckpt = f"checkpoint={toy_run / 'checkpoints' / 'last.ckpt'}"
    inputs = _inputs(tmp_path / "in", 8)
    args = [ckpt, f"input={inputs}", f"output={tmp_path / 'out'}", "distributed_timeout=3"]
    port = _free_port()
    ranks = [_srun(r, port, *args, f"hydra.run.dir={tmp_path / f'h{r}'}") for r in (0, 1)]
    deadline = time.monotonic() + 120
    mine = f"{STAGING_PREFIX}{_HOST}-{ranks[1].pid}-"
    while not any(p.name.startswith(mine) for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ranks[1].poll() is None, "rank 1 ended before it could be killed"
    ranks[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    ranks[1].wait()  # reaped, as srun would: no zombie keeps its pid alive
    _, err = ranks[0].communicate(timeout=90)
    elapsed = time.monotonic() - killed
    assert ranks[0].returncode == 2, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("error: rank 1 stopped (no heartbeat for 3 s"), err[-3000:]
    assert elapsed < 60, f"rank 0 took {elapsed:.0f} s to stop"
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.glob(STAGING_PREFIX + "*")] == [f for f in os.listdir(tmp_path)
                                                                      if f.startswith(mine)]  # only the dead rank's
    run_script("predict", *args, f"hydra.run.dir={tmp_path / 'h2'}")  # the next run removes it
    assert not list(tmp_path.glob(STAGING_PREFIX + "*")) and len(list((tmp_path / "out").iterdir())) == 8


def test_a_rank_whose_peers_never_start_stops_within_the_timeout(toy_run, tmp_path):
    inputs = _inputs(tmp_path / "in", 2)
    rank0 = _srun(0, _free_port(), f"checkpoint={toy_run / 'checkpoints' / 'last.ckpt'}", f"input={inputs}",
                  f"output={tmp_path / 'out'}", "distributed_timeout=3", f"hydra.run.dir={tmp_path / 'h'}")
    _, err = rank0.communicate(timeout=120)
    assert rank0.returncode == 2 and "the ranks did not all join" in err.strip().splitlines()[-1], err[-3000:]
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(STAGING_PREFIX + "*"))
