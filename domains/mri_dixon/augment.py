"""Training augmentation for MRI samples: the core's nnU-Net pipeline (:mod:`segsuite.core.augment`) with flips named
by anatomy.

:class:`Augmentation` is what ``conf/augmentation/mri.yaml`` builds. A training dataset tells
:meth:`Augmentation.transform` which canonical (RAS+) axes the sample's spatial dims run along. Flips only along axes
where mirroring keeps every label's meaning: ``flip_axes`` names canonical axes, ``A`` (anterior-posterior) and ``S``
(superior-inferior); ``R`` (left-right) is refused when a label name says left or right (a mirrored left kidney is a
right one).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from segsuite.core.augment import NnUNetAugmentation
from segsuite.core.errors import ConfigError

AXIS_LETTERS = "RAS"  # canonical axis 0, 1, 2
LATERAL_WORDS = {"left", "right", "l", "r", "lt", "rt"}


def lateralised(class_names: Sequence[str]) -> list[str]:
    """Label names that say left or right (``kidney_left``, ``R_lung``...)."""
    return [n for n in class_names if LATERAL_WORDS & set(re.split(r"[^a-z]+", n.lower()))]


@dataclass
class Augmentation(NnUNetAugmentation):
    """The core's augmentation settings, and ``flip_axes``: the canonical axes to mirror (module docstring)."""

    flip_axes: Sequence[str] = ("A",)

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [a for a in self.flip_axes if str(a).upper() not in AXIS_LETTERS]
        if unknown:
            raise ConfigError(f"augmentation.flip_axes {unknown} unknown; name canonical axes R, A or S")

    def transform(self, axes: Sequence[int], patch_size: Sequence[int], class_names: Sequence[str] = (),
                  spacing: Sequence[float] | None = None) -> Callable[[dict], dict]:
        """The transform for samples whose spatial dims run along canonical ``axes`` (e.g. ``(0, 1)`` for axial
        slices, ``(0, 1, 2)`` for patches), cropped to ``patch_size``; ``spacing`` in mm per sample dim."""
        letters = [str(a).upper() for a in self.flip_axes]
        sided = lateralised(class_names)
        if "R" in letters and sided:
            raise ConfigError(f"augmentation.flip_axes has R (left-right), which would swap the lateralised labels "
                              f"{sided}; flip along A and S only")
        flips = [d for d, axis in enumerate(axes) if AXIS_LETTERS[axis] in letters]
        return super().transform(flips, patch_size, spacing)
