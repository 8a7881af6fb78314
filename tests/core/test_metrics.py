import math

import torch

from segsuite.core.metrics import SegmentationMetrics, scores_from_confusion


def test_scores_match_hand_computed_confusion_matrix():
    # rows: target, cols: prediction
    confmat = torch.tensor([[5, 1, 0], [2, 3, 1], [0, 0, 0]])
    s = scores_from_confusion(confmat)
    assert s["iou"][0].item() == 5 / (6 + 7 - 5)
    assert s["iou"][1].item() == 3 / (6 + 4 - 3)
    assert s["iou"][2].item() == 0.0  # predicted once, never present: IoU 0 (a false positive)
    assert math.isclose(s["dice"][1].item(), 2 * 3 / (6 + 4))
    assert math.isclose(s["pixel_accuracy"].item(), 8 / 12)
    assert math.isclose(s["miou"].item(), (5 / 8 + 3 / 7 + 0) / 3)


def test_absent_class_is_nan_and_left_out_of_means():
    s = scores_from_confusion(torch.tensor([[4, 0, 0], [0, 2, 0], [0, 0, 0]]))
    assert math.isnan(s["iou"][2].item())
    assert s["miou"].item() == 1.0


def test_ignored_pixels_do_not_count():
    metric = SegmentationMetrics(3, ignore_index=255)
    target = torch.tensor([[0, 1, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 2, 0]])
    metric.update(pred, target)
    confmat = metric.compute()["confmat"]
    assert confmat.sum() == 3
    assert confmat.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0]]


def test_update_accepts_logits():
    metric = SegmentationMetrics(2, ignore_index=255, class_names=["bg", "fg"])
    target = torch.tensor([[[0, 1], [1, 1]]])
    logits = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float()
    metric.update(logits, target)
    flat = metric.flat("val")
    assert flat["val/miou"] == 1.0 and flat["val/iou_fg"] == 1.0
