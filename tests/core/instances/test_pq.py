import math

import numpy as np
import pytest
import torch
from torchmetrics.detection import PanopticQuality

from segsuite.core.errors import ConfigError, DataError
from segsuite.core.instances.metrics import PanopticMetrics

V = 255  # ignore index


def row(*values: int) -> np.ndarray:
    """A (1, W) map from its values."""
    return np.array([values], np.int64)


def scores(*pairs, num_classes: int = 2, things=(1,)) -> dict:
    """PanopticMetrics over updates given as (pred_sem, pred_inst, target_sem, target_inst) tuples."""
    metric = PanopticMetrics(num_classes, things, class_names=["bg", "obj", "x", "y"][:num_classes])
    for pair in pairs:
        metric.update(*pair)
    return metric.compute()


def counts(result: dict, k: int) -> tuple:
    c = result["per_class"][k]
    return c["tp"], c["fp"], c["fn"]


# class 0 bg (stuff), class 1 obj (thing). Target: object 5 at x 0..3, object 9 at x 10..11.
# Prediction: object 1 at x 0..2 (IoU 3/4 with 5: TP), object 2 at x 6..7 (FP); object 9 is missed (FN).
TP_FP_FN = (
    row(1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), row(1, 1, 1, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0),
    row(1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0), row(5, 5, 5, 5, 0, 0, 0, 0, 0, 0, 9, 9, 0, 0, 0, 0),
)
# 3D: target object 1 = [:, 0:2, 0:2] (8 voxels), object 2 = [1, 2:4, 2:4] (4); prediction object 7 adds
# [0, 2, 0:2] to object 1 (IoU 8/10: TP), object 4 = [1, 2:4, 2] covers half of object 2 (IoU 2/4, not > 0.5: FP + FN).
# bg: 20 voxels each side, 18 shared -> IoU 18/22.
TARGET_3D = np.zeros((2, 4, 4), np.int64)
TARGET_3D[:, 0:2, 0:2] = 1
TARGET_3D[1, 2:4, 2:4] = 2
PRED_3D = np.zeros((2, 4, 4), np.int64)
PRED_3D[:, 0:2, 0:2] = 7
PRED_3D[0, 2, 0:2] = 7
PRED_3D[1, 2:4, 2] = 4
CASE_3D = ((PRED_3D > 0).astype(np.int64), PRED_3D, (TARGET_3D > 0).astype(np.int64), TARGET_3D)


def test_perfect_match_is_all_ones():
    sem = row(0, 0, 1, 1, 1, 0, 1, 1, 0, 2, 2)
    inst = row(0, 0, 4, 4, 4, 0, 8, 8, 0, 0, 0)
    result = scores((sem, inst, sem, inst), num_classes=3)
    assert result["pq"] == result["sq"] == result["rq"] == 1.0
    assert result["pq_things"] == result["pq_stuff"] == 1.0
    assert result["precision"] == result["recall"] == result["f1"] == 1.0
    assert [counts(result, k) for k in range(3)] == [(1, 0, 0), (2, 0, 0), (1, 0, 0)]


def test_one_tp_one_fp_one_fn_by_hand():
    result = scores(TP_FP_FN)
    # obj: SQ = 0.75, RQ = 1 / (1 + 1/2 + 1/2) = 0.5, PQ = 0.375
    obj = result["per_class"][1]
    assert counts(result, 1) == (1, 1, 1)
    assert obj["sq"] == 0.75 and obj["rq"] == 0.5 and obj["pq"] == 0.375
    assert obj["precision"] == obj["recall"] == obj["f1"] == 0.5
    assert obj["pred_count"] == 2 and obj["true_count"] == 2 and obj["thing"] and obj["class"] == "obj"
    # bg: target 10 px, prediction 11 px, 8 shared -> IoU 8 / 13, a TP
    assert counts(result, 0) == (1, 0, 0)
    assert math.isclose(result["per_class"][0]["pq"], 8 / 13)
    assert math.isclose(result["pq"], (0.375 + 8 / 13) / 2)
    assert math.isclose(result["sq"], (0.75 + 8 / 13) / 2) and result["rq"] == 0.75
    assert result["pq_things"] == 0.375 and math.isclose(result["pq_stuff"], 8 / 13)
    assert result["precision"] == result["recall"] == result["f1"] == 0.5


@pytest.mark.parametrize("shape", [(0, 0), (3, 4)])
def test_empty_pair_counts_nothing(shape):
    void, none = np.full(shape, V), np.zeros(shape, np.int64)
    result = scores((void, none, void, none))
    assert all(math.isnan(result[k]) for k in ("pq", "sq", "rq", "pq_things", "pq_stuff", "precision", "recall", "f1"))
    for c in result["per_class"]:
        assert (c["tp"], c["fp"], c["fn"]) == (0, 0, 0) and math.isnan(c["pq"]) and math.isnan(c["sq"])


