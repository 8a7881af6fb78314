"""Entry point: `segsuite train [overrides]` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from segsuite.core.cli import guard, run
from segsuite.core.train import train


@hydra.main(version_base="1.3", config_path="pkg://segsuite.conf", config_name="train")
def main(cfg: DictConfig) -> None:
    run(train, cfg)


if __name__ == "__main__":
    guard("train")
    main()
