"""The Cell Tracking Challenge's SEG and DET (equal to py-ctcmetrics'), and the domain's evaluation. A computed object
matches a reference object when it covers more than half of it. SEG: the mean over reference objects of the Jaccard
index with their match (0 without one). DET: ``1 - min(AOGM_D, AOGM_D0) / AOGM_D0``, ``AOGM_D = 5 NS + 10 FN + FP``
(NS: k - 1 splits for a computed object matching k references), ``AOGM_D0 = 10 x`` the reference objects."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.contracts import Item, Job, Prediction
from segsuite.core.domain import BaseEvaluation, ScoreSink
from segsuite.core.errors import DataError
from segsuite.core.evaluate import SEMANTIC_REPORTS, SemanticScores
from segsuite.core.instances import PanopticMetrics
from segsuite.core.io import write_csv, write_json
from segsuite.domains.microscopy.data import read_tiff
from segsuite.domains.microscopy.io import cut_instances

COUNTS = ("seg_sum", "references", "tp", "fn", "fp", "ns")


def ctc_counts(reference: np.ndarray, computed: np.ndarray) -> dict[str, float]:
    """SEG and DET counts of one frame: reference and computed instance maps of one shape (0 = background)."""
    ref, comp = reference.astype(np.int64).ravel(), computed.astype(np.int64).ravel()
    ref_ids, ref_area = np.unique(ref[ref > 0], return_counts=True)
    comp_ids, comp_area = np.unique(comp[comp > 0], return_counts=True)
    both = (ref > 0) & (comp > 0)
    pairs, inter = np.unique(np.stack([ref[both], comp[both]]), axis=1, return_counts=True)
    r, c = np.searchsorted(ref_ids, pairs[0]), np.searchsorted(comp_ids, pairs[1])
    match = inter > 0.5 * ref_area[r]  # at most one per reference
    iou = inter[match] / (ref_area[r[match]] + comp_area[c[match]] - inter[match])
    per_comp = np.bincount(c[match], minlength=len(comp_ids))
    tp = int(match.sum())
    return {"seg_sum": float(iou.sum()), "references": len(ref_ids), "tp": tp, "fn": len(ref_ids) - tp,
            "fp": int((per_comp == 0).sum()), "ns": int(np.maximum(per_comp - 1, 0).sum())}


def seg_measure(counts: Mapping[str, float]) -> float:
    return float(counts["seg_sum"] / max(counts["references"], 1))


def det_measure(counts: Mapping[str, float]) -> float:
    aogm, aogm0 = 5 * counts["ns"] + 10 * counts["fn"] + 1 * counts["fp"], 10 * counts["references"]
    return float(1 - min(aogm, aogm0) / aogm0) if aogm0 else float("nan")


@dataclass
class MicroscopyEvaluation(BaseEvaluation):
    """The labelled images of ``split`` (their files) and their scorer: semantic scores, SEG, DET, F1 at IoU 0.5 and
    PQ of the nuclei (``min_size``: objects cut without the border channel, ``task=semantic``, smaller are dropped)."""

    split: str = "val"
    min_size: int = 16

    def labelled(self, data: Any, job: Job) -> list[Item]:
        return [Item(f"{image.parent.name}/{image.stem}", image, target=mask) for image, mask in data.files]

    def scorers(self, job: Job) -> list[MicroscopyEvaluation]:
        self.semantic, self.rows = SemanticScores(job), []
        self.panoptic = PanopticMetrics(2, [1], ["background", "nucleus"])
        return [self]

    def report_files(self, job: Job) -> list[str]:
        return [*SEMANTIC_REPORTS, "ctc.json", "ctc_per_image.csv"]

    def sink(self, item: Item, opened: Any, out: Path, job: Job) -> ScoreSink:
        return ScoreSink(lambda prediction: self.add(item.name, prediction, job, read_tiff(item.target)[0][0]))

    def add(self, name: str, prediction: Prediction, job: Job, labels: np.ndarray) -> None:
        labels = labels[0] if len(labels) == 1 else labels  # (Z, H, W): one slice for a 2D image
        if labels.shape != prediction.classes.shape:
            raise DataError(f"the mask of {name} has shape {labels.shape}; the image {prediction.classes.shape}")
        computed = cut_instances(prediction, job, self.min_size).ids
        self.semantic.add(prediction.classes, (labels > 0).astype(np.int64))
        self.panoptic.update(prediction.classes, computed, (labels > 0).astype(np.int64), labels)
        counts = ctc_counts(labels, computed)
        self.rows.append({"image": name, "seg": seg_measure(counts), "det": det_measure(counts), **counts})

    def report(self, out: Path, job: Job) -> dict[str, Any]:
        total = {k: sum(r[k] for r in self.rows) for k in COUNTS}
        nuclei = self.panoptic.compute()
        scores = {"seg": seg_measure(total), "det": det_measure(total), "f1_50": nuclei["f1"],
                  "precision_50": nuclei["precision"], "recall_50": nuclei["recall"],
                  "pq": nuclei["per_class"][1]["pq"]}
        write_json(out / "ctc.json", {"split": self.split, **scores, "counts": total})
        write_csv(out / "ctc_per_image.csv", self.rows, columns=["image", "seg", "det", *COUNTS])
        return {**self.semantic.report(out, {"split": self.split, "checkpoint": job.model.checkpoint}), **scores}
