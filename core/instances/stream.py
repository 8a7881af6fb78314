"""Instances over a raster too large for memory: row strips arrive top to bottom (as ``sliding_window`` yields
them), or the rectangles of column bands, left to right and each band top to bottom (``sliding_blocks``); each is
labelled on its own with provisional ids, and a union-find joins the pieces of an object that crosses from one strip
into the next, or from one band into the next (the last column of a band is kept, one value per row). ``finish``
resolves every provisional id to a final instance, drops small ones and returns per-instance statistics; a writer
then remaps what it wrote (e.g. a second pass over a raster) and merges vector pieces by final id.

With a border map the strip is cut by the same marker watershed as whole images (``extract.split_touching``), with
the last ``halo`` rows of the previous strip on top as fixed seeds, so border pixels at a seam join the object
above; the distance transform sees only strip + halo, so splits within ``halo`` rows of a seam can differ slightly
from labelling the whole raster at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from segsuite.core.instances.extract import Instancer, _structure, split_touching
from segsuite.core.instances.metrics import dense_labels, match_segments


@dataclass
class StreamInstances:
    """The resolution of a stream's provisional ids.

    Shape:
        lut: uint32 ``(P + 1,)``, provisional id -> final id (0: background or dropped as too small).
        classes: int64 ``(n + 1,)``, final id -> class index (``classes[0] = -1``).
        pixels: int64 ``(n + 1,)``; centroid: float64 ``(n + 1, 2)`` (row, col of pixel centres);
        bbox: int64 ``(n + 1, 4)`` as ``row0, col0, row1, col1`` (end exclusive), all in raster pixel coordinates.
    """

    lut: np.ndarray
    classes: np.ndarray
    pixels: np.ndarray
    centroid: np.ndarray
    bbox: np.ndarray

    @property
    def n(self) -> int:
        return len(self.classes) - 1


class _Growable:
    """A 1D/2D numpy array that grows along its first axis."""

    def __init__(self, fill: float, dtype: type, width: int | None = None) -> None:
        self.fill, self.dtype, self.width = fill, dtype, width
        self.data = np.full((1024,) if width is None else (1024, width), fill, dtype)

    def reserve(self, n: int) -> np.ndarray:
        if n > len(self.data):
            bigger = np.full((max(n, 2 * len(self.data)),) + self.data.shape[1:], self.fill, self.dtype)
            bigger[: len(self.data)] = self.data
            self.data = bigger
        return self.data


class StripLabeller:
    """Labels thing-class instances strip by strip; see the module docstring.

    Args:
        instancer: thing classes, min size, border use and connectivity (2D only here).
        width: the raster's width (a strip is full width, or one column band of it).
        halo: rows of the previous strip kept as seeds for the border watershed.

    Memory besides the strip: ``halo`` rows of it and, with column bands, 3 values per raster row (a band's edge).
    """

    def __init__(self, instancer: Instancer, width: int, halo: int = 16) -> None:
        self.instancer, self.width, self.halo = instancer, int(width), int(halo)
        self.structure = _structure(2, instancer.connectivity)
        self.next_id = 1  # provisional ids handed out so far: 1..next_id-1
        self.parent = _Growable(0, np.int64)
        self.cls = _Growable(-1, np.int64)
        self.pixels = _Growable(0, np.int64)
        self.sums = _Growable(0.0, np.float64, 2)
        self.bbox = _Growable(-1, np.int64, 4)
        self.prev: dict[str, np.ndarray] | None = None  # halo rows: labels, semantic, core
        self.rows_seen = 0  # rows of the current band
        self.band = (0, self.width)  # the current band's first column and width
        self.edge: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # its last column: row0, ids, sem, core
        self.left: dict[str, np.ndarray] | None = None  # the previous band's last column, every row

    # --- union-find over provisional ids -------------------------------------------------------------------------
    def _find(self, a: int) -> int:
        parent = self.parent.data
        root = a
        while parent[root] != root:
            root = parent[root]
        while parent[a] != root:
            parent[a], a = root, parent[a]
        return root

    def _union(self, a: int, b: int) -> None:
        ra, rb = self._find(a), self._find(b)
        if ra != rb:
            self.parent.data[max(ra, rb)] = min(ra, rb)

    def _new_ids(self, labels: np.ndarray, count: int, cls: int) -> np.ndarray:
        """Give a strip's local labels 1..count fresh provisional ids (0 stays 0)."""
        first = self.next_id
        self.next_id += count
        parent = self.parent.reserve(self.next_id)
        parent[first : self.next_id] = np.arange(first, self.next_id)
        self.cls.reserve(self.next_id)[first : self.next_id] = cls
        return np.where(labels > 0, labels + (first - 1), 0).astype(np.int64)

    # --- one strip ---------------------------------------------------------------------------------------------------
    def push(self, semantic: np.ndarray, border_prob: np.ndarray | None = None, col0: int = 0) -> np.ndarray:
        """Label the next strip ``semantic`` ``(n, w)`` (class indices; anything else, e.g. nodata, is background)
        with optional ``border_prob`` ``(n, w)``, at column ``col0`` (full width: 0 and ``w`` the raster's width).
        A new ``col0`` starts the next column band, at the row 0. Returns its provisional ids ``(n, w)`` uint32."""
        n, w = semantic.shape
        if (col0, w) != self.band or self.rows_seen == 0:
            self._start_band(col0, w)
        self.instancer.uses_border(border_prob is not None)
        border = self.instancer.border_mask(border_prob)
        ids = np.zeros((n, w), np.int64)
        core_all = np.zeros((n, w), bool)
        for c in self.instancer.thing_ids:
            fg = semantic == c
            core = fg if border is None else fg & ~border
            markers, count = ndimage.label(core, self.structure)
            markers = self._new_ids(markers, count, c)
            self._join_seam(markers, core, c)
            self._join_left(markers, core, c)
            labels = markers if border is None else self._grow(fg, core, markers, c)
            ids[labels > 0] = labels[labels > 0]
            core_all |= core
        self._accumulate(ids)
        keep = min(self.halo, n)
        self.prev = {"labels": ids[-keep:], "semantic": semantic[-keep:], "core": core_all[-keep:]}
        if col0 + w < self.width:  # a band with another to its right: keep its last column
            self.edge.append((self.rows_seen, ids[:, -1].copy(), semantic[:, -1].copy(), core_all[:, -1].copy()))
        self.rows_seen += n
        return ids.astype(np.uint32)

    def _start_band(self, col0: int, w: int) -> None:
        """The first strip of the band of columns ``[col0, col0 + w)``: the last band's edge becomes its left."""
        last = self.band[0] + self.band[1]
        if col0 + w > self.width or (self.next_id > 1 or self.rows_seen) and col0 not in (0, last):
            raise ValueError(f"strip at column {col0}, width {w}: bands must come left to right within the raster "
                             f"width {self.width}")
        self.left = None
        if self.edge and col0 == last:
            self.left = {k: np.concatenate([e[i] for e in self.edge]) for i, k in enumerate(("labels", "semantic",
                                                                                             "core"), 1)}
        self.band, self.edge, self.prev, self.rows_seen = (col0, w), [], None, 0

    def _join_left(self, markers: np.ndarray, core: np.ndarray, cls: int) -> None:
        """Union the strip's first-column markers with the previous band's last-column pieces of the same class that
        touch them (straight across, and diagonally with connectivity 2)."""
        if self.left is None:
            return
        r0, n = self.rows_seen, len(markers)
        left = self.left
        side = np.where((left["semantic"] == cls) & left["core"], left["labels"], 0)
        here = np.where(core[:, 0], markers[:, 0], 0)
        shifts = (0,) if self.instancer.connectivity == 1 else (-1, 0, 1)
        pairs = set()
        for s in shifts:
            lo, hi = max(0, -(r0 + s)), min(n, len(side) - (r0 + s))  # rows i with 0 <= r0 + i + s < len(side)
            if hi <= lo:
                continue
            a, b = side[r0 + s + lo : r0 + s + hi], here[lo:hi]
            both = (a > 0) & (b > 0)
            pairs.update(zip(a[both].tolist(), b[both].tolist()))
        for a, b in pairs:
            self._union(a, b)

    def _join_seam(self, markers: np.ndarray, core: np.ndarray, cls: int) -> None:
        """Union the strip's first-row markers with the previous strip's last-row pieces of the same class that touch
        them (straight down, and diagonally with connectivity 2)."""
        if self.prev is None:
            return
        above = np.where((self.prev["semantic"][-1] == cls) & self.prev["core"][-1], self.prev["labels"][-1], 0)
        below = np.where(core[0], markers[0], 0)
        shifts = (0,) if self.instancer.connectivity == 1 else (-1, 0, 1)
        pairs = set()
        for s in shifts:
            a = above[max(s, 0) : len(below) + min(s, 0)]
            b = below[max(-s, 0) : len(below) + min(-s, 0)]
            both = (a > 0) & (b > 0)
            pairs.update(zip(a[both].tolist(), b[both].tolist()))
        for a, b in pairs:
            self._union(a, b)

    def _grow(self, fg: np.ndarray, core: np.ndarray, markers: np.ndarray, cls: int) -> np.ndarray:
        """Watershed of the strip with the previous strip's halo rows on top as fixed seeds."""
        if self.prev is None:
            return split_touching(fg, ~core, self.structure, markers)
        halo_fg = self.prev["semantic"] == cls
        halo_seeds = np.where(halo_fg, self.prev["labels"], 0)
        grown = split_touching(np.vstack([halo_fg, fg]), np.vstack([~halo_fg, ~core]), self.structure,
                               np.vstack([halo_seeds, markers]))
        return grown[len(halo_fg):].astype(np.int64)

    def _accumulate(self, ids: np.ndarray) -> None:
        """Pixel counts, coordinate sums and boxes of the strip's provisional ids."""
        local, present, _ = dense_labels(ids)
        present = present[1:]  # local label 0 is background
        if not len(present):
            return
        rows, cols = np.indices(ids.shape)
        count = np.bincount(local.ravel(), minlength=len(present) + 1)[1:]
        sum_r = np.bincount(local.ravel(), (rows + self.rows_seen).ravel(), len(present) + 1)[1:]
        sum_c = np.bincount(local.ravel(), (cols + self.band[0]).ravel(), len(present) + 1)[1:]
        boxes = np.array([[s[0].start, s[1].start, s[0].stop, s[1].stop] for s in ndimage.find_objects(local)])
        boxes[:, [0, 2]] += self.rows_seen
        boxes[:, [1, 3]] += self.band[0]
        pixels, sums = self.pixels.reserve(self.next_id), self.sums.reserve(self.next_id)
        bbox = self.bbox.reserve(self.next_id)
        pixels[present] += count
        sums[present] += np.stack([sum_r, sum_c], 1)
        old = bbox[present]
        fresh = old[:, 0] < 0
        old[fresh] = boxes[fresh]
        bbox[present] = np.concatenate([np.minimum(old[:, :2], boxes[:, :2]), np.maximum(old[:, 2:], boxes[:, 2:])], 1)

    # --- the end -----------------------------------------------------------------------------------------------------
    def finish(self) -> StreamInstances:
        """Resolve the provisional ids: merge joined pieces, drop instances below ``min_size``, number the rest
        1..n in order of first appearance (top to bottom)."""
        total = self.next_id
        parent = self.parent.reserve(total)[:total].copy()
        parent[0] = 0
        while True:  # pointer jumping to the roots
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
        pixels = np.bincount(parent, self.pixels.reserve(total)[:total], total)
        sums = np.stack([np.bincount(parent, self.sums.data[:total, k], total) for k in range(2)], 1)
        box = self.bbox.data[:total]
        valid = box[:, 0] >= 0
        lo = np.full((total, 2), np.iinfo(np.int64).max)
        hi = np.full((total, 2), -1)
        np.minimum.at(lo, parent[valid], box[valid, :2])
        np.maximum.at(hi, parent[valid], box[valid, 2:])
        roots = np.flatnonzero((np.arange(total) == parent) & (pixels >= max(self.instancer.min_size, 1)))
        roots = roots[roots > 0]
        final = np.zeros(total, np.uint32)
        final[roots] = np.arange(1, len(roots) + 1, dtype=np.uint32)
        lut = final[parent]
        lut[0] = 0
        keep = np.concatenate([[0], roots])
        centroid = np.zeros((len(keep), 2))
        centroid[1:] = sums[roots] / pixels[roots, None]
        bbox = np.concatenate([lo[keep], hi[keep]], 1)
        bbox[0] = 0
        classes = self.cls.data[keep].copy()
        classes[0] = -1
        return StreamInstances(lut=lut, classes=classes, pixels=pixels[keep].astype(np.int64), centroid=centroid,
                               bbox=bbox)


KEY_SPAN = 1 << 32  # segment key = class * KEY_SPAN + id + 1 (0: void); ids are below 2**32


def _keys(semantic: np.ndarray, ids: np.ndarray, is_thing: np.ndarray, ignore_index: int) -> np.ndarray:
    """Segment key per pixel: 0 for void (ignore index, or a thing pixel without an instance), a stuff class's key,
    or a (thing class, id) key."""
    num_classes = len(is_thing)
    valid = (semantic >= 0) & (semantic < num_classes) & (semantic != ignore_index)
    cls = np.where(valid, semantic, 0).astype(np.int64)
    thing = is_thing[cls] & valid
    inst = np.where(thing, ids, 0).astype(np.int64)
    keys = cls * KEY_SPAN + inst + 1
    return np.where(valid & ~(thing & (inst == 0)), keys, 0)


def _pair_counts(a: np.ndarray, b: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Distinct ``(a, b)`` pairs of two non-negative int64 key arrays and their counts (or summed ``weights``)."""
    ia, ua, _ = dense_labels(a)
    ib, ub, _ = dense_labels(b)
    pair = ia.ravel() * len(ub) + ib.ravel()
    counts = np.bincount(pair, weights, minlength=len(ua) * len(ub))
    present = np.flatnonzero(counts)
    return ua[present // len(ub)], ub[present % len(ub)], counts[present]


class StripPanoptic:
    """Panoptic quality over row strips in bounded memory: the intersections of every (predicted, target) segment
    pair are accumulated strip by strip, the predicted instances carrying a ``StripLabeller``'s provisional ids;
    ``finish`` resolves them and adds the counts to a ``PanopticMetrics``. Target instance ids must be unique over
    the whole raster (as in an instance raster)."""

    def __init__(self, is_thing: np.ndarray, ignore_index: int = 255) -> None:
        self.is_thing, self.ignore_index = np.asarray(is_thing, bool), int(ignore_index)
        self._pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def push(self, pred_semantic: np.ndarray, provisional: np.ndarray, target_semantic: np.ndarray,
             target_instances: np.ndarray) -> None:
        """One strip ``(n, W)`` of predicted classes and provisional ids, target classes and instance ids."""
        pred = _keys(pred_semantic, provisional, self.is_thing, self.ignore_index)
        gt = _keys(target_semantic, target_instances, self.is_thing, self.ignore_index)
        gt = np.where((gt == 0) & (target_semantic != self.ignore_index) & (target_semantic >= 0)
                      & (target_semantic < len(self.is_thing)), target_semantic.astype(np.int64) * KEY_SPAN + 1, gt)
        self._pairs.append(_pair_counts(pred, gt))
        if len(self._pairs) > 64:  # keep the table small
            self._pairs = [_pair_counts(*(np.concatenate(c) for c in zip(*self._pairs[:2])))] + self._pairs[2:]

    def _resolve(self, keys: np.ndarray, lut: np.ndarray, dropped: int) -> np.ndarray:
        """Thing keys with provisional ids -> final ids (``lut``); an id resolved to 0 becomes ``dropped``'s key kind:
        void (0) for predictions."""
        cls, inst = (keys - 1) // KEY_SPAN, (keys - 1) % KEY_SPAN
        thing = (keys > 0) & self.is_thing[np.clip(cls, 0, None)] & (inst > 0)
        final = np.where(thing, lut[np.where(thing, inst, 0)], 0).astype(np.int64)
        return np.where(thing, np.where(final > 0, cls * KEY_SPAN + final + 1, dropped), keys)

    def finish(self, resolved: StreamInstances,
               target: StreamInstances | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-class ``(iou_sum, tp, fp, fn)`` once the provisional ids are resolved (dropped predictions become
        void). ``target``: the resolution of the target ids when they too came from a ``StripLabeller``."""
        if not self._pairs:
            zeros = np.zeros(len(self.is_thing))
            return zeros, zeros.astype(np.int64), zeros.astype(np.int64), zeros.astype(np.int64)
        pred, gt, inter = (np.concatenate(c) for c in zip(*self._pairs))
        pred = self._resolve(pred, resolved.lut, dropped=0)
        if target is not None:
            gt = self._resolve(gt, target.lut, dropped=0)
        pred, gt, inter = _pair_counts(pred, gt, inter)
        p_keys, pi = np.unique(np.concatenate([[0], pred]), return_inverse=True)
        g_keys, gi = np.unique(np.concatenate([[0], gt]), return_inverse=True)
        pi, gi = pi[1:], gi[1:]
        p_area = np.bincount(pi, inter, len(p_keys))
        g_area = np.bincount(gi, inter, len(g_keys))
        p_cls, g_cls = (p_keys - 1) // KEY_SPAN, (g_keys - 1) // KEY_SPAN
        g_inst = np.where(g_keys > 0, (g_keys - 1) % KEY_SPAN, 0)
        return match_segments(p_cls, p_area, g_cls, g_inst, g_area, gi, pi, inter.astype(np.int64), self.is_thing)

    def true_counts(self) -> dict[int, int]:
        """Distinct target instances per thing class seen so far (valid for target ids that are already final)."""
        gt = np.concatenate([g for _, g, _ in self._pairs]) if self._pairs else np.zeros(0, np.int64)
        cls, inst = (gt - 1) // KEY_SPAN, (gt - 1) % KEY_SPAN
        keep = (gt > 0) & (inst > 0)
        return {int(c): len(np.unique(inst[keep & (cls == c)])) for c in np.flatnonzero(self.is_thing)}
