"""Entry point: `segsuite train [overrides]` (see conf/train.yaml)."""

import hydra
from omegaconf import DictConfig

from segsuite.core.cli import guard, run
from segsuite.core.cv import objective
from segsuite.core.search import register_resolvers
from segsuite.core.train import train

register_resolvers()  # ${trials_left:...} of the search configs (conf/hparams_search)


@hydra.main(version_base="1.3", config_path="pkg://segsuite.conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Returns the run's best validation score: what a search (``-m hparams_search=...``) optimises."""
    metrics = run(train, cfg)
    return objective(metrics) if isinstance(metrics, dict) and "best" in metrics else None


def _search_needs_optuna() -> None:
    """``hparams_search=...`` without Hydra's Optuna sweeper installed: one line, exit 2."""
    import importlib.util
    import sys

    if any(a.startswith("hparams_search=") for a in sys.argv[1:]) and \
            importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None:
        print("error: hparams_search needs Hydra's Optuna sweeper; pip install -e '.[search]'", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    _search_needs_optuna()
    guard("train")
    main()
