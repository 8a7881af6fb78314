"""Instances and panoptic volumes of a predicted Dixon label volume, their measurements, and their scores.

Instances are cut by :class:`core.instances.Instancer` from the whole predicted 3D label volume on the input's own
array axes (the array the label NIfTI is written from), so every output shares the input's shape, affine and
qform/sform codes. Beside a label output ``OUT.nii.gz``:

* ``OUT_instances.nii.gz``: int32 instance ids, 0 = none, 1..n (``mode`` instance and panoptic);
* ``OUT_instances.csv``: one row per instance (:func:`instance_rows`): ``voxels``, ``volume_ml``, the centroid in
  array coordinates (``centroid_i/j/k``) and in scanner RAS+ millimetres through the affine (``centroid_x/y/z``), the
  box ``i0, i1, j0, j1, k0, k1`` (end exclusive) and, when water and fat images were read, ``mean_fat_fraction``
  over the instance's voxels with enough signal (as :func:`.fatfraction.mean_fat_fraction`; empty if none);
* ``OUT_panoptic.nii.gz`` (panoptic): int32, the label-divisor encoding of
  :func:`core.instances.panoptic.label_divisor_ids`: a thing instance is ``category * 1000 + k`` (k = 0, 1, ... per
  category in order of instance id), any other voxel its category; categories are the dataset.json label values;
* ``OUT_panoptic.json`` (panoptic): the categories and one entry per segment (every code but 0, the background).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage

from core.errors import ConfigError
from core.instances import Instancer, Instances, measure_instances, true_instances
from core.instances.metrics import PanopticMetrics
from core.instances.panoptic import label_divisor_ids
from core.io import write_csv, write_json

from .fatfraction import fat_fraction, signal_threshold, valid_signal
from .io import Volume, voxel_spacing, write_nifti

LABEL_DIVISOR = 1000
INSTANCE_COLUMNS = ["case", "id", "class", "voxels", "volume_ml", "centroid_i", "centroid_j", "centroid_k",
                    "centroid_x", "centroid_y", "centroid_z", "i0", "i1", "j0", "j1", "k0", "k1"]
COUNT_COLUMNS = ["case", "class", "predicted", "true", "tp", "fp", "fn", "pq"]

def category_ids(class_names: Sequence[str], labels: dict[str, int]) -> list[int]:
    """The dataset.json label value of each class index."""
    missing = [n for n in class_names if n not in labels]
    if missing:
        raise ConfigError(f"classes {missing} have no label value in the checkpoint's labels {labels}")
    return [int(labels[n]) for n in class_names]


def instance_fat_fractions(instances: Instances, water: np.ndarray, fat: np.ndarray) -> np.ndarray:
    """Mean FF of each instance ``(n,)`` over its voxels with enough signal (threshold from the whole images, as
    :func:`.fatfraction.mean_fat_fraction`); NaN for an instance without any."""
    threshold = signal_threshold(water, fat)
    valid = valid_signal(water, fat, min_signal=threshold)
    ff = np.where(valid, fat_fraction(water, fat, min_signal=threshold), 0.0)
    index = np.arange(1, instances.n + 1)
    if not len(index):
        return np.zeros(0)
    total = np.asarray(ndimage.sum(ff, instances.ids, index), np.float64)
    count = np.asarray(ndimage.sum(valid, instances.ids, index), np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def instance_rows(case: str, instances: Instances, class_names: Sequence[str], reference: Volume,
                  water: np.ndarray | None = None, fat: np.ndarray | None = None) -> list[dict[str, Any]]:
    """CSV rows (:data:`INSTANCE_COLUMNS`, plus ``mean_fat_fraction`` with ``water`` and ``fat``) of instances on
    ``reference``'s grid ``(X, Y, Z)``."""
    affine = reference.affine
    rows = measure_instances(instances, class_names, spacing=voxel_spacing(affine),
                             to_world=lambda ijk: apply_affine(affine, ijk),
                             cell_size=abs(float(np.linalg.det(affine[:3, :3]))))  # exact on sheared grids too
    if water is not None and fat is not None:
        means = instance_fat_fractions(instances, water, fat)
        for row in rows:
            row["mean_fat_fraction"] = means[row["id"] - 1]
    return [{"case": case, **row} for row in rows]


