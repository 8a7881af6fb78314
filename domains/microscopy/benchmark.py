"""Real nuclei: ``segsuite benchmark microscopy [--quick]``. StarDist's wheel ships a fluorescence image with instance
labels (``stardist/data/images/img2d.tif``, ``mask2d.tif``: 512 x 512, many touching nuclei), read out of the wheel
(``SEGSUITE_STARDIST_WHEEL`` or ``/tmp/sd/*.whl``) or the installed package. ``segsuite train domain=microscopy`` on the
top half with every default, ``task=instance`` on the bottom half, against what a biologist does without deep
learning (Gaussian blur, Otsu threshold, distance-transform watershed from ``peak_local_max`` markers); SEG, DET and
F1 at IoU 0.5 of both, wall times and load average. ``--quick`` trains 10 steps (a smoke check, not the result)."""

from __future__ import annotations

import glob
import importlib.util
import io
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import watershed

from hydra import compose, initialize_config_dir

from segsuite.core.api import Segmenter
from segsuite.core.cli import CONF
from segsuite.core.instances import PanopticMetrics
from segsuite.core.train import train
from segsuite.domains.microscopy.data import normalize, write_tiff
from segsuite.domains.microscopy.metrics import ctc_counts, det_measure, seg_measure


def stardist_pair() -> tuple[np.ndarray, np.ndarray]:
    """``img2d.tif`` and ``mask2d.tif`` from the StarDist wheel (or the installed package); exit 2 without one."""
    wheels = [os.environ.get("SEGSUITE_STARDIST_WHEEL", "")] + sorted(glob.glob("/tmp/sd/stardist-*.whl"))
    for wheel in filter(os.path.isfile, wheels):
        with zipfile.ZipFile(wheel) as zf:
            return tuple(tifffile.imread(io.BytesIO(zf.read(f"stardist/data/images/{n}.tif")))  # type: ignore
                         for n in ("img2d", "mask2d"))
    spec = importlib.util.find_spec("stardist")
    if spec and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
        return tifffile.imread(folder / "img2d.tif"), tifffile.imread(folder / "mask2d.tif")
    print("error: benchmark microscopy needs StarDist's wheel: pip download --no-deps stardist, then set "
          "SEGSUITE_STARDIST_WHEEL=<the .whl> (or pip install --no-deps stardist)", file=sys.stderr)
    raise SystemExit(2)


def otsu_watershed(image: np.ndarray, sigma: float = 2.0, min_distance: int = 5) -> np.ndarray:
    """The classical pipeline: blur, Otsu foreground, watershed of the distance transform from its local maxima."""
    smooth = gaussian(normalize(image[None])[0], sigma)
    foreground = smooth > threshold_otsu(smooth)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=ndimage.label(foreground)[0])
    markers = np.zeros(image.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground)


def _train(overrides: list[str]) -> dict[str, Any]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return train(compose(config_name="train", overrides=overrides))


def scores(truth: np.ndarray, computed: np.ndarray) -> dict[str, float]:
    counts = ctc_counts(truth, computed)
    pq = PanopticMetrics(2, [1], ["background", "nucleus"])
    pq.update((computed > 0).astype(np.int64), computed, (truth > 0).astype(np.int64), truth)
    return {"seg": seg_measure(counts), "det": det_measure(counts), "f1_50": pq.compute()["f1"],
            "objects": int(len(np.unique(computed)) - 1)}


def run(quick: bool = False) -> dict[str, Any]:
    image, mask = stardist_pair()
    half = image.shape[0] // 2
    load, start = [os.getloadavg()[0]], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segsuite-microscopy-") as tmp:
        root = Path(tmp) / "data"
        write_tiff(root / "images" / "top.tif", image[:half])
        write_tiff(root / "masks" / "top.tif", mask[:half])
        data = ["domain=microscopy", f"domain.datamodule.datasets.root={root}",
                "domain.datamodule.datasets.synthetic_if_missing=false"]
        trained = _train([*data, f"run_dir={tmp}/train", *(["trainer.max_steps=10"] if quick else [])])
        train_s, load = time.perf_counter() - start, [*load, os.getloadavg()[0]]
        checkpoint = trained.get("best_checkpoint") or trained["last_checkpoint"]
        seg = Segmenter.from_checkpoint(checkpoint, device="cpu")
        start = time.perf_counter()
        ours = seg.predict(image[half:], mode="instance").instances
        predict_s = time.perf_counter() - start
    start = time.perf_counter()
    classical = otsu_watershed(image[half:])
    result = {"ours": scores(mask[half:], ours), "otsu_watershed": scores(mask[half:], classical),
              "truth_objects": int(len(np.unique(mask[half:])) - 1), "train_seconds": round(train_s, 1),
              "predict_seconds": round(predict_s, 2), "classical_seconds": round(time.perf_counter() - start, 2),
              "load_average_1m": [round(v, 2) for v in [*load, os.getloadavg()[0]]], "quick": quick}
    print(f"\nStarDist's img2d.tif: train on the top half, score the bottom half ({result['truth_objects']} nuclei)")
    for name in ("ours", "otsu_watershed"):
        r = result[name]
        print(f"  {name:15s} SEG {r['seg']:.3f}  DET {r['det']:.3f}  F1@0.5 {r['f1_50']:.3f}  ({r['objects']} objects)")
    print(f"  training {result['train_seconds']} s, predict {result['predict_seconds']} s, classical "
          f"{result['classical_seconds']} s; load average {result['load_average_1m']}")
    return result
