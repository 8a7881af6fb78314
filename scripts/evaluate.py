"""Entry point: `python scripts/evaluate.py [overrides]` (see conf/evaluate.yaml)."""

import hydra
from omegaconf import DictConfig

from core.cli import guard, run
from core.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run(evaluate, cfg)


if __name__ == "__main__":
    guard()
    main()
