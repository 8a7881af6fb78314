"""``segsuite benchmark microscopy``: StarDist's nuclei (``img2d.tif`` + ``mask2d.tif``, 512 px, read from its wheel).
Train with the defaults on the top half, ``task=instance`` on the bottom half, against blur + Otsu + distance-transform
watershed; SEG, DET, F1 at IoU 0.5, times, load. ``--quick``: 10 steps, a smoke check."""

from __future__ import annotations

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
from hydra import compose, initialize_config_dir
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import gaussian, threshold_otsu
from skimage.segmentation import watershed

from segsuite.core.api import Segmenter
from segsuite.core.cli import CONF
from segsuite.core.instances import PanopticMetrics
from segsuite.core.train import train
from segsuite.domains.microscopy.data import normalize, write_tiff
from segsuite.domains.microscopy.metrics import ctc_counts, det_measure, seg_measure


def stardist_pair() -> list[np.ndarray]:
    """StarDist's ``img2d.tif`` and ``mask2d.tif``; exit 2 with one line without them."""
    for wheel in filter(os.path.isfile, [os.getenv("SEGSUITE_STARDIST_WHEEL", ""), *Path("/tmp/sd").glob("*.whl")]):
        with zipfile.ZipFile(wheel) as zf:
            return [tifffile.imread(io.BytesIO(zf.read(f"stardist/data/images/{n}.tif"))) for n in ("img2d", "mask2d")]
    spec = importlib.util.find_spec("stardist")
    if spec and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "images"
        return [tifffile.imread(folder / f"{n}.tif") for n in ("img2d", "mask2d")]
    print("error: benchmark microscopy needs StarDist's wheel: pip download --no-deps stardist, then "
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


def scores(truth: np.ndarray, computed: np.ndarray) -> dict[str, float]:
    counts, pq = ctc_counts(truth, computed), PanopticMetrics(2, [1])
    pq.update((computed > 0).astype(np.int64), computed, (truth > 0).astype(np.int64), truth)
    return {"seg": seg_measure(counts), "det": det_measure(counts), "f1_50": pq.compute()["f1"],
            "objects": int(len(np.unique(computed)) - 1)}


def run(quick: bool = False) -> dict[str, Any]:
    image, mask = stardist_pair()
    half, load, start = image.shape[0] // 2, [os.getloadavg()[0]], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segsuite-microscopy-") as tmp:
        for folder, array in (("images", image), ("masks", mask)):
            write_tiff(Path(tmp) / "data" / folder / "top.tif", array[:half])
        overrides = ["domain=microscopy", f"domain.datamodule.datasets.root={tmp}/data", f"run_dir={tmp}/train",
                     "domain.datamodule.datasets.synthetic_if_missing=false", *(["trainer.max_steps=10"] * quick)]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            trained = train(compose(config_name="train", overrides=overrides))
        train_s, load = time.perf_counter() - start, [*load, os.getloadavg()[0]]
        seg = Segmenter.from_checkpoint(trained.get("best_checkpoint") or trained["last_checkpoint"], device="cpu")
        start = time.perf_counter()
        ours = seg.predict(image[half:], mode="instance").instances
    predict_s, start = time.perf_counter() - start, time.perf_counter()
    classical = otsu_watershed(image[half:])
    r = {"ours": scores(mask[half:], ours), "otsu_watershed": scores(mask[half:], classical),
         "truth_objects": int(len(np.unique(mask[half:])) - 1), "train_seconds": round(train_s, 1),
         "predict_seconds": round(predict_s, 2), "classical_seconds": round(time.perf_counter() - start, 2),
         "load_average_1m": [round(v, 2) for v in [*load, os.getloadavg()[0]]], "quick": quick}
    print(f"\nStarDist's img2d.tif: trained on the top half, the bottom half scored ({r['truth_objects']} nuclei)")
    for name in ("ours", "otsu_watershed"):
        s = r[name]
        print(f"  {name:15s} SEG {s['seg']:.3f}  DET {s['det']:.3f}  F1@0.5 {s['f1_50']:.3f}  ({s['objects']} objects)")
    print(f"  training {r['train_seconds']} s, predict {r['predict_seconds']} s, Otsu + watershed "
          f"{r['classical_seconds']} s; load average {r['load_average_1m']}")
    return r
