"""Loggers: a CSV log that survives a resume, and MLflow with a local store by default."""

from __future__ import annotations

import csv
import os
import tempfile

from lightning.pytorch.loggers import CSVLogger as _LightningCSVLogger
from lightning.pytorch.loggers import MLFlowLogger as _LightningMLFlowLogger

from segsuite.core.errors import ConfigError


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


def _local_path(uri: str) -> str | None:
    """The folder of a local tracking store (``file:PATH`` or a plain path); None for a server or database URI."""
    if uri.startswith("file:"):
        return uri[len("file:"):].removeprefix("//")
    return None if "://" in uri or uri.startswith(("sqlite:", "databricks")) else uri


class MLFlowLogger(_LightningMLFlowLogger):
    """Lightning's ``MLFlowLogger`` (needs the ``mlflow-skinny`` package) with a local folder as the default store.

    ``tracking_uri`` is a folder (or ``file:FOLDER``), made absolute and normalised, or a server's URI
    (``http://host:5000``, ``databricks``...). MLflow 3 only writes a file store with ``MLFLOW_ALLOW_FILE_STORE``
    set, which is done here for local folders (unless already set).
    """

    def __init__(self, experiment_name: str = "segsuite", tracking_uri: str = "mlruns", **kwargs) -> None:
        folder = _local_path(str(tracking_uri))
        if folder is not None:
            folder = os.path.normpath(os.path.abspath(folder))
            _check_writable(folder)
            tracking_uri = "file:" + folder
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().__init__(experiment_name=experiment_name, tracking_uri=tracking_uri, **kwargs)


def _check_writable(folder: str) -> None:
    """Create the tracking folder and a file in it now, so that a read-only one is one line, not MLflow's traceback
    at the first metric."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise ConfigError(f"logger=mlflow cannot write its tracking folder {folder} ({err.strerror or err}); give a "
                          "writable one: logger.mlflow.tracking_uri=PATH") from None
