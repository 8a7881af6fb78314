"""Writing Dixon predictions: a label volume with exactly the input's geometry, and the files beside it.

``output=OUT.nii.gz`` (one case) or ``output=FOLDER`` (``FOLDER/CASE.nii.gz`` per case). The label volume is uint8
(int16 beyond 255 classes) with the input's shape, affine and NIfTI qform/sform codes; DICOM, MHA or NRRD input gives
a NIfTI with the equivalent affine. Every other output shares that grid:

* ``OUT_fatfraction.nii.gz`` (``fat_fraction=true``): float32 FF in [0, 1], 0 where the signal is too low;
* ``OUT_instances.nii.gz`` (``task=instance|panoptic``): int32 instance ids of the thing classes, cut from the whole
  label volume (0 = none);
* ``OUT_instances.csv``: per instance ``voxels``, ``volume_ml``, the centroid in array (``centroid_i/j/k``) and
  scanner RAS+ mm coordinates (``centroid_x/y/z``), the box ``i0, i1, j0, j1, k0, k1`` (end exclusive) and, when
  water and fat were read, ``mean_fat_fraction`` over its voxels with enough signal (empty if none);
* ``OUT_panoptic.nii.gz`` (``task=panoptic``): int32 label-divisor encoding: a thing instance is ``category * 1000 +
  k`` (k = 0, 1, ... per category in order of instance id), any other voxel its category (dataset.json values);
* ``OUT_panoptic.json``: the categories and one entry per segment (every code but 0);
* ``OUT_per_slice.csv`` (``per_slice=axial|coronal|sagittal``): per label and slice along that axis the area in cm²
  and, when water and fat were read, the mean FF (:mod:`.slices`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from nibabel.affines import apply_affine
from scipy import ndimage

from segsuite.core.contracts import Item, Job, Mode, Prediction
from segsuite.core.domain import BaseSink, BaseWriter
from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances import Instancer, Instances, label_divisor_ids, measure_instances
from segsuite.core.io import write_csv, write_json

from .fatfraction import fat_fraction, fat_fraction_map
from .inputs import volume_stem
from .io import NIFTI_SUFFIXES, Volume, voxel_spacing, write_label, write_nifti
from .reader import OpenedCase
from .slices import COLUMNS as SLICE_COLUMNS
from .slices import check_axis, measured_labels, slice_measurements

log = logging.getLogger(__name__)

LABEL_DIVISOR = 1000
INSTANCE_COLUMNS = ["case", "id", "class", "voxels", "volume_ml", "centroid_i", "centroid_j", "centroid_k",
                    "centroid_x", "centroid_y", "centroid_z", "i0", "i1", "j0", "j1", "k0", "k1"]


def beside(path: Path, suffix: str, ending: str | None = None) -> Path:
    """``OUT.nii.gz`` -> ``OUT<suffix>.nii.gz`` (or ``OUT<suffix><ending>``)."""
    stem = volume_stem(path)
    return path.with_name(stem + suffix + (path.name[len(stem):] if ending is None else ending))


def keep_largest_components(label: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Keep only the largest 26-connected component of each label in ``values``; the rest becomes 0."""
    out = label.copy()
    structure = ndimage.generate_binary_structure(3, 3)
    for value in values:
        mask = label == value
        boxes = ndimage.find_objects(mask.astype(np.uint8))
        if not boxes:
            continue
        box = boxes[0]
        components, count = ndimage.label(mask[box], structure)
        if count > 1:
            largest = np.bincount(components.ravel())[1:].argmax() + 1
            out[box][(components > 0) & (components != largest)] = 0
    return out


def cleanup_values(largest_component: bool | str | Sequence[str], meta: Any, things: Sequence[str] = ()) -> list[int]:
    """Label values for :func:`keep_largest_components`: all foreground labels (``true``) or the named ones; a warning
    when that keeps one component of a thing class whose instances are cut (``things``)."""
    labels = {k: v for k, v in meta["labels"].items() if v != 0}
    if largest_component is True or not largest_component:
        names = sorted(labels, key=labels.get) if largest_component is True else []
    else:
        names = [largest_component] if isinstance(largest_component, str) else list(largest_component)
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise ConfigError(f"largest_component names unknown labels {unknown}; labels: {sorted(labels)}")
    if set(names) & set(things):
        log.warning("largest_component keeps one component of the thing class(es) %s: at most one instance each",
                    sorted(set(names) & set(things)))
    return [labels[n] for n in names]


def things(job: Job) -> tuple[str, ...]:
    """The thing classes whose instances the job cuts (none for semantic jobs)."""
    return job.model.things if job.instancer is not None else ()


def cleaned(prediction: Prediction, values: Sequence[int], job: Job) -> tuple[np.ndarray, Instances | None]:
    """The class volume with ``values`` reduced to their largest component, and its instances (cut again when the
    clean-up changed the classes)."""
    if not values:
        return prediction.classes, prediction.instances
    classes = keep_largest_components(prediction.classes, values)
    changed = job.instancer is not None and not np.array_equal(classes, prediction.classes)
    return classes, job.instancer(classes, prediction.border) if changed else prediction.instances


