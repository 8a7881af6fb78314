"""Figure 10's plumbing (`segsuite benchmark throughput`): the file, decoded-cache and memory copies of the training
dataset draw the very same samples, the last two without reading a file (the speeds themselves are the benchmark's)."""

import numpy as np
import torch

from segsuite.domains.landcover import samples
from segsuite.domains.landcover.dataset import build_datasets
from segsuite.domains.landcover.synthetic import make_dataset
from segsuite.scripts.benchmarks.landcover_bands import same_stream, training_speed


def _refuse(*args, **kwargs):
    raise AssertionError("the memory copy read a file")


def test_the_cache_and_memory_copies_draw_the_file_copys_samples_without_reading(tmp_path, monkeypatch):
    make_dataset(tmp_path, n_scenes=2, size=96, seed=0)
    ds = build_datasets(str(tmp_path), patch_size=32, holdout_fraction=0.25, samples_per_epoch=30)["train"]
    ds.chunking = (32, 3, 2)  # several chunks per scene
    file, cached, memory = same_stream(ds, 30, tmp_path / "cache")
    from_file = [file[i] for i in range(30)]
    monkeypatch.setattr(samples, "read_tile", _refuse)
    from_memory, from_cache = [memory[i] for i in range(30)], [cached[i] for i in range(30)]
    assert len({float(s["image"].sum()) for s in from_file}) > 10  # many distinct windows
    assert cached.unpacked.hits > 5 and cached.unpacked.written == 0
    for a, b, c in zip(from_file, from_memory, from_cache, strict=True):
        assert all(torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]) for k in ("image", "mask", "instances"))


def test_training_speed_times_both_copies_in_rounds(tmp_path):
    timings = training_speed(tmp_path, size=600, patch=64, n=12, repeats=2, chunking=(128, 4, 2))
    assert list(timings) == ["training windows from a 600^2 GeoTIFF", "the same, decoded-pixel cache warm",
                             "the same windows, the scene in memory"]
    assert all(len(t.seconds) == 2 and min(t.seconds) > 0 for t in timings.values())
    assert np.isfinite([t.median for t in timings.values()]).all()