def panoptic_info(case: str, panoptic: np.ndarray, instances: Instances, instancer: Instancer,
                  categories: Sequence[int], voxel_ml: float) -> dict[str, Any]:
    """``OUT_panoptic.json`` content: the categories and one segment per non-zero code of ``panoptic`` with its
    ``id`` (the code), ``category``, ``name``, ``isthing``, ``instance`` (its id in ``OUT_instances.nii.gz``; null
    for stuff and for thing voxels left without an instance), ``voxels`` and ``volume_ml``."""
    names = {int(c): n for c, n in zip(categories, instancer.class_names)}
    things = {int(categories[i]) for i in instancer.thing_ids}
    code_of = np.zeros(instances.n + 1, np.int64)
    code_of[instances.ids.ravel()] = panoptic.ravel()  # one code per instance id
    instance_of = {int(code_of[i]): i for i in range(1, instances.n + 1) if code_of[i]}
    codes, counts = np.unique(panoptic, return_counts=True)
    segments = []
    for code, count in zip(codes.tolist(), counts.tolist()):
        if code == 0:
            continue
        category = code // LABEL_DIVISOR if code >= LABEL_DIVISOR else code
        segments.append({"id": code, "category": category, "name": names[category], "isthing": category in things,
                         "instance": instance_of.get(code), "voxels": count, "volume_ml": count * voxel_ml})
    return {"case": case, "label_divisor": LABEL_DIVISOR,
            "encoding": f"thing instance: category * {LABEL_DIVISOR} + k (k = 0, 1, ...); other voxels: category",
            "categories": [{"id": c, "name": n, "isthing": c in things} for c, n in names.items()],
            "segments": segments}


def write_instance_outputs(paths: dict[str, Path], case: str, labels: np.ndarray, instances: Instances,
                           instancer: Instancer, reference: Volume, labels_map: dict[str, int],
                           water: np.ndarray | None = None, fat: np.ndarray | None = None) -> None:
    """Write the ``instances`` and ``csv`` files of one case (and ``panoptic`` and ``segments`` when ``paths`` name
    them); ``labels`` ``(X, Y, Z)`` are the class indices the instances were cut from, on ``reference``'s grid;
    ``labels_map`` the dataset.json labels."""
    write_nifti(paths["instances"], instances.ids.astype(np.int32), reference)
    rows = instance_rows(case, instances, instancer.class_names, reference, water, fat)
    columns = INSTANCE_COLUMNS + (["mean_fat_fraction"] if water is not None and fat is not None else [])
    write_csv(paths["csv"], rows, True, columns=columns)
    if "panoptic" in paths:
        categories = category_ids(instancer.class_names, labels_map)
        panoptic = label_divisor_ids(labels, instances, instancer.thing_ids, categories, divisor=LABEL_DIVISOR)
        write_nifti(paths["panoptic"], panoptic, reference)
        voxel_ml = float(np.prod(voxel_spacing(reference.affine))) / 1000.0
        write_json(paths["segments"], panoptic_info(case, panoptic, instances, instancer, categories, voxel_ml))


class InstanceScores:
    """Panoptic quality over the cases (3D, one update per volume) and per-case instance counts per thing class.

    Targets are the connected components of the thing classes of the reference label volume
    (:func:`core.instances.true_instances`).
    """

    STATES = ("iou_sum", "tp", "fp", "fn")

    def __init__(self, instancer: Instancer, ignore_index: int = 255) -> None:
        names = instancer.class_names
        self.instancer = instancer
        self.pooled = PanopticMetrics(len(names), instancer.thing_ids, names, ignore_index)
        self.rows: list[dict[str, Any]] = []

    def update(self, case: str, labels: np.ndarray, instances: Instances, target: np.ndarray) -> None:
        """Score one case: predicted class indices and instances, reference class indices ``target`` (ignored
        voxels = ``ignore_index``), all ``(X, Y, Z)``. The case's row counts are what it adds to the pooled sums."""
        true_ids = true_instances(self.instancer, target)
        before = [getattr(self.pooled, s).clone() for s in self.STATES]
        self.pooled.update(labels, instances.ids, target, true_ids)
        iou_sum, tp, fp, fn = ((getattr(self.pooled, s) - b).cpu().numpy() for s, b in zip(self.STATES, before))
        for c in self.instancer.thing_ids:
            seen = tp[c] + 0.5 * (fp[c] + fn[c])
            self.rows.append({"case": case, "class": self.instancer.class_names[c],
                              "predicted": int((instances.classes == c).sum()),
                              "true": len(np.unique(true_ids[(target == c) & (true_ids > 0)])),
                              "tp": int(tp[c]), "fp": int(fp[c]), "fn": int(fn[c]),
                              "pq": float(iou_sum[c] / seen) if seen else ""})  # PQ = SQ * RQ = IoU sum / seen

    def compute(self) -> dict[str, Any]:
        """:meth:`PanopticMetrics.compute` over every case so far."""
        return self.pooled.compute()

    def write_counts(self, path: Path) -> Path:
        """The per-case counts as CSV (:data:`COUNT_COLUMNS`)."""
        return write_csv(path, self.rows, True, columns=COUNT_COLUMNS)
