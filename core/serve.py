"""The demo page: pick a trained model and a task, upload an input (or pick a built-in example), press Submit, see
the coloured result with its legend and the domain's numbers, and download the output files in their real formats.

``segsuite serve --models outputs/ --host 127.0.0.1 --port 7860``

Built with Gradio, as the lecture's OneFormer demo: it has the pieces this page needs (file upload, images, a slice
slider, tables, file downloads, a progress bar), runs our Python functions directly in one process, and its frontend
ships inside the wheel and is served by the same local server. Streamlit
would rerun the whole script on every click; a hand-written FastAPI page would mean writing those widgets. Nothing
leaves the machine: analytics, sharing and telemetry are off and the theme uses system fonts (no web fonts).

A prediction is one :meth:`segsuite.core.api.Segmenter.predict_file_with_preview` run into a temporary folder: the
domain's writer writes the files offered for download, and the same run's predictions come back as a
:class:`~segsuite.core.api.Result` for the page (every n-th row and column of a raster too large for the page).
Built-in examples come from an optional reader method ``examples(folder, job) -> [Path]`` (small inputs made by
the domain's synthetic generator into ``folder`` on first use).
"""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from segsuite.core.api import Result, Segmenter
from segsuite.core.checkpoint import describe
from segsuite.core.cli import find_user_error
from segsuite.core.contracts import Mode
from segsuite.core.errors import UserError
from segsuite.core.io import work_folder
from segsuite.core.preview import input_preview

log = logging.getLogger(__name__)

WORK_PREFIX = "segsuite-serve-"  # the page's work folders in TMPDIR: segsuite-serve-<pid>-<random>
PREVIEW_PIXELS = 1536 * 1536  # larger rasters are shown every n-th row and column
TASKS = [m.value for m in Mode]
CSS = "#input-image img, #result-image img {width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated}"
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]


# ----------------------------------------------------------------------------------------------------------------
# Models and examples
# ----------------------------------------------------------------------------------------------------------------


def find_checkpoints(models: Path) -> dict[str, Path]:
    """Every readable checkpoint under ``models`` (recursively), labelled ``domain: relative/path.ckpt``."""
    found = {}
    for path in sorted(models.rglob("*.ckpt")):
        try:
            domain = describe(path).get("domain") or "unknown domain"
        except UserError as err:
            log.warning("skipping %s: %s", path, err)
            continue
        found[f"{domain}: {path.relative_to(models)}"] = path
    return found


@dataclass
class Models:
    """The checkpoints offered on the page, loaded on first use."""

    paths: dict[str, Path]
    cache: Path
    loaded: dict[Path, Segmenter] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, label: str | None) -> Segmenter:
        if not label or label not in self.paths:
            raise UserError("choose a model first")
        path = self.paths[label]
        with self.lock:
            if path not in self.loaded:
                self.loaded[path] = Segmenter.from_checkpoint(path)
            return self.loaded[path]

    def examples(self, label: str | None) -> list[Path]:
        """The built-in examples of the model's domain (its reader's ``examples``)."""
        try:
            seg = self.get(label)
        except UserError:
            return []
        folder = self.cache / seg.domain
        folder.mkdir(parents=True, exist_ok=True)
        return list(seg.reader.examples(folder, seg.job()))


# ----------------------------------------------------------------------------------------------------------------
# What the page shows
# ----------------------------------------------------------------------------------------------------------------


def legend_html(result: Result) -> str:
    """The classes present in the result, each with its colour swatch."""
    items = "".join(
        f'<span style="display:inline-block;margin:2px 10px 2px 0"><span style="display:inline-block;width:14px;'
        f'height:14px;vertical-align:middle;border:1px solid #888;background:rgb{color}"></span> {name}</span>'
        for name, color in result.legend(present_only=True))
    return f'<div id="legend">{items}</div>'


