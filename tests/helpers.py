"""Helpers shared by tests: compose configs from conf/ and run the entry points as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# Shrinks a training run to seconds on 2 CPU cores.
FAST_TRAIN = [
    "trainer.max_epochs=1", "trainer.enable_model_summary=false",
    "domain.datamodule.datasets.n_train=8", "domain.datamodule.datasets.n_val=4",
    "domain.datamodule.datasets.n_test=4", "domain.datamodule.datasets.size=32", "domain.datamodule.batch_size=4",
]


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def run_script(script: str, *overrides: str, check: bool = True, timeout: int = 600,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>.py`` with Hydra overrides in a subprocess, as a user would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0", **(env or {})}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / f"{script}.py"), *overrides], cwd=ROOT,
                          capture_output=True, text=True, encoding="utf-8", errors="replace", env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def untrained_checkpoint(path: Path, meta: dict, domain: str, seed: int = 0) -> Path:
    """A loadable checkpoint of a small random U-Net (no training) for a domain's data ``meta`` (as its dataset
    builder reports it): enough to check that inputs reach the network prepared as in training."""
    import torch

    from segsuite.core.task import SegmentationTask

    model = {"_target_": "segsuite.core.models.create_model", "arch": "unet", "encoder_name": "resnet18",
             "encoder_depth": 3,
             "decoder_channels": [16, 8, 8], "in_channels": int(meta["in_channels"]),
             "classes": int(meta["num_classes"])}
    torch.manual_seed(seed)
    task = SegmentationTask(model=model, num_classes=int(meta["num_classes"]), class_names=list(meta["class_names"]),
                            ignore_index=int(meta.get("ignore_index", 255)), data_meta=meta, domain=domain)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": dict(task.hparams), "state_dict": task.state_dict()}, path)
    return path


def run_inline(script: str, *overrides: str) -> int:
    """``scripts/<script>.py`` (predict, evaluate, train) minus the subprocess and its 5-7 s of imports: the composed
    config through ``segsuite.core.cli.run``, the same one-line ``error: ...`` path; returns the exit status (read the
    error line with ``capsys``). Overrides naming ``hydra.*`` are dropped: no Hydra run directory is made here (train
    needs ``run_dir=...``)."""
    import importlib

    from segsuite.core.cli import run

    fn = getattr(importlib.import_module(f"segsuite.core.{script}"), script)
    cfg = compose_config(script, [o for o in overrides if not o.startswith("hydra.")])
    try:
        run(fn, cfg)
    except SystemExit as exit:
        return int(exit.code)
    return 0


class _Constant:
    """``n`` noise images (3, 16, 16) whose masks are all class 0: the target never changes."""

    meta = {"in_channels": 3, "num_classes": 2, "class_names": ["bg", "fg"], "ignore_index": 255}

    def __init__(self, n: int, seed: int) -> None:
        import torch

        self.images = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        import torch

        return {"image": self.images[i], "mask": torch.zeros(16, 16, dtype=torch.int64)}


def constant_datasets() -> dict:
    """Splits with a constant target (``domain.datamodule.datasets._target_`` of the early-stopping test)."""
    return {"train": _Constant(8, 0), "val": _Constant(4, 1)}
