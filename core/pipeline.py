"""The one pipeline that runs every predict and evaluate job, for every domain.

``run_predict``: find the inputs -> plan every output -> check everything (inputs, options, outputs absent unless
``overwrite``, folders writable) -> stage -> loop over the items with one progress bar (engine -> instances ->
sinks) -> run-level outputs -> commit all or nothing (:class:`segsuite.core.io.Staging`).

``run_evaluate``: the labelled items of a split from the domain's dataset builder -> the same loop into scorers ->
reports -> commit. The domain supplies a Reader, a Writer and an Evaluation (:mod:`segsuite.core.contracts`); it never
decides when to check, stage, loop or commit.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from segsuite.core.contracts import Evaluation, Item, Job, Opened, Prediction, Reader, Sink, Writer
from segsuite.core.distributed import MANIFEST, Ranks, gather, item_done, join, leave
from segsuite.core.domain import prepared
from segsuite.core.errors import DataError
from segsuite.core.inference import InferenceOptions, sliding_blocks, sliding_window
from segsuite.core.inference.slabs import SlabRestorer, stack_chunks
from segsuite.core.instances import split_logits
from segsuite.core.io import Staging, pattern_matches, write_json
from segsuite.core.sinks import Feeding, SinkThread

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------------------
# One item through the engine
# ----------------------------------------------------------------------------------------------------------------


def predict_tasks(opened: Opened, job: Job, bar: Any = False, logits: bool = True, alone: bool = True
                  ) -> Iterator[Callable[[], Prediction | None]]:
    """Run one opened item through the engine. Yields, as the engine finishes them, tasks that make the item's
    :class:`Prediction` s -- row blocks (streaming items) or the whole item brought back onto its grid by
    ``opened.restore``, with its instances cut when the job asks for them. The argmax, restore and instances are left
    to the task so that they run on the sinks' thread while the engine computes the next batch. An item that is a
    stack of slices (``opened.stack``, :class:`~segsuite.core.inference.slabs.Stack`) is restored slab by slab as its
    slices come out, a task (returning None) per batch or so of slices; ``logits=False``: its prediction carries
    no logits (no sink reads them), so its class probabilities on the item's grid are never all held. ``alone``:
    nothing computes beside the tasks made after the engine's last batch, which then take its threads."""
    model, options = job.model, getattr(opened, "options", None) or job.options or InferenceOptions()
    k, channels, combine = model.num_classes, model.engine_channels or model.channels, model.combine or _same
    if opened.streaming and getattr(opened, "bands", False):  # its sinks take rectangles: column bands allowed
        for b in sliding_blocks(model.predictor, opened.sources, channels, options, progress=bar):
            yield partial(_block_prediction, b.logits, b.covered, b.row0, b.source, k, b.col0, combine)
        return
    blocks = sliding_window(model.predictor, opened.sources, channels, progress=bar, options=options)
    if opened.streaming:
        for index, row0, logits, covered in blocks:
            yield partial(_block_prediction, logits, covered, row0, index, k, 0, combine)
        return
    if getattr(opened, "stack", None) is not None:
        restorer = SlabRestorer(opened.stack, k, combine, logits)
        group: list[torch.Tensor] = []
        volumes = [len(s.shape) == 3 for s in opened.sources]
        for chunk in stack_chunks(blocks, [s.shape[0] for s in opened.sources], volumes):
            group.append(chunk)
            if sum(c.shape[1] for c in group) >= options.batch_size:  # about a batch: the engine is not held up
                yield partial(_add_chunks, restorer, group)
                group = []
        yield _after_engine(partial(_add_chunks, restorer, group), alone)
        yield _after_engine(partial(_stack_prediction, restorer, job), alone)
        return
    whole = combine(_assemble(blocks, [s.shape[0] for s in opened.sources]))
    yield _after_engine(partial(_item_prediction, opened, whole, job), alone)


def _same(logits: torch.Tensor) -> torch.Tensor:
    return logits


def _after_engine(task: Callable[[], Prediction | None], alone: bool) -> Callable[[], Prediction | None]:
    """A task made once the engine has run an item's last batch. When nothing computes beside it (``alone``: no item
    follows), it runs (and the sinks after it) on as many torch threads as the forward pass, not the one the sinks'
    thread has while an engine runs. Measured on 2 cores: a road frame's argmax (19 classes, 1024 x 2048) 85-90 ->
    42 ms."""
    return partial(_on_threads, torch.get_num_threads(), task) if alone else task


def _on_threads(threads: int, task: Callable[[], Prediction | None]) -> Prediction | None:
    torch.set_num_threads(threads)  # the sinks' thread's own count, from the run's last item on
    return task()


