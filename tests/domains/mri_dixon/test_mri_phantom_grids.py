"""The phantom's anatomy at another resolution and stored in another orientation."""

from __future__ import annotations

import numpy as np

from segsuite.domains.mri_dixon.cases import load_case, read_dataset_json
from segsuite.domains.mri_dixon.phantom import make_case, make_dataset


def test_another_orientation_is_the_same_volume_in_ras(tmp_path):
    """Permuted, reversed storage reads back, in canonical RAS+, voxel for voxel as the plain one."""
    options = dict(n_cases=1, shape=(24, 20, 8), spacing=(2.0, 2.0, 4.0), seed=4)
    plain = make_dataset(tmp_path / "plain", **options)
    turned = make_dataset(tmp_path / "turned", **options, axes=(2, 0, 1), flips=(True, False, True))
    a, b = (load_case(read_dataset_json(root), "phantom_000", [0, 1]) for root in (plain, turned))
    assert np.array_equal(a.label, b.label) and np.allclose(a.image, b.image)
    assert np.allclose(a.affine, b.affine, atol=1e-4)


def test_another_resolution_keeps_the_anatomy_in_millimetres():
    """At 3 x 3 x 4 mm the same organs sit in the same place: the 1.5 x 1.5 x 3 mm labels sampled at the coarse
    voxel centres agree with the coarse labels almost everywhere (partial-volume edges aside)."""
    _, fine, fine_affine, _ = make_case((48, 48, 16), (1.5, 1.5, 3.0), seed=3)
    _, coarse, coarse_affine, _ = make_case((48, 48, 16), (1.5, 1.5, 3.0), seed=3, voxel_spacing=(3.0, 3.0, 4.0))
    assert coarse.shape == (24, 24, 12)
    index = np.stack(np.meshgrid(*[np.arange(n) for n in coarse.shape], indexing="ij"), -1).reshape(-1, 3)
    world = index @ coarse_affine[:3, :3].T + coarse_affine[:3, 3]
    inverse = np.linalg.inv(fine_affine)
    fine_index = np.round(world @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
    fine_index = np.clip(fine_index, 0, np.array(fine.shape) - 1)
    agreement = (fine[tuple(fine_index.T)] == coarse.reshape(-1)).mean()
    assert agreement > 0.85, agreement
    assert set(np.unique(coarse)) == set(np.unique(fine))  # every organ is still there
