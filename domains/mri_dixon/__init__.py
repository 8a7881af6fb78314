"""MRI water/fat (Dixon) domain: NIfTI/DICOM/MHA/NRRD IO in RAS+, nnU-Net raw-layout slice datasets,
fat fraction, a synthetic Dixon phantom and per-label metrics in millimetres.

The builder for the core's DataModule is :func:`domains.mri_dixon.dataset.build_datasets`; whole-volume
prediction is :func:`domains.mri_dixon.predict.predict`, per-volume evaluation
:func:`domains.mri_dixon.evaluate.evaluate` and the benchmark :func:`domains.mri_dixon.benchmark.run`
(all wired through ``conf/domain/mri_dixon.yaml``).
"""

from .dataset import build_datasets
from .io import Volume, read_volume, write_label, write_nifti

__all__ = ["Volume", "build_datasets", "read_volume", "write_label", "write_nifti"]
