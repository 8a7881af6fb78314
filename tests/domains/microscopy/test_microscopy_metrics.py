"""SEG and DET against the official implementation (py-ctcmetrics) on a CTC folder written here, and by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage

from segsuite.domains.microscopy.data import synthetic_image
from segsuite.domains.microscopy.metrics import ctc_counts, det_measure, seg_measure


def test_counts_by_hand():
    ref = np.zeros((10, 20), np.uint16)
    ref[1:5, 1:5], ref[1:5, 5:9], ref[6:9, 1:4], ref[6:9, 12:15] = 1, 2, 3, 4  # 1 and 2 touch; 4 is missed
    comp = np.zeros_like(ref)
    comp[1:5, 1:9] = 7  # 1 and 2 merged: one split needed
    comp[6:9, 1:3] = 3  # covers 6 of 9 pixels of 3: a match, IoU 2/3
    comp[0, 15:20] = 9  # a false positive
    counts = ctc_counts(ref, comp)
    assert counts == {"seg_sum": pytest.approx(0.5 + 0.5 + 2 / 3), "references": 4, "tp": 3, "fn": 1, "fp": 1,
                      "ns": 1}
    assert seg_measure(counts) == pytest.approx((0.5 + 0.5 + 2 / 3) / 4)
    assert det_measure(counts) == pytest.approx(1 - (5 + 10 + 1) / 40)


def _perturb(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible result: objects dropped, eroded, dilated, merged pairwise, split in halves, plus false ones."""
    out = np.zeros_like(labels)
    ids = [i for i in np.unique(labels) if i]
    for i in ids:
        obj, kind = labels == i, rng.integers(5)
        if kind == 0:
            continue
        if kind == 1:
            obj = ndimage.binary_erosion(obj, iterations=2)
        elif kind == 2:
            obj = ndimage.binary_dilation(obj) & (out == 0)
        out[obj] = i if kind != 3 else ids[0]  # kind 3: merged into the first object
        if kind == 4:  # split along the columns
            cols = np.nonzero(obj.any(0))[0]
            out[obj & (np.arange(labels.shape[1]) > cols.mean())] = 500 + i
    out[:4, -4:] = 999
    return out


def _write_ctc(root: Path, frames: list[np.ndarray], results: list[np.ndarray], seg_frames: set[int]) -> None:
    """GT (TRA every frame, SEG some), RES; labels unique across frames so that every track is one frame long."""
    for d in ("01_GT/TRA", "01_GT/SEG", "01_RES"):
        (root / d).mkdir(parents=True)
    tracks = {"01_GT/TRA/man_track.txt": [], "01_RES/res_track.txt": []}
    for t, (ref, comp) in enumerate(zip(frames, results)):
        ref = np.where(ref > 0, ref + 1000 * t, 0).astype(np.uint16)
        comp = np.where(comp > 0, comp + 1000 * t, 0).astype(np.uint16)
        tifffile.imwrite(root / f"01_GT/TRA/man_track{t:03d}.tif", ref)
        if t in seg_frames:
            tifffile.imwrite(root / f"01_GT/SEG/man_seg{t:03d}.tif", ref)
        tifffile.imwrite(root / f"01_RES/mask{t:03d}.tif", comp)
        tracks["01_GT/TRA/man_track.txt"] += [f"{i} {t} {t} 0" for i in np.unique(ref) if i]
        tracks["01_RES/res_track.txt"] += [f"{i} {t} {t} 0" for i in np.unique(comp) if i]
    for name, lines in tracks.items():
        (root / name).write_text("\n".join(lines) + "\n")


def test_seg_and_det_equal_py_ctcmetrics(tmp_path):
    evaluate = pytest.importorskip("ctc_metrics.scripts.evaluate")
    rng = np.random.default_rng(0)
    frames = [synthetic_image(t, 96)[1] for t in range(4)]
    results = [_perturb(f, rng) for f in frames]
    _write_ctc(tmp_path, frames, results, seg_frames={0, 2})
    official = evaluate.evaluate_sequence(str(tmp_path / "01_RES"), str(tmp_path / "01_GT"), ["SEG", "DET"],
                                          threads=1)
    det_counts = [ctc_counts(f, r) for f, r in zip(frames, results)]
    seg_counts = [det_counts[t] for t in (0, 2)]
    total = {k: sum(c[k] for c in det_counts) for k in det_counts[0]}
    assert total["ns"] > 0 and total["fp"] > 0 and total["fn"] > 0  # the perturbations exercise every term
    assert seg_measure({k: sum(c[k] for c in seg_counts) for k in total}) == pytest.approx(official["SEG"], abs=1e-6)
    assert det_measure(total) == pytest.approx(official["DET"], abs=1e-6)


def test_the_classical_baseline_splits_touching_nuclei():
    from segsuite.scripts.benchmarks.microscopy import otsu_watershed, scores

    image, labels = synthetic_image(5, 128)
    result = scores(labels.astype(np.int64), otsu_watershed(image).astype(np.int64))
    assert result["seg"] > 0.4 and result["det"] > 0.5 and result["objects"] > 10
