"""Entry point: `python scripts/train.py [overrides]` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from core.cli import guard, run
from core.train import train


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run(train, cfg)


if __name__ == "__main__":
    guard()
    main()
