"""The chunk sampler: chunks partition the placements, windows are uniform (or follow weighted points), each chunk is
read once for many windows, a batch mixes chunks, and the stream is seeded per process."""

import pickle
from dataclasses import astuple

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from segsuite.core.chunks import ChunkSampler, aligned_step, corner_range
from segsuite.core.regions import Rect


def _draws(sampler, n, reads=None):
    reads = [] if reads is None else reads
    draws = [sampler.draw(lambda chunk: reads.append(chunk) or chunk.area(sampler.patch)) for _ in range(n)]
    return [(chunk, astuple(area), astuple(box)) for chunk, area, box in draws], reads


def test_chunks_partition_the_placements_on_block_aligned_cuts():
    rect, patch = Rect(10, 3, 250, 170), (32, 16)
    sampler = ChunkSampler([rect], patch, [(64, 128)])
    r0, c0, r1, c1 = astuple(corner_range(rect, patch))
    count = np.zeros((r1, c1), int)
    for chunk in sampler.chunks:
        a, c, b, d = astuple(chunk.corners)
        count[a:b, c:d] += 1
        assert a in (r0, *range(0, r1, 64)) and c in (c0, *range(0, c1, 128))  # cut at multiples of the step
        assert astuple(chunk.area(patch)) == (a, c, b + 31, d + 15)
    assert (count[r0:, c0:] == 1).all() and count.sum() == (250 - 10 - 32 + 1) * (170 - 3 - 16 + 1)
    assert [aligned_step(512, 1024), aligned_step(512, 700), aligned_step(512, 300), aligned_step(16, 1000)] == \
        [1024, 512, 300, 992]


def test_windows_are_uniform_over_placements_and_each_chunk_is_read_once_per_visit():
    torch.manual_seed(0)
    rects = [Rect(0, 0, 40, 40), Rect(100, 100, 105, 103)]  # the second is smaller than a patch: anchored at its corner
    sampler = ChunkSampler(rects, (8, 8), [(16, 16), (16, 16)], windows_per_chunk=5, buffer=3)
    draws, reads = _draws(sampler, 40_000)
    placements = 33 * 33 + 1
    seen = np.zeros((41, 41), int)
    for chunk, area, (r0, c0, r1, c1) in draws:
        assert (r1 - r0, c1 - c0) == (8, 8)
        assert area[0] <= r0 and r1 <= area[2] and area[1] <= c0 and c1 <= area[3]  # inside what was read
        if chunk.item == 1:
            assert (r0, c0) == (100, 100)
        else:
            assert 0 <= r0 and r1 <= 40 and 0 <= c0 and c1 <= 40
            seen[r0, c0] += 1
    assert (seen[:33, :33] > 0).all() and seen[33:].sum() == seen[:, 33:].sum() == 0  # every placement, no other
    # 9 chunks of 16/16/1 corners a side: per chunk, windows in proportion to its placements
    per_chunk = {}
    for chunk, _, _ in draws:
        per_chunk[chunk.corners] = per_chunk.get(chunk.corners, 0) + 1
    for chunk in sampler.chunks:
        share = per_chunk[chunk.corners] / len(draws)
        assert share == pytest.approx(chunk.placements / placements, rel=0.3, abs=6e-4)  # visits: 5 windows at once
    assert len(reads) < len(draws) / 4  # most chunks serve 5 windows per read (edge ones fewer: fewer placements)


def test_a_batch_mixes_the_chunks_in_the_buffer():
    torch.manual_seed(1)
    sampler = ChunkSampler([Rect(0, 0, 1024, 1024)], (32, 32), [(128, 128)], windows_per_chunk=64, buffer=4)
    draws, reads = _draws(sampler, 64 * 8)
    batches = [{d[0].corners for d in draws[i:i + 8]} for i in range(0, len(draws), 8)]
    assert np.mean([len(b) for b in batches]) > 2.5  # not one chunk per batch
    assert len(reads) <= 8 + 4 and len({r.corners for r in reads}) > 4
    one = ChunkSampler([Rect(0, 0, 40, 40)], (32, 32), [(128, 128)], windows_per_chunk=4, buffer=4)
    assert len(one.chunks) == 1 and len(_draws(one, 40)[1]) == 1  # a chunk already in the buffer is not read again


def test_weighted_points_draw_windows_near_them_by_weight():
    torch.manual_seed(2)
    points, weights = [(0, 10, 10), (0, 90, 90), (0, 0, 90)], [0.75, 0.25, 0.0]
    sampler = ChunkSampler([Rect(0, 0, 120, 120)], (16, 16), [(32, 32)], windows_per_chunk=4, points=points,
                           weights=weights)
    draws, _ = _draws(sampler, 4000)
    near = np.array([[abs(r0 - r) <= 8 and abs(c0 - c) <= 8 for _, r, c in points] for _, _, (r0, c0, _, _) in draws])
    assert near[:, :2].any(axis=1).all() and not near[:, 2].any()  # a zero weight is never visited
    assert near[:, 0].mean() == pytest.approx(0.75, abs=0.04)
    for chunk, _, (r0, c0, _, _) in draws:  # jittered within the point's chunk
        a, c, b, d = astuple(chunk.corners)
        assert a <= r0 < b and c <= c0 < d
    with pytest.raises(ValueError, match="no chunk has a positive weight"):
        ChunkSampler([Rect(0, 0, 64, 64)], (16, 16), [(32, 32)], points=[(0, 0, 0)], weights=[0.0])


class _Windows(Dataset):
    def __init__(self, sampler):
        self.sampler = sampler

    def __len__(self):
        return 12

    def __getitem__(self, index):
        return torch.tensor(astuple(self.sampler.draw(lambda chunk: None)[2]))


def test_the_stream_is_seeded_per_process_and_follows_torch_seed():
    def stream(workers, seed=0):
        torch.manual_seed(seed)
        sampler = ChunkSampler([Rect(0, 0, 4000, 4000)], (16, 16), [(512, 512)])
        sampler.draw(lambda chunk: None)  # state made in this process: a forked worker must not reuse it
        loader = DataLoader(_Windows(sampler), batch_size=6, num_workers=workers)
        return [tuple(w.tolist()) for batch in loader for w in batch]

    assert stream(0) == stream(0) != stream(0, seed=1)
    two = stream(2)
    assert two == stream(2) and two[:6] != two[6:]  # each worker its own stream, the same run after run
    sampler = ChunkSampler([Rect(0, 0, 64, 64)], (16, 16), [(32, 32)])
    sampler.draw(lambda chunk: np.zeros(10**6))
    assert pickle.loads(pickle.dumps(sampler))._state is None  # the buffer is not sent to spawned workers
