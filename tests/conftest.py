"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import FAST_TRAIN, compose_config, run_script


@pytest.fixture
def compose_cfg():
    return compose_config


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """One tiny toy training run through the real entry point, shared by tests that need a checkpoint."""
    run_dir = tmp_path_factory.mktemp("toy_run")
    run_script("train", f"hydra.run.dir={run_dir}", *FAST_TRAIN, "trainer.max_epochs=2")
    return run_dir
