"""Driving-specific metrics (numpy): Cityscapes category mIoU, boundary F-score, KITTI road MaxF / AP.

Confusion matrices are ``(C, C)`` with rows = ground truth, columns = prediction, ignored pixels not counted.
"""

from __future__ import annotations

import numpy as np
import torch

from segsuite.core.metrics import scores_from_confusion

from .labels import CITYSCAPES_CATEGORIES, CITYSCAPES_TRAIN_ID_TO_CATEGORY


def category_confusion(conf: np.ndarray, class_to_category: list[int], num_categories: int) -> np.ndarray:
    """Sum a class confusion matrix ``(C, C)`` into a category confusion matrix ``(K, K)``."""
    onehot = np.zeros((len(class_to_category), num_categories))
    onehot[np.arange(len(class_to_category)), class_to_category] = 1
    return onehot.T @ conf.astype(np.float64) @ onehot


def category_miou(conf: np.ndarray, class_to_category: list[int] | None = None,
                  category_names: list[str] | None = None) -> dict:
    """Category IoU as the official Cityscapes evaluation computes it, from the trainId confusion matrix ``(19, 19)``
    (defaults: Cityscapes categories flat, construction, object, nature, sky, human, vehicle).
    Returns ``{"per_category": {name: IoU or NaN}, "mIoU": mean over categories present}``."""
    class_to_category = CITYSCAPES_TRAIN_ID_TO_CATEGORY if class_to_category is None else class_to_category
    names = CITYSCAPES_CATEGORIES if category_names is None else category_names
    if conf.shape != (len(class_to_category),) * 2:
        raise ValueError(f"confusion matrix {conf.shape} does not match {len(class_to_category)} classes")
    iou = scores_from_confusion(torch.from_numpy(category_confusion(conf, class_to_category, len(names))))["iou"]
    iou = iou.numpy()
    return {"per_category": dict(zip(names, iou.tolist(), strict=True)),
            "mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")}


