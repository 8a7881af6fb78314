"""`make demo`: train a small land-cover model on the embedded synthetic scenes, predict a scene with it, and
say where everything is. The same functions the entry points run (train, predict), composed from conf/.

Options are Hydra overrides for the training run (conf/demo.yaml), e.g. `python scripts/demo.py trainer.max_steps=100`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from segsuite.core.cli import run
from segsuite.core.predict import predict
from segsuite.core.train import train

ROOT = Path(__file__).resolve().parents[1]


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def main(overrides: list[str]) -> None:
    out = ROOT / "outputs" / "demo" / time.strftime("%Y-%m-%d_%H-%M-%S")
    # conf/demo.yaml: 200 steps of 64 px windows (about a minute and a half on 2 CPU cores) are enough for roads
    # and buildings to appear.
    train_cfg = _compose("demo", [f"run_dir={out / 'train'}", *overrides])
    data_root = ROOT / train_cfg.domain.datamodule.datasets.root
    print(f"[demo] training Unet-resnet18 on the synthetic land-cover scenes in {data_root} ...", flush=True)
    metrics = run(train, train_cfg)

    checkpoint = metrics["best_checkpoint"] or metrics["last_checkpoint"]  # the best validation score's weights
    scene = sorted((data_root / "images").glob("*.tif"))[0]
    prediction = out / "prediction" / f"{scene.stem}_classes.tif"
    predict_cfg = _compose("predict", [
        "domain=landcover", f"run_dir={out / 'prediction'}", f"checkpoint={checkpoint}",
        f"input={scene}", f"output={prediction}", "task=instance",  # classes, plus each building as a polygon
    ])
    print(f"[demo] predicting {scene} tile by tile (classes and building instances) ...", flush=True)
    written = run(predict, predict_cfg)

    val, test, best = metrics["val"], metrics["test"], metrics["best"]
    print("\n[demo] done")
    print(f"  validation mIoU {val.get('val/miou', float('nan')):.3f} at the end, best {best.get('score') or 0:.3f} "
          f"(step {best.get('step')}, kept as {Path(metrics['best_checkpoint']).name}), "
          f"pixel accuracy {val.get('val/pixel_accuracy', float('nan')):.3f}")
    if test:
        print(f"  test mIoU       {test.get('test/miou', float('nan')):.3f}  (the held-out blocks: the demo has no "
              "separate test scenes)")
    print(f"  run directory   {out / 'train'}  (metrics.json, checkpoints/, logs/)")
    print(f"  checkpoint      {checkpoint}")
    print("  prediction      " + "\n                  ".join(str(p) for p in _paths(written)))
    print("\n  next: segsuite evaluate domain=landcover "
          f"checkpoint={checkpoint}")
    (out / "demo.json").write_text(json.dumps({"metrics": metrics, "outputs": [str(p) for p in _paths(written)]},
                                              indent=2, default=str))


def _paths(written) -> list:
    if isinstance(written, dict):
        return [p for v in written.values() for p in (v if isinstance(v, list | tuple) else [v]) if p]
    return list(written) if isinstance(written, list | tuple) else [written]


if __name__ == "__main__":
    main(sys.argv[1:])
