"""Does the U-Net border weighting separate adjacent buildings? Two short trainings on the same synthetic
land-cover scenes (terraced rows of houses 1 px apart), identical but for ``instances=border``, then the same
instance evaluation of both: building-instance F1 (matched at IoU > 0.5), PQ and mIoU, printed side by side."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from segsuite.core.evaluate import evaluate
from segsuite.core.train import train

CONF = Path(__file__).resolve().parents[2] / "conf"


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def _building(scores: dict[str, Any]) -> dict[str, Any]:
    return next(row for row in scores["per_class"] if row["class"] == "building")


def compare(work: Path, epochs: int, seed: int = 0, scenes: int = 2, size: int = 512,
            train_overrides: tuple[str, ...] = ()) -> dict[str, dict[str, float]]:
    """Train without and with border weighting on one synthetic data set and score both as instances
    (``train_overrides``: e.g. ``("trainer=gpu",)``)."""
    data = [f"domain.datamodule.datasets.root={work / 'data'}", f"domain.datamodule.datasets.synthetic_scenes={scenes}",
            f"domain.datamodule.datasets.synthetic_size={size}"]
    results = {}
    for name, extra in (("plain", ["instances=none"]), ("border", ["instances=border"])):
        run_dir = work / name
        metrics = train(_compose("train", ["domain=landcover", *extra, *data, f"trainer.max_epochs={epochs}",
                                           f"seed={seed}", f"run_dir={run_dir}", "logger=none",
                                           "trainer.enable_model_summary=false", *train_overrides]))
        scores = evaluate(_compose("evaluate", ["domain=landcover", *data, f"checkpoint={metrics['last_checkpoint']}",
                                                "task=instance", f"output_dir={run_dir / 'eval'}"]))
        building = _building(scores["panoptic"])
        results[name] = {"building_f1": building["f1"], "building_precision": building["precision"],
                         "building_recall": building["recall"], "building_pq": building["pq"],
                         "true_buildings": building["true_count"], "predicted_buildings": building["pred_count"],
                         "miou": scores["miou"]}
    return results


def run(quick: bool = False, epochs: int | None = None, train_overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    epochs = epochs or (10 if quick else 30)
    with tempfile.TemporaryDirectory() as tmp:
        results = compare(Path(tmp), epochs, train_overrides=train_overrides)
    plain, border = results["plain"], results["border"]
    print(f"\nborder weighting on the synthetic land-cover scenes ({epochs} epochs each, Unet-resnet18, same seed)")
    print(f"  {'':28s}{'plain':>10s}{'border':>10s}")
    for key in ("building_f1", "building_precision", "building_recall", "building_pq", "miou"):
        print(f"  {key:28s}{plain[key]:10.3f}{border[key]:10.3f}")
    for key in ("true_buildings", "predicted_buildings"):
        print(f"  {key:28s}{plain[key]:10d}{border[key]:10d}")
    print(f"  building F1 ratio border / plain: {border['building_f1'] / max(plain['building_f1'], 1e-9):.2f}")
    return json.loads(json.dumps(results))


# python -m segsuite.scripts.benchmarks.border [EPOCHS] [override ...], e.g. 100 trainer=gpu
if __name__ == "__main__":
    import sys

    run(epochs=int(sys.argv[1]) if len(sys.argv) > 1 else None, train_overrides=tuple(sys.argv[2:]))