def _boundaries(labels: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Boundary pixels ``(H, W)`` bool: valid pixels with a valid 4-neighbour of a different label."""
    edge = np.zeros(labels.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        differs = (labels[tuple(a)] != labels[tuple(b)]) & valid[tuple(a)] & valid[tuple(b)]
        edge[tuple(a)] |= differs
        edge[tuple(b)] |= differs
    return edge


def _disk_offsets(tolerance: float) -> list[tuple[int, int]]:
    """Integer offsets ``(dy, dx)`` with ``dy**2 + dx**2 <= tolerance**2``: the pixels within Euclidean
    ``tolerance`` of a pixel."""
    r = int(np.floor(tolerance))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= tolerance ** 2]


def _matched(src: np.ndarray, dst: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """For each boundary pixel of ``src`` ``(H, W)`` (class index, -1 where no boundary): its class and whether a
    boundary pixel of the same class in ``dst`` ``(H, W)`` lies within ``tolerance``. Returns ``(classes (N,),
    matched (N,) bool)``; only boundary pixels are visited, so the cost is boundary length x disk size."""
    ys, xs = np.nonzero(src >= 0)
    cls = src[ys, xs]
    hit = np.zeros(cls.shape, dtype=bool)
    h, w = dst.shape
    for dy, dx in _disk_offsets(tolerance):
        y, x = ys + dy, xs + dx
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        hit[inside] |= dst[y[inside], x[inside]] == cls[inside]
    return cls, hit


def boundary_counts(pred: np.ndarray, gt: np.ndarray, num_classes: int, tolerance: float = 2.0,
                    ignore_index: int = 255) -> np.ndarray:
    """Per-class boundary matching counts ``(C, 4)``: [predicted boundary pixels within ``tolerance`` of a true one
    of the same class, predicted boundary pixels, true boundary pixels within ``tolerance`` of a predicted one,
    true boundary pixels]. A class boundary pixel is a pixel of that class with a 4-neighbour of another class;
    pixels whose ground truth is ``ignore_index`` (and edges towards them) are excluded. Sum over images, then
    call ``boundary_f_from_counts``."""
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} must be equal (H, W)")
    valid = gt != ignore_index
    in_range = lambda labels: (labels >= 0) & (labels < num_classes)  # noqa: E731
    pred_edges = np.where(_boundaries(pred, valid) & in_range(pred), pred, -1).astype(np.int64)
    gt_edges = np.where(_boundaries(gt, valid) & in_range(gt), gt, -1).astype(np.int64)
    counts = np.zeros((num_classes, 4), dtype=np.int64)
    for column, (src, dst) in ((0, (pred_edges, gt_edges)), (2, (gt_edges, pred_edges))):
        cls, hit = _matched(src, dst, tolerance)
        counts[:, column] = np.bincount(cls[hit], minlength=num_classes)
        counts[:, column + 1] = np.bincount(cls, minlength=num_classes)
    return counts


def boundary_f_from_counts(counts: np.ndarray) -> dict:
    """Boundary precision, recall and F ``(C,)`` per class (NaN where undefined) and their mean F over classes
    with a defined F, from summed ``boundary_counts``. A class with true boundaries but no predicted ones has F 0."""
    counts = counts.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = counts[:, 0] / counts[:, 1]
        recall = counts[:, 2] / counts[:, 3]
        precision = np.where((counts[:, 1] == 0) & (counts[:, 3] > 0), 0.0, precision)
        recall = np.where((counts[:, 3] == 0) & (counts[:, 1] > 0), 0.0, recall)
        f = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    f = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f)
    return {"precision": precision, "recall": recall, "f_score": f,
            "mean_f_score": float(np.nanmean(f)) if np.isfinite(f).any() else float("nan")}


def boundary_f_score(pred: np.ndarray, gt: np.ndarray, num_classes: int, tolerance: float = 2.0,
                     ignore_index: int = 255) -> dict:
    """Boundary F-score of one prediction ``(H, W)`` against ground truth ``(H, W)``; see ``boundary_counts``."""
    return boundary_f_from_counts(boundary_counts(pred, gt, num_classes, tolerance, ignore_index))


KITTI_THRESHOLDS = np.arange(256) / 255.0  # the devkit's thresholds; road is predicted where P(road) >= threshold


def kitti_road_counts(road_prob: np.ndarray, gt: np.ndarray, ignore_index: int = 255, quantize: bool = True) -> dict:
    """Per-threshold counts for one image: ``{"FN": (256,), "FP": (256,), "pos": int, "neg": int}``.
    ``gt`` ``(H, W)``: 1 road, 0 non-road, ``ignore_index`` don't care (excluded). With ``quantize`` the
    probability ``(H, W)`` is rounded to the 8-bit levels a result PNG holds, so the numbers equal the devkit's
    on files written by ``io.write_kitti_road``. Sum the counts over images, then call ``kitti_road_scores``."""
    if road_prob.shape != gt.shape or gt.ndim != 2:
        raise ValueError(f"probability {road_prob.shape} and ground truth {gt.shape} must be equal (H, W)")
    if quantize:  # the devkit reads the PNG as uint8 and divides in float32: keep its exact tie behaviour
        prob = np.rint(np.clip(road_prob, 0, 1) * 255).astype(np.float32) / np.float32(255)
    else:
        prob = np.asarray(road_prob, dtype=np.float64)
    valid = gt != ignore_index
    road, nonroad = prob[valid & (gt == 1)], prob[valid & (gt != 1)]
    # searchsorted 'right' counts thresholds <= p: a pixel with p is detected at every threshold index below that.
    detected_road = np.bincount(np.searchsorted(KITTI_THRESHOLDS, road, "right"), minlength=257)
    detected_non = np.bincount(np.searchsorted(KITTI_THRESHOLDS, nonroad, "right"), minlength=257)
    fn = np.cumsum(detected_road)[:256]  # road pixels with p < threshold
    fp = detected_non[::-1].cumsum()[::-1][1:]  # non-road pixels with p >= threshold
    return {"FN": fn, "FP": fp, "pos": int(road.size), "neg": int(nonroad.size)}


def kitti_road_scores(counts: dict) -> dict:
    """KITTI road scores from summed counts, as the devkit defines them: MaxF (max F1 over thresholds), AP as the
    devkit's 11-point interpolated average precision (max precision at recall >= 0, 0.1, ..., 1.0, with the
    devkit's ``np.arange(0, 1.1, 0.1)`` levels), precision/recall at MaxF and the best threshold."""
    pos, neg = counts["pos"], counts["neg"]
    if pos == 0:
        raise ValueError("KITTI road scores need at least one road pixel in the ground truth")
    tp = pos - counts["FN"].astype(np.float64)
    fp = counts["FP"].astype(np.float64)
    recall = tp / pos
    precision = tp / (tp + fp + 1e-10)
    keep = ~((recall == 0) & (precision == 0))
    recall, precision, thresholds = recall[keep], precision[keep], KITTI_THRESHOLDS[keep]
    ap = np.mean([precision[recall >= level].max() for level in np.arange(0, 1.1, 0.1)])
    f = 2 * precision * recall / (precision + recall + 1e-10)
    best = int(f.argmax())
    return {"MaxF": float(f[best]), "AP": float(ap), "precision": float(precision[best]),
            "recall": float(recall[best]), "threshold": float(thresholds[best]), "pos": int(pos), "neg": int(neg)}