def category_ids(class_names: Sequence[str], labels: dict[str, int]) -> list[int]:
    """The dataset.json label value of each class index."""
    missing = [n for n in class_names if n not in labels]
    if missing:
        raise ConfigError(f"classes {missing} have no label value in the checkpoint's labels {labels}")
    return [int(labels[n]) for n in class_names]


def instance_fat_fractions(instances: Instances, water: np.ndarray, fat: np.ndarray) -> np.ndarray:
    """Mean FF of each instance ``(n,)`` over its voxels with enough signal (threshold from the whole images, as
    :func:`.fatfraction.mean_fat_fraction`); NaN for an instance without any."""
    ff, valid = fat_fraction_map(water, fat)  # ff is 0 where the signal is too low
    index = np.arange(1, instances.n + 1)
    if not len(index):
        return np.zeros(0)
    total = np.asarray(ndimage.sum(ff, instances.ids, index), np.float64)
    count = np.asarray(ndimage.sum(valid, instances.ids, index), np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def instance_rows(case: str, instances: Instances, class_names: Sequence[str], reference: Volume,
                  water: np.ndarray | None = None, fat: np.ndarray | None = None) -> list[dict[str, Any]]:
    """``OUT_instances.csv`` rows of instances on ``reference``'s grid (``mean_fat_fraction`` with water and fat)."""
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
    """``OUT_panoptic.json``: the categories, and per non-zero code its ``id`` (the code), ``category``, ``name``,
    ``isthing``, ``instance`` (its id in ``OUT_instances.nii.gz``, else null), ``voxels`` and ``volume_ml``."""
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
    """The instance (and panoptic, when ``paths`` name them) files of one case; ``labels`` ``(X, Y, Z)``: the class
    indices the instances were cut from, on ``reference``'s grid; ``labels_map``: the dataset.json labels."""
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


@dataclass
class DixonWriter(BaseWriter):
    """Label volumes (+ FF maps, instances, panoptic volumes, per-slice CSVs). ``largest_component``: ``true`` or
    label names, e.g. ``[liver, spleen]``: keep each label's largest 3D component; ``fat_fraction``: write
    ``OUT_fatfraction.nii.gz``; ``per_slice``: ``axial``, ``coronal`` or ``sagittal``: write ``OUT_per_slice.csv``
    along that axis (None: not)."""

    largest_component: bool | str | Sequence[str] = False
    fat_fraction: bool = False
    per_slice: str | None = None
    clean: list[int] | None = field(default=None, init=False)  # the label values of largest_component

    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        if self.clean is None:  # checked once, before any work
            self.clean = cleanup_values(self.largest_component, job.model.meta, things(job))
            check_axis(self.per_slice, "domain.writer.per_slice")
        is_file = output.name.lower().endswith(NIFTI_SUFFIXES) and not output.is_dir()
        if folder and is_file:
            raise DataError(f"the input holds several cases; give an output folder, not the file name {str(output)!r}")
        if not folder and not is_file and (output.suffix or output.exists()):  # seg.png, not a folder of that name
            raise DataError(f"output {str(output)!r} must be a .nii/.nii.gz file name for one case, or a folder (end "
                            "it with '/')")
        folder = folder or not is_file  # a bare name (preds) is a folder, as it always was
        main = output / f"{item.name}.nii.gz" if folder else output
        paths = {"labels": main}
        if self.fat_fraction:
            paths["fat_fraction"] = beside(main, "_fatfraction")
        if self.per_slice:
            paths["per_slice"] = beside(main, "_per_slice", ".csv")
        if job.mode is not Mode.SEMANTIC:
            paths.update(instances=beside(main, "_instances"), csv=beside(main, "_instances", ".csv"))
        if job.mode is Mode.PANOPTIC:
            paths.update(panoptic=beside(main, "_panoptic"), segments=beside(main, "_panoptic", ".json"))
        return paths

    def sink(self, item: Item, opened: OpenedCase, paths: Mapping[str, Path], job: Job) -> DixonSink:
        return DixonSink(item.name, opened, dict(paths), job, self.clean or [], self.per_slice)


@dataclass
class DixonSink(BaseSink):
    """Writes one case's files on its input grid (from the classes: no logits restored for it)."""

    needs_logits = False
    case: str
    opened: OpenedCase
    paths: dict[str, Path]
    job: Job
    clean: list[int]
    per_slice: str | None = None

    def update(self, prediction: Prediction) -> None:
        classes, instances = cleaned(prediction, self.clean, self.job)
        reference, volumes = self.opened.case.reference, self.opened.volumes
        write_label(self.paths["labels"], classes, reference)
        water, fat = (volumes[n].array if n in volumes else None for n in ("water", "fat"))
        if "fat_fraction" in self.paths:
            write_nifti(self.paths["fat_fraction"], fat_fraction(water, fat), reference)
        if self.per_slice:
            ff, valid = fat_fraction_map(water, fat) if water is not None and fat is not None else (None, None)
            values = measured_labels({n: i for i, n in enumerate(self.job.model.meta.class_names)})  # as written
            rows = slice_measurements(self.case, classes, reference.affine, values, self.per_slice, ff, valid)
            write_csv(self.paths["per_slice"], rows, True, columns=SLICE_COLUMNS)
        if instances is not None:
            write_instance_outputs(self.paths, self.case, classes, instances, self.job.instancer, reference,
                                   self.job.model.meta["labels"], water, fat)

    def close(self) -> None:
        return None

