"""train every fold of a k-fold split, then summarise them (cv_summary.json, cv_summary.csv)"""

import hydra
from omegaconf import DictConfig

from segsuite.core.cli import guard, run
from segsuite.core.cv import cross_validate
from segsuite.core.errors import ConfigError


def _cv(cfg: DictConfig) -> dict:
    if str(cfg.get("fold")) != "all":
        raise ConfigError(f"fold={cfg.fold}: segsuite cv trains every fold; drop fold= (or run segsuite train "
                          f"fold={cfg.fold})")
    return cross_validate(cfg)


@hydra.main(version_base="1.3", config_path="pkg://segsuite.conf", config_name="cv")
def main(cfg: DictConfig) -> None:
    run(_cv, cfg)


if __name__ == "__main__":
    guard("cv")
    main()
