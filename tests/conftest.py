"""Shared fixtures, and how the suite shares the cores (``make test`` runs it on every core with pytest-xdist)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import FAST_TRAIN, compose_config, run_script

if os.environ.get("PYTEST_XDIST_WORKER"):  # one of several test processes: one core's worth of torch threads each
    os.environ["OMP_NUM_THREADS"] = "1"  # and so for the commands the tests start
    import torch

    torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--dist loadgroup``, a domain's tests go to one worker (their session fixtures train a model once), the
    rest file by file. Without pytest-xdist installed nothing is marked (its marker is unknown then)."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        parts = item.path.relative_to(Path(__file__).parent).parts
        group = parts[1] if parts[0] == "domains" and len(parts) > 2 else "/".join(parts)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def compose_cfg():
    return compose_config


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """One tiny toy training run through the real entry point, shared by tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("toy_run")
    run_script("train", f"hydra.run.dir={run_dir}", *FAST_TRAIN, "trainer.max_epochs=2")
    return run_dir
