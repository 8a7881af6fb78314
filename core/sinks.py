"""An item's sinks on a thread of their own (:class:`SinkThread`), and an item whose engine has finished while its
sinks may still be writing (:class:`Feeding`), so that the next item's forward passes run beside that writing.

On a CPU a prediction's last work (a road frame's argmax and its three PNGs, an MRI case's restore and NIfTI, a
scene's class raster closed) took the cores while the forward pass waited for it: 90 ms a 1024 x 2048 frame on 2
cores, 5 % of its time. Beside the next item's forward pass it fills the cores the network leaves idle."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from segsuite.core.contracts import Prediction, Sink
from segsuite.core.workers import settle_threads


class SinkThread:
    """The sinks of a run's items on one thread of their own, in the order the engine hands over its tasks: the engine
    launches its next batch (or the next item) while the last block is split (argmax), restored and written, and no
    two items' sinks ever run at once (a scorer's sinks share its tallies). An error there stops the run at the next
    hand-over; later tasks are skipped, so the engine never blocks on the queue."""

    def __init__(self, depth: int = 1) -> None:
        self.error: BaseException | None = None
        self.stopped = False
        self.tasks: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name="segsuite-write", daemon=True)
        settle_threads()  # the engine's count, before this thread sets its own
        self.thread.start()

    def _run(self) -> None:
        torch.set_num_threads(1)  # this thread only: the cores belong to the forward pass (engine.one_thread)
        while (job := self.tasks.get()) is not None:
            task, sinks, done = job
            try:
                if self.error is None and not self.stopped and (prediction := task()) is not None:
                    for sink in sinks:
                        sink.update(prediction)
            except BaseException as err:  # re-raised in the engine's thread
                self.error = err
            finally:
                if done is not None:
                    done.set()

    def put(self, task: Callable[[], Prediction | None], sinks: Sequence[Sink] = (),
            done: threading.Event | None = None) -> None:
        """Run ``task`` on this thread and give its prediction to ``sinks``; ``done`` is set after it (run or not)."""
        self.raise_error()
        self.tasks.put((task, sinks, done))

    def join(self) -> None:
        """Wait for every task handed over; raises the first error."""
        if self.thread.is_alive():
            self.tasks.put(None)
            self.thread.join()
        self.raise_error()

    def stop(self) -> None:
        """Skip what is still queued and wait for the task running now (a failed run); raises nothing."""
        self.stopped = True
        with contextlib.suppress(BaseException):
            self.join()

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error


class Feeding:
    """One item's predictions going into its sinks on the run's :class:`SinkThread`: :meth:`put` each prediction
    task, then :meth:`done` (the sinks are closed last, on that thread), and :meth:`finish` waits for them and
    returns what each sink's ``close`` returned. On an error there, or through :meth:`abort`, every sink is aborted."""

    def __init__(self, writer: SinkThread, sinks: Sequence[Sink]) -> None:
        self.writer, self.sinks, self.closed = writer, sinks, []
        self.finished = threading.Event()

    def put(self, task: Callable[[], Prediction | None]) -> None:
        self.writer.put(task, self.sinks)

    def done(self) -> Feeding:
        """Every prediction has been put: close the sinks after them."""
        self.writer.put(self._close, done=self.finished)
        return self

    def _close(self) -> None:
        self.closed = [sink.close() for sink in self.sinks]

    def finish(self) -> list[Any]:
        self.finished.wait()
        try:
            self.writer.raise_error()
        except BaseException:
            self.abort()
            raise
        return self.closed

    def abort(self) -> None:
        """Stop the run's sinks' thread (what is queued is skipped) and abort this item's sinks."""
        self.writer.stop()
        for sink in self.sinks:
            sink.abort()
