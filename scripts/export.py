"""Entry point: `segsuite export checkpoint=CKPT format=onnx|torchscript output=PATH` (conf/export.yaml)."""

import hydra
from omegaconf import DictConfig

from segsuite.core.cli import guard, run
from segsuite.core.export import export


@hydra.main(version_base="1.3", config_path="pkg://segsuite.conf", config_name="export")
def main(cfg: DictConfig) -> None:
    run(export, cfg)


if __name__ == "__main__":
    guard("export")
    main()
