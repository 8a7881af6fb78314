"""Example overlays for ``segsuite report FOLDER examples=[a.tif,...]``: the folder's model (a run's best checkpoint,
or a CV folder's folds as one ensemble) predicts each example through the one pipeline, and each prediction is drawn
over the input (the demo page's preview) with a legend of the classes it holds. 3D items show their middle slice."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from segsuite.core.errors import ConfigError


def model_of(folder: Path, kind: str) -> tuple[str, str]:
    """``(checkpoint= value, domain)`` of a run folder (its best checkpoint) or a CV folder (every fold)."""
    from segsuite.core.checkpoint import describe
    from segsuite.core.ensemble import checkpoint_paths

    if kind == "sweep":
        raise ConfigError("examples= needs a run or segsuite cv folder (a model); a sweep folder holds many")
    if kind == "cv":
        value, first = str(folder), checkpoint_paths(str(folder))[0]
    else:
        saved = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        first = Path(saved.get("best_checkpoint") or saved.get("last_checkpoint") or "")
        if not first.is_file():
            first = folder / "checkpoints" / first.name
        value = str(first)
    return value, str(describe(first).get("domain") or "")


def plot_examples(folder: Path, kind: str, examples: Sequence[str], out: Path) -> list[tuple[str, Path]]:
    """One overlay PNG per example in ``out``; ``(title, path)`` for the page."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from segsuite.core.api import Segmenter, compose_predict
    from segsuite.core.preview import input_preview

    checkpoint, domain = model_of(folder, kind)
    segmenter = Segmenter(compose_predict([f"domain={domain}", f"checkpoint={checkpoint}", "device=cpu"]))
    figures = []
    for k, example in enumerate(examples):
        path = Path(example)
        result = segmenter.predict(path)
        classes, colours = result.classes, result.colorize(outlines=False)
        image = input_preview(path, classes.shape)
        if classes.ndim == 3:  # a volume: its middle slice
            middle = classes.shape[0] // 2
            classes, colours = classes[middle], colours[middle]
            image = None if image is None else image[middle]
        shown = colours.astype(np.float32)
        if image is not None:
            drawn = (classes < len(result.class_names))[..., None]
            shown = np.where(drawn, 0.5 * image + 0.5 * shown, image.astype(np.float32))
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.imshow(shown.astype(np.uint8), interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(path.name)
        handles = [Patch(color=np.array(c) / 255, label=n) for n, c in result.legend(present_only=True)]
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
        target = out / f"example_{k}.png"
        fig.savefig(target, dpi=110, format="png")
        plt.close(fig)
        figures.append((f"Example {k}: {path.name}, prediction over the input", target))
    return figures