def _block_prediction(logits: torch.Tensor, covered: torch.Tensor, row0: int, index: int, k: int,
                      col0: int = 0, combine: Callable[[torch.Tensor], torch.Tensor] = lambda z: z) -> Prediction:
    logits = combine(logits)  # on the sinks' thread, as the argmax
    classes, border = split_logits(logits, k)
    return Prediction(logits, classes, border, covered.cpu().numpy(), row0, index, num_classes=k, col0=col0)


def _item_prediction(opened: Opened, logits: torch.Tensor, job: Job) -> Prediction:
    logits = opened.restore(logits)
    classes, border = split_logits(logits, job.model.num_classes)
    instances = job.instancer(classes, border) if job.instancer is not None else None
    return Prediction(logits, classes, border, num_classes=job.model.num_classes, instances=instances)


def _add_chunks(restorer: SlabRestorer, chunks: Sequence[torch.Tensor]) -> None:
    for chunk in chunks:  # on the sinks' thread
        restorer.add(chunk)


def _stack_prediction(restorer: SlabRestorer, job: Job) -> Prediction:
    logits, classes, border = restorer.result()
    instances = job.instancer(classes, border) if job.instancer is not None else None
    return Prediction(logits, classes, border, num_classes=job.model.num_classes, instances=instances)


def predict_item(opened: Opened, job: Job, bar: Any = False) -> Iterator[Prediction]:
    """:func:`predict_tasks`' predictions, made in the calling thread."""
    for task in predict_tasks(opened, job, bar):
        if (prediction := task()) is not None:
            yield prediction


def _assemble(blocks: Iterator[tuple[int, int, torch.Tensor, torch.Tensor]], heights: Sequence[int]) -> torch.Tensor:
    """Whole sources from their row blocks: ``(C, H, W)`` for one source, ``(C, N, H, W)`` stacked for several."""
    parts: dict[int, list[torch.Tensor]] = {}
    for index, _, logits, _ in blocks:
        parts.setdefault(index, []).append(logits)
    whole = [torch.cat(parts[i], 1) if len(parts[i]) > 1 else parts[i][0] for i in range(len(heights))]
    return whole[0] if len(whole) == 1 else torch.stack(whole, 1)


def _start(writer: SinkThread, opened: Opened, sinks: Sequence[Sink], job: Job, bar: Any, alone: bool = True
           ) -> Feeding:
    """Run an item through the engine into its sinks on ``writer`` (:class:`~segsuite.core.sinks.Feeding`),
    returning once the engine is done, its sinks maybe still writing. ``alone``: nothing computes beside the item's
    last tasks (no item follows it). A sink that reads no logits says so with ``needs_logits = False``."""
    feeding = Feeding(writer, sinks)
    try:
        for task in predict_tasks(opened, job, bar, any(getattr(s, "needs_logits", True) for s in sinks), alone):
            feeding.put(task)
        return feeding.done()
    except BaseException:
        feeding.abort()
        raise


def _through(kind: str, entries: Sequence[tuple[int, Item]], reader: Reader, job: Job, bar: Any,
             sinks: Callable[[int, Item, Opened], list[Sink]], ranks: Ranks | None = None) -> list[tuple[int, Any]]:
    """``entries`` ``(index, item)`` through the engine into their ``sinks``, one item's sinks still writing beside
    the next item's forward passes (on one sinks' thread: items' sinks never run at once); ``[(index, what a sink's
    close returned)]`` in order. An error stops the run and aborts the sinks of every item still open."""
    results: list[tuple[int, Any]] = []
    running: list[tuple[int, Opened, Feeding]] = []  # the item whose sinks still write, and the one computing
    writer = SinkThread()
    try:
        for n, (index, item) in enumerate(entries):
            bar.set_description(f"{kind} {item.name}")
            opened = reader.open(item, job)
            try:
                running.append((index, opened, _start(writer, opened, sinks(index, item, opened), job, bar,
                                                      alone=n == len(entries) - 1)))
            except BaseException:
                opened.close()
                raise
            if len(running) == 2:  # the previous item's sinks wrote beside this item's engine
                results += _finish(*running.pop(0), ranks)
        while running:  # the last item's
            results += _finish(*running.pop(0), ranks)
        writer.join()
    finally:
        for _, opened, feeding in running:  # an error: what still runs is stopped, its sinks aborted
            feeding.abort()
            opened.close()
        writer.stop()
    return results