def test_all_false_positives_score_zero():
    # target all bg; the prediction is two objects and no bg: obj has 2 FP, bg 1 FN, nothing matches
    result = scores((row(1, 1, 1, 1), row(1, 1, 2, 2), row(0, 0, 0, 0), row(0, 0, 0, 0)))
    assert counts(result, 0) == (0, 0, 1) and counts(result, 1) == (0, 2, 0)
    assert result["pq"] == result["sq"] == result["rq"] == 0.0
    assert result["precision"] == 0.0 and result["f1"] == 0.0 and math.isnan(result["recall"])


def test_void_leaves_the_union_and_excuses_predictions_mostly_on_it():
    # target: x 0..3 void, x 4..13 bg (10 px)
    # prediction: bg at x 0..1 (on void) and 8..13; object 1 at x 2..4 (2 of 3 px on void: not an FP);
    # object 2 at x 5..7 (on bg: FP). bg IoU = 6 / (8 + 10 - 6 - 2 void) = 0.6 (without the void rule 6/12: no match)
    pred_sem = row(0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0)
    pred_inst = row(0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 0, 0, 0, 0)
    target = row(V, V, V, V, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    result = scores((pred_sem, pred_inst, target, np.zeros_like(target)))
    assert counts(result, 0) == (1, 0, 0) and math.isclose(result["per_class"][0]["sq"], 0.6)
    assert counts(result, 1) == (0, 1, 0)


def test_prediction_half_on_void_is_still_a_false_positive():
    result = scores((row(1, 1, 1, 1), row(3, 3, 3, 3), row(V, V, 0, 0), row(0, 0, 0, 0)))
    assert counts(result, 1) == (0, 1, 0) and counts(result, 0) == (0, 0, 1)


def test_crowd_is_never_matched_nor_missed_and_excuses_predictions():
    # target: obj pixels without instance at x 0..5 (crowd), object 3 at x 6..9, bg at x 10..11
    # prediction: object 1 at x 0..3 (all on crowd: not an FP, and crowds never match), object 2 at x 4..9
    # (IoU with object 3 = 4 / (6 + 4 - 4): TP), bg at x 10..11 (TP)
    pred_sem = row(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0)
    pred_inst = row(1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 0, 0)
    target_sem = row(1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0)
    target_inst = row(0, 0, 0, 0, 0, 0, 3, 3, 3, 3, 0, 0)
    result = scores((pred_sem, pred_inst, target_sem, target_inst))
    assert counts(result, 1) == (1, 0, 0) and math.isclose(result["per_class"][1]["sq"], 2 / 3)
    assert counts(result, 0) == (1, 0, 0)


def test_crowd_of_another_class_does_not_excuse():
    # target: class-2 crowd at x 0..3; a class-1 prediction there is an FP
    result = scores((row(1, 1, 1, 1), row(5, 5, 5, 5), row(2, 2, 2, 2), row(0, 0, 0, 0)), num_classes=3, things=(1, 2))
    assert counts(result, 1) == (0, 1, 0) and counts(result, 2) == (0, 0, 0)


def test_predicted_thing_pixels_without_instance_are_ignored():
    # x 3: predicted obj without an instance: no segment (no FP), but it is not bg either (bg IoU 3/4)
    result = scores((row(0, 0, 0, 1), row(0, 0, 0, 0), row(0, 0, 0, 0), row(0, 0, 0, 0)))
    assert counts(result, 1) == (0, 0, 0) and math.isnan(result["per_class"][1]["pq"])
    assert counts(result, 0) == (1, 0, 0) and result["pq"] == 0.75 and math.isnan(result["pq_things"])


def test_3d_volume_by_hand():
    result = scores(CASE_3D)
    obj = result["per_class"][1]
    assert counts(result, 1) == (1, 1, 1)
    assert math.isclose(obj["sq"], 0.8) and obj["rq"] == 0.5 and math.isclose(obj["pq"], 0.4)
    assert counts(result, 0) == (1, 0, 0) and math.isclose(result["per_class"][0]["sq"], 18 / 22)


def test_two_updates_pool_counts_not_scores():
    both = PanopticMetrics(2, [1])
    both.update(*TP_FP_FN)
    both.update(*(torch.from_numpy(a) for a in CASE_3D))  # torch input, another dimensionality
    parts = [PanopticMetrics(2, [1]) for _ in range(2)]
    parts[0].update(*TP_FP_FN)
    parts[1].update(*CASE_3D)
    for name in ("tp", "fp", "fn", "iou_sum"):
        assert torch.equal(getattr(both, name), getattr(parts[0], name) + getattr(parts[1], name))
    obj = both.compute()["per_class"][1]
    # obj: 2 TP (IoU 0.75, 0.8), 2 FP, 2 FN -> SQ 0.775, RQ 2 / (2 + 1 + 1) = 0.5
    assert (obj["tp"], obj["fp"], obj["fn"]) == (2, 2, 2)
    assert math.isclose(obj["sq"], 0.775) and math.isclose(obj["pq"], 0.3875)
    assert both.compute()["precision"] == 0.5


def synthetic_scene(rng: np.random.Generator, shape=(48, 64), n=12) -> tuple[np.ndarray, np.ndarray]:
    """Stuff bands (classes 0, 1) with rectangles of thing classes 2, 3, ids 1..n (later ones on top)."""
    sem = np.where(np.arange(shape[0])[:, None] < rng.integers(10, 40), 0, 1) * np.ones(shape, np.int64)
    inst = np.zeros(shape, np.int64)
    for i in range(1, n + 1):
        y, x = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        h, w = rng.integers(3, 14, size=2)
        sem[y:y + h, x:x + w] = rng.integers(2, 4)
        inst[y:y + h, x:x + w] = i
    return sem, inst


def jitter(rng: np.random.Generator, sem: np.ndarray, inst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A prediction: the target shifted by up to 2 px, some instances of the other thing class or missed, renumbered."""
    shift = tuple(rng.integers(-2, 3, size=2))
    sem, inst = np.roll(sem, shift, axis=(0, 1)), np.roll(inst, shift, axis=(0, 1))
    n = inst.max() + 1
    swapped, missed = rng.random(n) < 0.2, rng.random(n) < 0.1
    sem = np.where(swapped[inst] & (inst > 0), 5 - sem, sem)  # 2 <-> 3
    sem = np.where(missed[inst] & (inst > 0), 1, sem)
    return sem, np.where(sem >= 2, rng.permutation(n)[inst] + 100, 0)


def test_states_agree_with_torchmetrics_panoptic_quality():
    rng = np.random.default_rng(0)
    ours = PanopticMetrics(4, [2, 3])
    theirs = PanopticQuality(things={2, 3}, stuffs={0, 1})
    for _ in range(3):
        target = synthetic_scene(rng)
        pred = jitter(rng, *target)
        assert (pred[1][pred[0] >= 2] > 0).all() and (target[1][target[0] >= 2] > 0).all()  # no crowd, no void
        ours.update(*pred, *target)
        theirs.update(*(torch.from_numpy(np.stack(p, -1))[None] for p in (pred, target)))
    order = [2, 3, 0, 1]  # torchmetrics stores things first, then stuff, each sorted
    assert ours.tp[order].tolist() == theirs.true_positives.tolist()
    assert ours.fp[order].tolist() == theirs.false_positives.tolist()
    assert ours.fn[order].tolist() == theirs.false_negatives.tolist()
    assert torch.allclose(ours.iou_sum[order], theirs.iou_sum)
    assert ours.tp.sum() > 5 and ours.fp.sum() > 0 and ours.fn.sum() > 0  # the case exercises every count


def test_large_instance_ids_use_the_sparse_path():
    sem, inst = row(1, 1, 0, 1, 1), row(10**9, 10**9, 0, 7, 7)
    result = scores((sem, inst, sem, inst))
    assert counts(result, 1) == (2, 0, 0) and result["pq"] == 1.0


def test_bad_configuration_and_inputs_are_named():
    with pytest.raises(ConfigError, match=r"\[5\].*0\.\.3"):
        PanopticMetrics(4, [1, 5])
    with pytest.raises(ConfigError, match="class names"):
        PanopticMetrics(2, [1], class_names=["a"])
    metric = PanopticMetrics(2, [1])
    with pytest.raises(DataError, match="one shape"):
        metric.update(row(0, 0), row(0, 0), row(0, 0, 0), row(0, 0, 0))
    with pytest.raises(DataError, match=r"target classes \[7\]"):
        metric.update(row(0, 0), row(0, 0), row(0, 7), row(0, 0))


def test_flat_names_scores_for_loggers():
    metric = PanopticMetrics(2, [1], class_names=["bg", "obj"])
    metric.update(*TP_FP_FN)
    flat = metric.flat("val")
    assert flat["val/pq_obj"] == 0.375 and flat["val/f1"] == 0.5 and "val/per_class" not in flat
