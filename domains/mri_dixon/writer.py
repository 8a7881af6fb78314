"""Writing Dixon predictions: a label volume with exactly the input's geometry, and the files beside it.

``output=OUT.nii.gz`` (one case) or ``output=FOLDER`` (``FOLDER/CASE.nii.gz`` per case). The label volume is uint8
(int16 beyond 255 classes) with the input's shape, affine and NIfTI qform/sform codes; DICOM, MHA or NRRD input gives
a NIfTI with the equivalent affine. ``fat_fraction=true`` adds ``OUT_fatfraction.nii.gz`` (float32 FF in [0, 1], 0
where the signal is too low; :mod:`.fatfraction`). ``task=instance`` adds ``OUT_instances.nii.gz`` and
``OUT_instances.csv``; ``task=panoptic`` also ``OUT_panoptic.nii.gz`` and ``OUT_panoptic.json`` (:mod:`.instances`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from core.contracts import Item, Job, Mode, Prediction
from core.errors import ConfigError, DataError
from core.instances import Instances

from .fatfraction import fat_fraction
from .instances import write_instance_outputs
from .io import NIFTI_SUFFIXES, write_label, write_nifti
from .reader import OpenedCase, volume_stem

log = logging.getLogger(__name__)


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


def cleanup_values(largest_component: bool | str | Sequence[str], meta: Any) -> list[int]:
    """Label values for :func:`keep_largest_components`: all foreground labels (``true``) or the named ones."""
    labels = {k: v for k, v in meta["labels"].items() if v != 0}
    if largest_component is True:
        return sorted(labels.values())
    if not largest_component:
        return []
    names = [largest_component] if isinstance(largest_component, str) else list(largest_component)
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise ConfigError(f"largest_component names unknown labels {unknown}; labels: {sorted(labels)}")
    return [labels[n] for n in names]


def cleaned(prediction: Prediction, values: Sequence[int], job: Job) -> tuple[np.ndarray, Instances | None]:
    """The class volume with ``values`` reduced to their largest component, and its instances (cut again when the
    clean-up changed the classes)."""
    if not values:
        return prediction.classes, prediction.instances
    classes = keep_largest_components(prediction.classes, values)
    changed = job.instancer is not None and not np.array_equal(classes, prediction.classes)
    return classes, job.instancer(classes, prediction.border) if changed else prediction.instances


def checked_cleanup(largest_component: bool | str | Sequence[str], job: Job) -> list[int]:
    """:func:`cleanup_values`, with a warning when it keeps one component of a thing class whose instances are
    asked for."""
    values = cleanup_values(largest_component, job.model.meta)
    names = {v: k for k, v in job.model.meta["labels"].items()}
    single = [names[v] for v in values if names[v] in job.model.things]
    if single and job.instancer is not None:
        log.warning("largest_component keeps one component of the thing class(es) %s: at most one instance each",
                    single)
    return values


@dataclass
class DixonWriter:
    """Label volumes (+ FF maps, instances, panoptic volumes). ``largest_component``: ``true`` or label names, e.g.
    ``[liver, spleen]``: keep each label's largest 3D component; ``fat_fraction``: write ``OUT_fatfraction.nii.gz``."""

    largest_component: bool | str | Sequence[str] = False
    fat_fraction: bool = False

    def outputs(self, item: Item, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        is_file = output.name.lower().endswith(NIFTI_SUFFIXES) and not output.is_dir()
        if folder and is_file:
            raise DataError(f"the input holds several cases; give an output folder, not the file name {str(output)!r}")
        if not is_file and output.exists() and not output.is_dir():
            raise DataError(f"output {str(output)!r} must be a .nii/.nii.gz file name or a folder")
        main = output if is_file else output / f"{item.name}.nii.gz"
        paths = {"labels": main}
        if self.fat_fraction:
            paths["fat_fraction"] = beside(main, "_fatfraction")
        if job.mode is not Mode.SEMANTIC:
            paths.update(instances=beside(main, "_instances"), csv=beside(main, "_instances", ".csv"))
        if job.mode is Mode.PANOPTIC:
            paths.update(panoptic=beside(main, "_panoptic"), segments=beside(main, "_panoptic", ".json"))
        return paths

    def run_outputs(self, output: Path, folder: bool, job: Job) -> dict[str, Path]:
        return {}

    def sink(self, item: Item, opened: OpenedCase, paths: Mapping[str, Path], job: Job) -> DixonSink:
        return DixonSink(item.name, opened, dict(paths), job, checked_cleanup(self.largest_component, job))

    def finish(self, results: Sequence[Any], paths: Mapping[str, Path], job: Job) -> None:
        pass


@dataclass
class DixonSink:
    """Writes one case's files on its input grid."""

    case: str
    opened: OpenedCase
    paths: dict[str, Path]
    job: Job
    clean: list[int]

    def update(self, prediction: Prediction) -> None:
        classes, instances = cleaned(prediction, self.clean, self.job)
        reference, volumes = self.opened.case.reference, self.opened.volumes
        write_label(self.paths["labels"], classes, reference)
        water, fat = (volumes[n].array if n in volumes else None for n in ("water", "fat"))
        if "fat_fraction" in self.paths:
            write_nifti(self.paths["fat_fraction"], fat_fraction(water, fat), reference)
        if instances is not None:
            write_instance_outputs(self.paths, self.case, classes, instances, self.job.instancer, reference,
                                   self.job.model.meta["labels"], water, fat)

    def close(self) -> None:
        return None

    def abort(self) -> None:
        pass