def _finish(index: int, opened: Opened, feeding: Feeding, ranks: Ranks | None) -> list[tuple[int, Any]]:
    """Wait for an item's sinks; their results by the item's index."""
    try:
        done = [(index, r) for r in feeding.finish()]
    finally:
        opened.close()
    if ranks is not None:
        item_done(ranks)
    return done


def _bar(kind: str, items: Sequence[Item], job: Job, ranks: Ranks | None = None) -> tqdm:
    """The run's one progress bar (tiles; its total grows as items open); only rank 0 shows it, none when the job
    says so."""
    return tqdm(total=0, desc=f"{kind} {len(items)} item(s)", unit="tile", dynamic_ncols=True,
                disable=bool(ranks and ranks.rank) or not job.progress)


# ----------------------------------------------------------------------------------------------------------------
# Predict
# ----------------------------------------------------------------------------------------------------------------


def is_folder_output(output: str | os.PathLike, items: Sequence[Item], input: Any = None) -> bool:
    """The output naming rule. ``output`` is a folder (each result under its input's name) when the user spelt it as
    one -- a trailing slash or an existing folder -- or when the input names several inputs or could: several items,
    a folder of inputs (its items carry a path relative to it), a list or a glob pattern with one input per entry or
    match, even a single one. Otherwise ``output`` is the one input's main file. (A list or pattern whose files make
    up one input, as an MRI case's channel files, is one input.)"""
    text = os.fspath(output)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        return True
    if len(items) > 1 or any(str(item.rel) not in ("", ".") for item in items):
        return True
    entries = _entries(input)
    return entries is not None and len(entries) == len(items)


_KIND = re.compile(r"^[A-Za-z][A-Za-z0-9_-]+:")  # 2+ letters: "C:/" is a Windows drive


def _entries(input: Any) -> list[Any] | None:
    """The entries of a list input or the matches of a glob pattern; None for anything else (a file, a URL, a
    domain's ``kind:...`` input such as ``mosaic:scenes/*.tif``, one input however many files it names...)."""
    if isinstance(input, (list, tuple)):
        return list(input)
    if isinstance(input, (str, os.PathLike)) and "://" not in str(input) and not _KIND.match(str(input)):
        return pattern_matches(input)
    return None


def plan_outputs(items: Sequence[Item], writer: Writer, output: Path, job: Job, folder: bool | None = None
                 ) -> tuple[list[dict[str, Path]], dict[str, Path]]:
    """Every item's files and the run's files; refuses two items writing one file and outputs that are inputs."""
    folder = is_folder_output(output, items) if folder is None else folder
    plans = [writer.outputs(item, Path(output), folder, job) for item in items]
    run_files = writer.run_outputs(items, Path(output), folder, job)
    owner: dict[Path, Item] = {}
    for item, plan in zip(items, plans):
        inputs = _input_paths(item)
        for path in plan.values():
            resolved = Path(os.path.abspath(path))
            if resolved in inputs:
                raise DataError(f"output {path} is the input itself; choose another output path")
            if resolved in owner:
                raise DataError(f"inputs {owner[resolved].name} and {item.name} would both be written to {path}; "
                                "rename one")
            owner[resolved] = item
    return plans, run_files


def _not_inside(items: list[Item], output: Path) -> list[Item]:
    """The items not read from inside the output folder (a folder input holding an earlier run's outputs: those are
    never read back as inputs); a DataError when that leaves none."""
    folder = Path(os.path.abspath(output))
    kept = [item for item in items if not any(p.is_relative_to(folder) for p in _input_paths(item))]
    if items and not kept:
        raise DataError(f"every input lies inside the output folder {output}; choose another output folder")
    return kept


def _input_paths(item: Item) -> set[Path]:
    values = item.source.values() if isinstance(item.source, Mapping) else [item.source]
    return {Path(os.path.abspath(v)) for v in values if isinstance(v, (str, os.PathLike))}


def run_predict(reader: Reader, writer: Writer, job: Job, input: Any, output: str | os.PathLike,
                ranks: Ranks | None = None) -> list[Path]:
    """Predict ``input`` into ``output`` with ``job``: every check before any work, all outputs or none.

    Under ``torchrun`` / ``srun`` (``ranks``, default from the environment) the items are shared among the processes
    and rank 0 commits every process's outputs with a manifest (:mod:`segsuite.core.distributed`). Returns the files
    written (on rank 0; other ranks return []).
    """
    ranks = ranks or Ranks.from_env()
    job = prepared(reader, job)
    items = reader.find(input, job)
    folder = is_folder_output(output, items, input)  # before Path() drops a trailing slash
    output = Path(output)
    if folder:
        items = _not_inside(items, output)
    plans, run_files = plan_outputs(items, writer, output, job, folder)
    if ranks.distributed:
        run_files["manifest"] = (output if folder else output.parent) / MANIFEST
    for item in items:
        reader.check(item, job)
    destinations = [p for plan in plans for p in plan.values()] + list(run_files.values())
    try:
        join(ranks)  # before any work: a rank that dies from now on is named by the others
        return _stage_and_commit(reader, writer, job, items, plans, run_files, destinations, output, ranks)
    finally:
        leave()


