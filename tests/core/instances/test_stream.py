"""Streaming instance labelling over row strips agrees with labelling the whole image."""

import numpy as np

from segsuite.core.instances import Instancer, StripLabeller


def stream(cut: Instancer, semantic: np.ndarray, rows: int, border: np.ndarray | None = None):
    labeller = StripLabeller(cut, semantic.shape[1])
    pieces = [labeller.push(semantic[r : r + rows], None if border is None else border[r : r + rows])
              for r in range(0, semantic.shape[0], rows)]
    result = labeller.finish()
    return result, result.lut[np.vstack(pieces)]


def random_scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    semantic = np.zeros((70, 53), np.int64)
    for _ in range(60):
        r, c = rng.integers(0, 66), rng.integers(0, 49)
        h, w = rng.integers(1, 12, 2)
        semantic[r : r + h, c : c + w] = rng.integers(1, 3)
    return semantic


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist()))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b)) and all((x == 0) == (y == 0) for x, y in pairs)


def test_strips_give_the_same_instances_as_the_whole_image():
    for seed, connectivity in ((0, 1), (1, 2), (2, 1)):
        semantic = random_scene(seed)
        cut = Instancer(["a", "b"], ["bg", "a", "b"], min_size=4, connectivity=connectivity)
        whole = cut(semantic)
        for rows in (1, 7, 16, 70):
            result, ids = stream(cut, semantic, rows)
            assert result.n == whole.n and same_partition(whole.ids, ids)
            for i in (1, result.n):
                where = np.argwhere(ids == i)
                assert result.pixels[i] == len(where)
                assert np.allclose(result.centroid[i], where.mean(0))
                assert result.bbox[i].tolist() == [*where.min(0), *(where.max(0) + 1)]
                assert result.classes[i] == semantic[tuple(where[0])]


def test_an_object_crossing_strips_is_one_instance_and_u_shapes_join():
    semantic = np.zeros((12, 10), np.int64)
    semantic[2:10, 1:3] = 1  # left arm
    semantic[2:10, 6:8] = 1  # right arm, joined only at the bottom
    semantic[9:11, 1:8] = 1
    result, ids = stream(Instancer(["a"], ["bg", "a"]), semantic, rows=3)
    assert result.n == 1 and result.pixels[1] == (semantic == 1).sum()


def test_border_split_survives_strip_seams():
    semantic = np.zeros((20, 16), np.int64)
    semantic[2:18, 2:14] = 1  # two 16 x 6 buildings sharing an edge at column 8, crossing every seam
    border = np.zeros(semantic.shape, np.float32)
    border[2:18, 7:9] = 0.9
    cut = Instancer(["a"], ["bg", "a"])
    for rows in (3, 5, 20):
        result, ids = stream(cut, semantic, rows, border)
        assert result.n == 2 and sorted(result.pixels[1:].tolist()) == [96, 96]
        assert same_partition(cut(semantic, border).ids, ids)


def test_panoptic_quality_over_strips_equals_the_whole_image():
    from segsuite.core.instances.metrics import PanopticMetrics
    from segsuite.core.instances.stream import StripPanoptic

    for seed in range(4):
        rng = np.random.default_rng(seed)
        pred = random_scene(seed)
        target = np.roll(pred, seed % 3, axis=1)  # mostly matching, IoUs below 1
        target[:, 20 + seed : 24 + seed] = random_scene(seed + 100)[:, 20 + seed : 24 + seed]  # some disagreement
        target[rng.random(target.shape) < 0.02] = 255  # void pixels
        truth = Instancer(["a", "b"], ["bg", "a", "b"])(np.where(target == 255, 0, target)).ids
        truth[(target == 2) & (rng.random(target.shape) < 0.05)] = 0  # some crowd pixels
        cut = Instancer(["a", "b"], ["bg", "a", "b"], min_size=5)
        whole = PanopticMetrics(3, things=[1, 2])
        whole.update(pred, cut(pred).ids, target, truth)
        labeller, strips = StripLabeller(cut, pred.shape[1]), StripPanoptic(whole.is_thing)
        for r in range(0, pred.shape[0], 9):
            strips.push(pred[r : r + 9], labeller.push(pred[r : r + 9]), target[r : r + 9], truth[r : r + 9])
        streamed = PanopticMetrics(3, things=[1, 2])
        streamed.add_counts(strips.finish(labeller.finish()))
        for name in ("tp", "fp", "fn"):
            assert getattr(streamed, name).tolist() == getattr(whole, name).tolist(), (seed, name)
        assert np.allclose(streamed.iou_sum.numpy(), whole.iou_sum.numpy())
        assert whole.tp.sum() > 0
