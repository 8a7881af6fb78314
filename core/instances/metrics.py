"""Panoptic quality (Kirillov et al. 2019) with the COCO panopticapi rules, accumulated with torchmetrics.

Per class: ``PQ = SQ * RQ``, ``SQ = sum of matched IoUs / TP``, ``RQ = TP / (TP + FP/2 + FN/2)``. A prediction and a
target segment of the same class match when their IoU exceeds 0.5 (so matches are unique). Target pixels equal to
the ignore index are void; target thing pixels without an instance are a crowd region of their class. Void pixels
leave the IoU's union; crowd regions are never false negatives; an unmatched prediction that lies more than half on
void or on the crowd region of its class is not a false positive. Means run over classes seen at least once
(TP + FP + FN > 0), as in panopticapi.
"""

from __future__ import annotations

import numpy as np
import torch

from segsuite.core.errors import DataError


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _narrow(keys: np.ndarray) -> int | None:
    """The smallest key when ``keys`` span a range narrow enough for a lookup table, else None (sort instead)."""
    if not keys.size:
        return 0
    lo, hi = int(keys.min()), int(keys.max())
    return lo if hi - lo <= 2 * keys.size + 65536 else None


def _unique_counts(keys: np.ndarray, lo: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of non-negative int64 ``keys`` (sorted) and their counts; ``lo``: ``_narrow(keys)``."""
    lo = _narrow(keys) if lo is None else lo
    if lo is not None:  # narrow range: one bincount, no sort
        counts = np.bincount((keys - lo if lo else keys).ravel())
        uniq = np.flatnonzero(counts)
        return uniq + lo, counts[uniq]
    return np.unique(keys, return_counts=True)


def dense_labels(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense labels for non-negative int64 ``keys``, key 0 always label 0: labels (same shape), the distinct keys in
    label order (0 first) and their counts. Ids handed out in order (a strip's provisional ids, say) span a narrow
    range, which a lookup table serves without sorting."""
    lo = _narrow(keys)
    uniq, counts = _unique_counts(keys, lo) if lo is not None else np.unique(keys, return_counts=True)
    if not uniq.size or uniq[0] != 0:
        uniq, counts = np.concatenate([[0], uniq]), np.concatenate([[0], counts])
    if lo is not None:
        lut = np.zeros(uniq[-1] - lo + 1, np.int64)
        inside = uniq >= lo
        lut[uniq[inside] - lo] = np.flatnonzero(inside)
        return lut[keys - lo if lo else keys], uniq, counts
    return np.searchsorted(uniq, keys), uniq, counts


def _segments(semantic: np.ndarray, instances: np.ndarray, is_thing: np.ndarray, void: np.ndarray,
              span: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Segment label per pixel (0 = void) and, per label, class, instance id and area.

    A segment is a stuff class (instance ignored) or a (thing class, instance id) pair; ``span`` exceeds every id.
    """
    cls = np.where(void, 0, semantic)
    inst = np.where(is_thing[cls], instances, 0)
    keys = np.where(void, 0, cls * span + inst + 1)
    labels, uniq, areas = dense_labels(keys)
    return labels, (uniq - 1) // span, (uniq - 1) % span, areas


def panoptic_counts(pred_semantic: np.ndarray, pred_instances: np.ndarray, target_semantic: np.ndarray,
                    target_instances: np.ndarray, is_thing: np.ndarray,
                    ignore_index: int = 255) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class matched IoU sum, TP, FP and FN ``(K,)`` for one image or volume (all inputs the same shape)."""
    num_classes = len(is_thing)
    pred_sem, pred_inst, tgt_sem, tgt_inst = (np.asarray(a).astype(np.int64, copy=False).ravel() for a in
                                              (pred_semantic, pred_instances, target_semantic, target_instances))
    for name, sem in (("prediction", pred_sem), ("target", tgt_sem)):
        bad = (sem != ignore_index) & ((sem < 0) | (sem >= num_classes))
        if bad.any():
            raise DataError(f"{name} classes {sorted(np.unique(sem[bad]).tolist())[:10]} are out of range; "
                            f"accepted: 0..{num_classes - 1} and ignore index {ignore_index}")
    lowest = min(pred_inst.min(initial=0), tgt_inst.min(initial=0))
    highest = max(pred_inst.max(initial=0), tgt_inst.max(initial=0))
    if lowest < 0 or highest > np.iinfo(np.int32).max:
        raise DataError(f"instance ids {lowest}..{highest} are out of range; accepted: 0 (no instance)..2**31-1")
    span = int(highest) + 1
    pred_ignored = pred_sem == ignore_index
    pred_void = pred_ignored | (is_thing[np.where(pred_ignored, 0, pred_sem)] & (pred_inst == 0))
    pred, p_cls, _, p_area = _segments(pred_sem, pred_inst, is_thing, pred_void, span)
    gt, g_cls, g_inst, g_area = _segments(tgt_sem, tgt_inst, is_thing, tgt_sem == ignore_index, span)
    # intersections of every (target, prediction) label pair present
    pairs, inter = _unique_counts(gt * len(p_cls) + pred)
    return match_segments(p_cls, p_area, g_cls, g_inst, g_area, pairs // len(p_cls), pairs % len(p_cls), inter,
                          is_thing)


def match_segments(p_cls: np.ndarray, p_area: np.ndarray, g_cls: np.ndarray, g_inst: np.ndarray, g_area: np.ndarray,
                   gi: np.ndarray, pi: np.ndarray, inter: np.ndarray,
                   is_thing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class matched IoU sum, TP, FP and FN ``(K,)`` from a segment table: prediction and target segments
    (label 0 = void in both) with their class, (target) instance id and area, and the intersection ``inter`` of
    every overlapping (target label ``gi``, prediction label ``pi``) pair, void pairs included."""
    num_classes = len(is_thing)
    g_crowd = is_thing[g_cls] & (g_inst == 0)
    g_crowd[0] = False
    pred_on_void = np.zeros(len(p_cls), np.int64)
    pred_on_void[pi[gi == 0]] = inter[gi == 0]
    same = (gi > 0) & (pi > 0) & (g_cls[gi] == p_cls[pi])
    union = p_area[pi] + g_area[gi] - inter - pred_on_void[pi]
    iou = inter / np.maximum(union, 1)
    match = same & ~g_crowd[gi] & (iou > 0.5)
    tp = np.bincount(g_cls[gi[match]], minlength=num_classes)
    iou_sum = np.bincount(g_cls[gi[match]], weights=iou[match], minlength=num_classes)
    g_matched = np.zeros(len(g_cls), bool)
    g_matched[gi[match]] = True
    p_matched = np.zeros(len(p_cls), bool)
    p_matched[pi[match]] = True
    missed = ~g_matched & ~g_crowd
    missed[0] = False  # label 0 is void
    fn = np.bincount(g_cls[missed], minlength=num_classes)
    on_crowd = same & g_crowd[gi]
    ignored = pred_on_void.astype(np.float64)
    np.add.at(ignored, pi[on_crowd], inter[on_crowd])
    false_pos = ~p_matched & (ignored <= 0.5 * p_area)
    false_pos[0] = False
    fp = np.bincount(p_cls[false_pos], minlength=num_classes)
    return iou_sum, tp, fp, fn


def __getattr__(name: str):
    """``PanopticMetrics`` lives in :mod:`segsuite.core.instances.quality` (it imports torchmetrics)."""
    if name == "PanopticMetrics":
        from segsuite.core.instances.quality import PanopticMetrics

        return PanopticMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