def _stage_and_commit(reader: Reader, writer: Writer, job: Job, items: Sequence[Item], plans: Sequence[dict],
                      run_files: dict[str, Path], destinations: list[Path], output: Path, ranks: Ranks) -> list[Path]:
    with Staging(destinations, job.overwrite) as stage:
        results, error = _predict_shard(reader, writer, job, items, plans, stage, ranks)
        reports = gather(ranks, (error and str(error), str(stage.root), results), "predicted")
        _raise_first(error, reports)
        written: list[Path] = []
        if ranks.rank == 0:
            roots = [Path(root) for _, root, _ in reports[1:]]
            ordered = [r for _, r in sorted((pair for *_, res in reports for pair in res), key=lambda p: p[0])]
            writer.finish(ordered, stage.paths({k: v for k, v in run_files.items() if k != "manifest"}), job)
            if ranks.distributed:
                _write_manifest(stage, roots, run_files["manifest"])
            written = stage.commit(roots)
            log.info("wrote %d file(s) for %d input(s) into %s", len(written), len(items), output)
        gather(ranks, None, "committed")  # the other ranks keep their staging folders until rank 0 has moved them
    return written


def _predict_shard(reader: Reader, writer: Writer, job: Job, items: Sequence[Item], plans: Sequence[dict],
                   stage: Staging, ranks: Ranks) -> tuple[list[tuple[int, Any]], BaseException | None]:
    """This rank's items into ``stage``: ``([(item index, sink result)], None)``; a distributed run catches the error
    (returned second) so that every rank still reports and none commits."""
    def sinks(index: int, item: Item, opened: Opened) -> list[Sink]:
        return [writer.sink(item, opened, stage.paths(plans[index]), job)]

    with _bar("predict", items, job, ranks) as bar:
        try:
            return _through("predict", list(ranks.shard(items)), reader, job, bar, sinks, ranks), None
        except Exception as err:
            if not ranks.distributed:
                raise
            return [], err


def _raise_first(own: BaseException | None, reports: Sequence[tuple[str | None, str, Any]]) -> None:
    if own is not None:
        raise own
    for rank, (message, _, _) in enumerate(reports):
        if message:
            raise DataError(f"prediction failed on rank {rank}: {message}; nothing was written")


def _write_manifest(stage: Staging, roots: Sequence[Path], manifest: Path) -> None:
    """Every output of the run with the rank that wrote it (rank 0 also writes the run outputs)."""
    files = [{"path": os.path.relpath(dst, manifest.parent), "rank": rank}
             for rank, root in enumerate([stage.root, *roots]) for _, dst in stage.staged(root)]
    write_json(stage.path(manifest), {"ranks": len(roots) + 1, "files": sorted(files, key=lambda f: f["path"])})


# ----------------------------------------------------------------------------------------------------------------
# Evaluate
# ----------------------------------------------------------------------------------------------------------------


def run_evaluate(evaluation: Evaluation, reader: Reader, job: Job, datasets: Mapping[str, Any],
                 output_dir: str | os.PathLike) -> dict[str, Any]:
    """Score ``job``'s model on the labelled items that ``evaluation`` takes from ``datasets``; the reports go into
    ``output_dir`` (all or none). Returns the summary the scorers reported."""
    out = Path(output_dir)
    job = prepared(reader, job)
    split, items = evaluation.items(datasets, job)
    if not items:
        raise DataError(f"the {split!r} split has no labelled items to evaluate")
    for item in items:
        reader.check(item, job)
    scorers = evaluation.scorers(job)
    summary: dict[str, Any] = {"split": split, "checkpoint": job.model.checkpoint, "task": job.mode.value}
    with Staging([out / name for name in evaluation.report_files(job)], job.overwrite) as stage, \
            _bar("evaluate", items, job) as bar:
        staged_out = stage.path(out / "metrics.json").parent
        _through("evaluate", list(enumerate(items)), reader, job, bar,
                 lambda index, item, opened: [s.sink(item, opened, staged_out, job) for s in scorers])
        for scorer in scorers:
            summary.update(scorer.report(staged_out, job) or {})
        stage.commit()
    return summary
