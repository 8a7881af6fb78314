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
    """One overlay PNG per example in ``out`` (the core's overlay with a legend of the classes shown, over the
    domain's own preview of the input); ``(title, path)`` for the page."""
    from segsuite.core.api import Segmenter, compose_predict
    from segsuite.core.overlay import write_overlay_with_legend
    from segsuite.core.preview import input_preview

    checkpoint, domain = model_of(folder, kind)
    segmenter = Segmenter(compose_predict([f"domain={domain}", f"checkpoint={checkpoint}", "device=cpu"]))
    preview = getattr(segmenter.reader, "preview", input_preview)  # the domain pictures its own inputs
    figures = []
    for k, example in enumerate(examples):
        path = Path(example)
        result = segmenter.predict(path)
        classes, image = result.classes, preview(path, result.classes.shape)
        if classes.ndim == 3:  # a volume: its middle slice
            middle = classes.shape[0] // 2
            classes, image = classes[middle], None if image is None else image[middle]
        if image is None:
            image = np.zeros((*classes.shape, 3), np.uint8)
        target = write_overlay_with_legend(image, classes, result.class_colors.tolist(), list(result.class_names),
                                           out / f"example_{k}.png", ignore_index=result.ignore_index,
                                           overwrite=True)
        figures.append((f"Example {k}: {path.name}, prediction over the input", target))
    return figures
