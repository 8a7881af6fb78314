""":func:`segsuite.core.inference.argmax.first_max` is ``torch.max(0).indices``, whatever the layout of the scores."""

from __future__ import annotations

import pytest
import torch

from segsuite.core.inference.argmax import first_max


def _layouts(k: int, h: int, w: int) -> dict[str, torch.Tensor]:
    """The same kind of scores as planes, channels innermost (a 2D network's logits), and a cropped channels-last
    block of a wider strip (rows not adjacent in memory); small integers, so most positions hold ties."""
    torch.manual_seed(k)
    planes = torch.randint(0, 4, (k, h, w)).float()
    last = torch.randint(0, 4, (h, w, k)).float().permute(2, 0, 1)
    strip = torch.randint(0, 4, (h + 3, w + 5, k)).float().permute(2, 0, 1)[:, 1 : h + 1, 2 : w + 2]
    return {"planes": planes, "channels innermost": last, "cropped strip": strip}


@pytest.mark.parametrize("k", [1, 2, 7, 12, 13, 19])
def test_first_max_is_torch_max_with_its_tie_rule(k):
    """Ties (most positions here) go to the first channel, as torch.max's; the class map is uint8, into a given
    ``out`` too."""
    for name, scores in _layouts(k, 37, 41).items():
        expected = scores.max(0).indices
        got = first_max(scores)
        assert got.dtype == torch.uint8 and torch.equal(got.long(), expected), name
        out = torch.full((37, 41), 255, dtype=torch.uint8)
        assert first_max(scores, out=out) is out and torch.equal(out.long(), expected), name


def test_first_max_of_many_classes_and_other_shapes():
    """Beyond 256 channels the map is int64; a volume's channels and a 1D row work the same."""
    torch.manual_seed(0)
    many = torch.randn(300, 9, 11)
    assert first_max(many).dtype == torch.int64 and torch.equal(first_max(many), many.max(0).indices)
    volume = torch.randn(5, 4, 6, 7).contiguous(memory_format=torch.channels_last)
    assert torch.equal(first_max(volume).long(), volume.max(0).indices)
    row = torch.randn(6, 50)
    assert torch.equal(first_max(row).long(), row.max(0).indices)
