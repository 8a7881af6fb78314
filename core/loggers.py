"""Logging that survives a resume."""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger


class CSVLogger(_LightningCSVLogger):
    """Lightning's ``CSVLogger``, except that a run resumed into the same folder keeps its earlier rows.

    (Lightning's writer deletes an existing ``metrics.csv`` when it starts; we put the rows back.)
    """

    @property
    def experiment(self):
        if self._experiment is not None:
            return self._experiment
        path = os.path.join(self.log_dir, "metrics.csv")
        rows, keys = [], []
        if os.path.isfile(path):
            with open(path, newline="") as fh:
                reader = csv.DictReader(fh)
                rows, keys = list(reader), list(reader.fieldnames or [])
        writer = super().experiment
        if rows:
            writer.metrics_keys = keys
            with open(path, "w", newline="") as fh:
                out = csv.DictWriter(fh, fieldnames=keys)
                out.writeheader()
                out.writerows(rows)
        return writer
