"""Entry point: `segsuite evaluate [overrides]` (see conf/evaluate.yaml)."""

import hydra
from omegaconf import DictConfig

from segsuite.core.cli import guard, run
from segsuite.core.evaluate import evaluate


@hydra.main(version_base="1.3", config_path="pkg://segsuite.conf", config_name="evaluate")
def main(cfg: DictConfig) -> None:
    run(evaluate, cfg)


if __name__ == "__main__":
    guard("evaluate")
    main()
