"""Entry point: `python scripts/predict.py [overrides]` (see conf/predict.yaml)."""

import hydra
from omegaconf import DictConfig

from core.cli import guard, run
from core.predict import predict


@hydra.main(version_base="1.3", config_path="../conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    run(predict, cfg)


if __name__ == "__main__":
    guard()
    main()
