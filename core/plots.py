"""Pictures people would rather look at than read."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from segsuite.core.io import atomic_path  # noqa: E402


def plot_confusion(confmat: np.ndarray, class_names: Sequence[str], path: str | os.PathLike,
                   overwrite: bool = True) -> None:
    """Row-normalised confusion matrix (rows: reference, columns: prediction) with counts as PNG."""
    confmat = np.asarray(confmat, dtype=np.float64)
    rows = confmat.sum(1, keepdims=True)
    norm = np.divide(confmat, rows, out=np.zeros_like(confmat), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * k, 1.0 + 0.55 * k))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    if k <= 25:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of reference pixels")
    fig.tight_layout()
    with atomic_path(path, overwrite) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
