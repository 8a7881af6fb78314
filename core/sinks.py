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
    """The sinks of one item on their own thread: the engine hands over prediction tasks through a short queue and
    launches its next batch while the last block is split (argmax), restored and written. An error there stops the
    item at the next hand-over; the thread drains the queue so the engine never blocks on it."""

    def __init__(self, sinks: Sequence[Sink], depth: int = 1) -> None:
        self.sinks, self.error = sinks, None
        self.tasks: queue.Queue = queue.Queue(maxsize=depth)
        self.thread = threading.Thread(target=self._run, name="segsuite-write", daemon=True)
        settle_threads()  # the engine's count, before this thread sets its own
        self.thread.start()

    def _run(self) -> None:
        torch.set_num_threads(1)  # this thread only: the cores belong to the forward pass (engine.one_thread)
        while (task := self.tasks.get()) is not None:
            if self.error is not None:
                continue
            try:
                if (prediction := task()) is not None:
                    for sink in self.sinks:
                        sink.update(prediction)
            except BaseException as err:  # re-raised in the engine's thread
                self.error = err

    def put(self, task: Callable[[], Prediction | None]) -> None:
        self._raise()
        self.tasks.put(task)

    def join(self) -> None:
        self.tasks.put(None)
        self.thread.join()
        self._raise()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error


class Feeding:
    """One item's predictions going into its sinks on their :class:`SinkThread`: :meth:`put` each prediction task,
    then :meth:`done` (the sinks are closed last, on their thread), and :meth:`finish` waits for them and returns
    what each sink's ``close`` returned. On an error there, or through :meth:`abort`, every sink is aborted."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.writer, self.sinks, self.closed = SinkThread(sinks), sinks, []

    def put(self, task: Callable[[], Prediction | None]) -> None:
        self.writer.put(task)

    def done(self) -> Feeding:
        """Every prediction has been put: close the sinks after them."""
        self.writer.put(self._close)
        return self

    def _close(self) -> None:
        self.closed = [sink.close() for sink in self.sinks]

    def finish(self) -> list[Any]:
        try:
            self.writer.join()
        except BaseException:
            self.abort()
            raise
        return self.closed

    def abort(self) -> None:
        """Wait for the sinks' thread to stop (its error dropped: the caller raises its own) and abort every sink."""
        with contextlib.suppress(BaseException):
            self.writer.join()
        for sink in self.sinks:
            sink.abort()