def csv_markdown(path: Path, max_rows: int = 25) -> str:
    """A CSV report as a Markdown table (its first ``max_rows`` rows)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows:
        return ""
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(_short(v) for v in row) + " |" for row in rows[1 : max_rows + 1]]
    more = f"\n\n({len(rows) - 1 - max_rows} more rows in the file)" if len(rows) - 1 > max_rows else ""
    return f"**{path.name}**\n\n" + "\n".join(lines) + more


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return value if number.is_integer() else f"{number:.4g}"


@dataclass
class Shown:
    """A finished prediction as the page holds it (volumes: one slice at a time)."""

    result_rgb: np.ndarray
    input_rgb: np.ndarray | None

    @property
    def depth(self) -> int:
        return self.result_rgb.shape[0] if self.result_rgb.ndim == 4 else 0

    def slice(self, index: int) -> tuple[np.ndarray | None, np.ndarray]:
        if not self.depth:
            return self.input_rgb, self.result_rgb
        index = int(np.clip(index, 0, self.depth - 1))
        return None if self.input_rgb is None else self.input_rgb[index], self.result_rgb[index]


# ----------------------------------------------------------------------------------------------------------------
# One prediction
# ----------------------------------------------------------------------------------------------------------------


def run_prediction(models: Models, label: str, task: str, input: Path | list[Path], workdir: Path,
                   progress: Any = None) -> tuple[Result, list[Path], Shown]:
    """Predict ``input`` (a file, a folder, or the files of one case) with the model ``label`` into ``workdir``;
    the result, the files written, and what to show (volumes sliced along the checkpoint's ``axis``)."""
    seg = models.get(label)
    out = Path(tempfile.mkdtemp(prefix="prediction-", dir=workdir))
    def rows_done(fraction: float) -> None:
        if progress is not None:
            progress(fraction, desc=f"predicting with {label}")

    rows_done(0.0)
    result, files = seg.predict_file_with_preview(input, out, task, max_pixels=PREVIEW_PIXELS, progress=rows_done)
    preview = getattr(seg.reader, "preview", input_preview)  # the domain previews its own inputs
    shown_input = preview(first_file(input), result.classes.shape)
    shown = Shown(result.colorize(), shown_input)
    if result.classes.ndim == 3:
        axis = int(seg.meta.get("axis", 0))
        shown = Shown(np.moveaxis(shown.result_rgb, axis, 0),
                      None if shown_input is None else np.moveaxis(shown_input, axis, 0))
    return result, files, shown


def first_file(input: Path | list[Path]) -> Path:
    """The file whose picture stands for ``input`` (the first of several, the first volume or image in a folder)."""
    if isinstance(input, list):
        return input[0]
    if input.is_dir():
        return next((p for p in sorted(input.rglob("*")) if p.is_file() and not p.name.startswith(".")), input)
    return input


def status_line(result: Result, input: Path | list[Path], files: list[Path]) -> str:
    name = ", ".join(p.name for p in input) if isinstance(input, list) else input.name
    parts = [f"done: {name}, {len(files)} file(s) to download"]
    if result.stride > 1:
        parts.append(f"the page shows every {result.stride}th row and column; the files hold the full prediction")
    if result.instances is not None:
        parts.append(f"{len(result.instance_table)} instance(s)")
    return "; ".join(parts)


def error_line(err: BaseException) -> str | None:
    """The CLI's one-line message for a user's mistake, or None for anything else."""
    user_error = find_user_error(err)
    return None if user_error is None else f"error: {user_error}"


# ----------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------


def _gradio():
    """Gradio, imported with its analytics and the Hugging Face hub's telemetry off (nothing leaves the machine)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gradio

    return gradio


def build_app(models_dir: Path, cache: Path, workdir: Path | None = None):
    """The Gradio page over the checkpoints under ``models_dir`` (examples cached in ``cache``)."""
    gr = _gradio()

    models = Models(find_checkpoints(models_dir), cache)
    if not models.paths:
        raise UserError(f"no readable checkpoints (*.ckpt) under --models {models_dir}; train one with "
                        "scripts/train.py or give the folder that holds yours")
    workdir = workdir or work_folder(WORK_PREFIX)
    workdir.mkdir(parents=True, exist_ok=True)
    with gr.Blocks(title="segsuite demo", analytics_enabled=False) as app:
        gr.Markdown("# segsuite: segment an image, a scene or a volume\nChoose a model and a task, upload an input "
                    "(PNG/JPG photo, GeoTIFF, NIfTI volume, .npy array) or pick an example, and press Submit.")
        with gr.Row():
            with gr.Column(scale=1):
                model, task, upload, example, submit, status = _controls(gr, list(models.paths))
            with gr.Column(scale=2):
                shown_input, shown_result, legend, slider, classes, instances, reports, downloads = _results(gr)
        state = gr.State()

        def examples_of(label: str | None):
            paths = models.examples(label)
            return gr.update(choices=[(p.name, str(p)) for p in paths], value=str(paths[0]) if paths else None)

        def on_submit(label, task_name, uploaded, example_path, progress=gr.Progress()):
            return respond(gr, models, workdir, label, task_name, chosen_input(uploaded, example_path), progress)

        def on_slice(shown: Shown | None, index: float):
            return (gr.update(), gr.update()) if shown is None else shown.slice(int(index))

        outputs = [shown_input, shown_result, legend, slider, classes, instances, reports, downloads, status, state]
        model.change(examples_of, model, example)
        app.load(examples_of, model, example)
        submit.click(on_submit, [model, task, upload, example], outputs, concurrency_limit=1)
        slider.change(on_slice, [state, slider], [shown_input, shown_result])
    return app


def _controls(gr, labels: list[str]) -> tuple:
    """Model, task, upload, example, Submit and the status box."""
    model = gr.Dropdown(labels, value=labels[0] if labels else None, label="model (domain: checkpoint)",
                        elem_id="model")
    task = gr.Radio(TASKS, value="semantic", label="task", elem_id="task")
    upload = gr.File(label="upload an input (a volume's channel files together)", file_count="multiple",
                     elem_id="upload")
    example = gr.Dropdown([], label="or pick a built-in example (used when nothing is uploaded)", elem_id="example")
    submit = gr.Button("Submit", variant="primary", elem_id="submit")
    status = gr.Textbox(label="status", interactive=False, elem_id="status")
    return model, task, upload, example, submit, status


def _results(gr) -> tuple:
    """Input and result images, legend, slice slider, tables, the domain's reports and the downloads."""
    with gr.Row():
        shown_input = gr.Image(label="input", format="png", interactive=False, height=360, elem_id="input-image")
        shown_result = gr.Image(label="result", format="png", interactive=False, height=360, elem_id="result-image")
    legend = gr.HTML(elem_id="legend-box")
    slider = gr.Slider(0, 1, step=1, value=0, label="slice", visible=False, elem_id="slice")
    classes = gr.Dataframe(label="classes (pixels of the page's prediction)", elem_id="class-table")
    instances = gr.Dataframe(label="instances", visible=False, elem_id="instance-table")
    reports = gr.Markdown(elem_id="reports")
    downloads = gr.File(label="download the outputs", file_count="multiple", elem_id="downloads")
    return shown_input, shown_result, legend, slider, classes, instances, reports, downloads


def respond(gr, models: Models, workdir: Path, label: str, task: str, input: Path | list[Path] | None,
            progress: Any) -> tuple:
    """Everything the page shows after Submit: the prediction's pictures, tables and files, or one error line."""
    if input is None:
        return _failed(gr, "error: upload an input or pick an example")
    try:
        result, files, shown = run_prediction(models, label, task, input, workdir, progress)
    except Exception as err:
        message = error_line(err)
        if message is None:
            raise
        return _failed(gr, message)
    reports = "\n\n".join(csv_markdown(f) for f in files if f.suffix == ".csv")
    image_in, image_out = shown.slice(shown.depth // 2)
    slider = gr.update(visible=bool(shown.depth), maximum=max(shown.depth - 1, 1), value=shown.depth // 2)
    return (image_in, image_out, legend_html(result), slider, table(result.class_table()),
            instances_update(gr, result), reports, [str(f) for f in files], status_line(result, input, files), shown)


def chosen_input(uploaded: list[str] | None, example: str | None) -> Path | list[Path] | None:
    """The uploaded file (several: the files of one case), else the example, else None."""
    if uploaded:
        files = [Path(f) for f in (uploaded if isinstance(uploaded, list) else [uploaded])]
        return files[0] if len(files) == 1 else files
    return Path(example) if example else None


def table(rows: list[dict[str, Any]]):
    """Rows of dicts as a table the page shows (fractions to 4 significant digits)."""
    import pandas

    return pandas.DataFrame([{k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}
                             for row in rows])


def instances_update(gr, result: Result):
    shown = result.instances is not None
    return gr.update(visible=shown, value=table(result.instance_table) if shown else None)


def _failed(gr, message: str) -> tuple:
    return (None, None, "", gr.update(visible=False), None, gr.update(visible=False, value=None), "", None, message,
            None)


def launch(app, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Serve ``app`` locally: no sharing link, no server-side rendering, system fonts only."""
    gr = _gradio()
    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"])
    app.queue(default_concurrency_limit=1)
    try:
        return app.launch(server_name=host, server_port=port, share=False, ssr_mode=False, pwa=False,
                          mcp_server=False, enable_monitoring=False, prevent_thread_lock=not block, theme=theme,
                          css=CSS, quiet=True, footer_links=[])
    except OSError:  # Gradio's "Cannot find empty port in range", or an address that cannot be bound
        raise UserError(f"cannot listen on {host}:{port}: the port is in use or the address is not this machine's; "
                        "choose another with --port or --host") from None


def serve(models_dir: str | os.PathLike = "outputs", host: str = "127.0.0.1", port: int = 7860,
          cache: str | os.PathLike | None = None) -> None:
    """Build the page over ``models_dir`` and serve it until interrupted; its work folder goes with it."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise UserError(f"--models {models_dir} is not a folder; give the folder holding your checkpoints (*.ckpt)")
    cache = Path(cache) if cache else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "segsuite"
    workdir = work_folder(WORK_PREFIX)  # also removes those of servers that are gone
    try:
        app = build_app(models_dir, cache / "examples", workdir)
        print(f"segsuite demo on http://{host}:{port} (models from {models_dir})", flush=True)
        launch(app, host, port)
    finally:  # Ctrl-C and failed starts too
        shutil.rmtree(workdir, ignore_errors=True)
