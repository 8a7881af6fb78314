"""Entry point: `segsuite predict [overrides]` (see conf/predict.yaml)."""

import hydra
from omegaconf import DictConfig

from segsuite.core.cli import guard, run
from segsuite.core.predict import predict


@hydra.main(version_base="1.3", config_path="pkg://segsuite.conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run(predict, cfg)


if __name__ == "__main__":
    guard("predict")
    main()
