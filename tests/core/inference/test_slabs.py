"""Slab-by-slab restore of a stack of slice logits (:mod:`segsuite.core.inference.slabs`) against the whole-volume
way: softmax, trilinear interpolation (``align_corners=False``) onto the item's grid, argmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segsuite.core.inference.slabs import SlabRestorer, Stack, restore_stack, stack_weights


def _reference(logits: torch.Tensor, crop, shape, k: int) -> tuple[torch.Tensor, np.ndarray]:
    """The whole-volume restore: log of the trilinearly interpolated class probabilities (the border logit as it
    is), and their argmax."""
    x = logits[:, :, : crop[0], : crop[1]]
    x = torch.cat([x[:k].softmax(0), x[k:]])
    back = F.interpolate(x[None], size=shape, mode="trilinear", align_corners=False)[0]
    return torch.cat([back[:k].clamp_min(1e-12).log(), back[k:]]), back[:k].argmax(0).numpy()


@pytest.mark.parametrize("slices,shape", [(9, (20, 13, 30)), (23, (7, 40, 11)), (12, (12, 25, 19))])
def test_slabs_equal_the_whole_volume_trilinear_restore(slices, shape):
    """Up and down along every axis, padding cut, slices given one at a time or in uneven chunks: the classes agree
    with the whole-volume argmax (up to float ties) and the kept logits to float32 rounding."""
    torch.manual_seed(0)
    k, crop = 5, (17, 21)
    logits = torch.randn(k + 1, slices, 24, 32) * 3  # (C, N', H', W'): 5 classes and a border logit, padded
    expected_logits, expected = _reference(logits, crop, shape, k)
    for chunks in ([1] * slices, [4, 1, slices - 5]):
        restorer = SlabRestorer(Stack(slices, crop, shape), k)
        start = 0
        for n in chunks:
            restorer.add(logits[:, start : start + n])
            start += n
        kept, classes, border = restorer.result()
        assert classes.shape == shape and classes.dtype == np.uint8
        assert (classes == expected).mean() > 0.999
        torch.testing.assert_close(kept, expected_logits, atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(border, torch.sigmoid(expected_logits[k]).numpy(), atol=1e-5)


def test_without_logits_only_the_slices_in_reach_are_held():
    """``keep_logits=False``: no logits come back, the classes are the same, and the restorer never holds more than
    the slices its next output slice needs beyond the chunk just added."""
    torch.manual_seed(1)
    logits = torch.randn(3, 40, 16, 16)
    stack = Stack(40, (16, 16), (97, 16, 16))
    restorer = SlabRestorer(stack, 3, keep_logits=False)
    for i in range(40):
        restorer.add(logits[:, i : i + 1])
        assert len(restorer.cache) <= 2
    kept, classes, border = restorer.result()
    assert kept is None and border is None
    np.testing.assert_array_equal(classes, _reference(logits, (16, 16), (97, 16, 16), 3)[1])
    whole = SlabRestorer(stack, 3, keep_logits=False)  # a volume given at once goes through SLAB slices at a time
    sizes = []
    whole._add = lambda chunk, add=whole._add: sizes.append(chunk.shape[1]) or add(chunk)
    whole.add(logits)
    assert sizes == [16, 16, 8] and np.array_equal(whole.result()[1], classes)


def test_without_resampling_the_logits_pass_through():
    """Same grid: the cropped logits come back exactly (not as log-probabilities), ``finish`` applied."""
    logits = torch.randn(4, 6, 10, 12)
    stack = Stack(6, (9, 12), (6, 9, 12), finish=lambda x: x.movedim(1, 3).flip(1))
    out = restore_stack(stack, logits, 4)
    assert torch.equal(out, logits[:, :, :9].movedim(1, 3).flip(1))


def test_stack_weights_follow_interpolate():
    """The two neighbours and weight of each output slice reproduce ``interpolate(mode='linear')``."""
    for n_in, n_out in ((5, 12), (12, 5), (7, 7), (1, 4)):
        x = torch.randn(n_in, dtype=torch.float64)
        ours = torch.stack([(1 - t) * x[i0] + t * x[i1] for i0, i1, t in stack_weights(n_in, n_out)])
        theirs = F.interpolate(x[None, None], size=n_out, mode="linear", align_corners=False)[0, 0]
        torch.testing.assert_close(ours, theirs)


def test_missing_slices_are_refused():
    restorer = SlabRestorer(Stack(4, (2, 2), (4, 2, 2)), 2)
    restorer.add(torch.randn(2, 3, 2, 2))
    with pytest.raises(RuntimeError, match="3 of 4 slices"):
        restorer.result()


def test_fortran_order_gives_the_same_arrays_in_fortran_order():
    """``Stack(order="F")`` (NIfTI's voxel order): the class and border arrays equal the C-ordered ones and are
    Fortran-contiguous on the item's axes, so a NIfTI writer copies nothing."""
    torch.manual_seed(2)
    logits = torch.randn(4, 6, 16, 16)  # 3 classes and a border logit
    finish = lambda x: x.movedim(1, 3)  # noqa: E731  (C, N, H, W) -> (C, H, W, N): the stacking axis last
    arrays = {}
    for order in ("C", "F"):
        restorer = SlabRestorer(Stack(6, (12, 14), (9, 12, 14), finish, order), 3, keep_logits=False)
        restorer.add(logits)
        arrays[order] = restorer.result()[1:]
    for c, f in zip(arrays["C"], arrays["F"], strict=True):
        assert c.flags.c_contiguous and f.flags.f_contiguous and c.shape == f.shape == (12, 14, 9)
        np.testing.assert_array_equal(c, f)
