"""Metrics on hand-computable cases and against a direct transcription of the KITTI devkit's histogram method."""

import numpy as np
import pytest

from segsuite.domains.road_scene.metrics import (
    KITTI_THRESHOLDS,
    boundary_counts,
    boundary_f_from_counts,
    boundary_f_score,
    category_miou,
    kitti_road_counts,
    kitti_road_scores,
)


def test_kitti_maxf_ap_hand_case():
    # 2 road pixels (p = 1.0, 0.6), 2 non-road (p = 0.6, 0.0), one don't-care pixel that must not count.
    prob = np.array([[1.0, 0.6, 0.6, 0.0, 1.0]])
    gt = np.array([[1, 1, 0, 0, 255]])
    s = kitti_road_scores(kitti_road_counts(prob, gt))
    # threshold 0: P=1/2, R=1, F=2/3; 0 < t <= 0.6: P=2/3, R=1, F=0.8; 0.6 < t <= 1: P=1, R=1/2, F=2/3.
    assert s["MaxF"] == pytest.approx(0.8, abs=1e-8)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(1.0)
    assert s["threshold"] == pytest.approx(1 / 255)
    # 11-point AP: recall levels 0..0.5 -> max precision 1; 0.6..1.0 -> 2/3.
    assert s["AP"] == pytest.approx((6 * 1.0 + 5 * 2 / 3) / 11)
    assert (s["pos"], s["neg"]) == (2, 2)


def test_kitti_perfect_prediction():
    gt = np.array([[1, 0], [255, 1]])
    s = kitti_road_scores(kitti_road_counts(gt.clip(0, 1).astype(float), gt))
    assert s["MaxF"] == pytest.approx(1.0) and s["AP"] == pytest.approx(1.0)


def _devkit_eval_exp(gt_bin, prob, valid):
    """Transcription of devkit_road helper.evalExp (histogram with -inf/+inf bins)."""
    edges = np.concatenate(([-np.inf], KITTI_THRESHOLDS, [np.inf]))
    fn = np.cumsum(np.histogram(prob[gt_bin & valid], bins=edges)[0])[: len(KITTI_THRESHOLDS)]
    fp_hist = np.histogram(prob[~gt_bin & valid], bins=edges)[0]
    fp = np.flipud(np.cumsum(np.flipud(fp_hist)))[1: 1 + len(KITTI_THRESHOLDS)]
    return fn, fp, int((gt_bin & valid).sum()), int((~gt_bin & valid).sum())


def test_kitti_counts_match_devkit_histograms_over_several_images():
    rng = np.random.default_rng(1)
    total = {"FN": 0, "FP": 0, "pos": 0, "neg": 0}
    ref = [0, 0, 0, 0]
    for _ in range(3):
        gt = rng.choice([0, 1, 255], size=(20, 30), p=[0.45, 0.45, 0.1])
        prob = np.clip(0.5 * (gt == 1) + rng.uniform(0, 0.6, gt.shape), 0, 1)
        counts = kitti_road_counts(prob, gt)
        for k in total:
            total[k] = total[k] + counts[k]
        # the devkit reads the uint8 PNG and divides by 255 in float32
        png_prob = np.rint(prob * 255).astype(np.uint8).astype("f4") / 255
        for i, v in enumerate(_devkit_eval_exp(gt == 1, png_prob, gt != 255)):
            ref[i] = ref[i] + v
    np.testing.assert_array_equal(total["FN"], ref[0])
    np.testing.assert_array_equal(total["FP"], ref[1])
    assert (total["pos"], total["neg"]) == (ref[2], ref[3])
    s = kitti_road_scores(total)
    assert 0 < s["MaxF"] <= 1 and 0 < s["AP"] <= 1


def test_kitti_needs_road_pixels():
    with pytest.raises(ValueError, match="road pixel"):
        kitti_road_scores(kitti_road_counts(np.zeros((2, 2)), np.zeros((2, 2), int)))


def test_boundary_f_shift_by_one_pixel():
    gt = np.zeros((8, 8), int)
    gt[:, 4:] = 1  # boundary pixels: column 3 (class 0) and column 4 (class 1)
    pred = np.zeros((8, 8), int)
    pred[:, 5:] = 1  # boundaries shifted one column right
    exact = boundary_f_score(pred, gt, num_classes=2, tolerance=0)
    assert exact["mean_f_score"] == 0.0
    tolerant = boundary_f_score(pred, gt, num_classes=2, tolerance=1)
    np.testing.assert_allclose(tolerant["f_score"], [1.0, 1.0])
    assert boundary_f_score(gt, gt, 2, tolerance=0)["mean_f_score"] == 1.0


def test_boundary_f_counts_and_ignore():
    gt = np.zeros((6, 6), int)
    gt[:, 3:] = 1
    pred = gt.copy()
    pred[0:2, 0:2] = 1  # spurious blob of class 1 inside class 0, away from the true boundary
    counts = boundary_counts(pred, gt, num_classes=2, tolerance=0)
    # class 0 gt boundary: column 2 (6 px); pred class-0 boundary: column 2 plus the rim around the blob
    assert counts[0, 3] == 6 and counts[0, 2] == 6
    assert counts[0, 1] > counts[0, 0] == 6
    # ignoring the blob's ground truth removes every spurious boundary pixel
    gt_ignored = gt.copy()
    gt_ignored[0:3, 0:3] = 255
    clean = boundary_f_score(pred, gt_ignored, 2, tolerance=0, ignore_index=255)
    np.testing.assert_allclose(clean["f_score"], [1.0, 1.0])


def test_boundary_f_missing_predictions_score_zero_and_absent_classes_nan():
    gt = np.zeros((4, 4), int)
    gt[:, 2:] = 1
    pred = np.zeros((4, 4), int)
    r = boundary_f_from_counts(boundary_counts(pred, gt, num_classes=3, tolerance=1))
    np.testing.assert_array_equal(r["f_score"][:2], [0.0, 0.0])
    assert np.isnan(r["f_score"][2]) and r["mean_f_score"] == 0.0


def test_category_miou_hand_case():
    conf = np.zeros((19, 19))
    conf[0, 0] = 10  # road -> road
    conf[0, 1] = 5  # road -> sidewalk: same category 'flat', counts as correct there
    conf[13, 13] = 4  # car -> car
    conf[13, 11] = 4  # car -> person: vehicle vs human
    r = category_miou(conf)
    assert r["per_category"]["flat"] == pytest.approx(1.0)
    assert r["per_category"]["vehicle"] == pytest.approx(0.5)
    assert r["per_category"]["human"] == pytest.approx(0.0)
    assert np.isnan(r["per_category"]["sky"])
    assert r["mIoU"] == pytest.approx(0.5)
