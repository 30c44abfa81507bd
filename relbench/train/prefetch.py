"""Reads and transfers the next batches on a background thread.

The main thread of the loop should only dispatch jitted steps. A background thread
pulls host batches from the grain iterator, assembles them into global device arrays
and queues them, so reading and transfer overlap with computation.
``get_state()`` reports the grain state as of the batches the loop has *consumed*
(not read ahead), so a checkpoint resumes exactly where training stopped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_END = object()


class DevicePrefetch:
    """An iterator of device batches, ``size`` ahead of the consumer."""

    def __init__(self, iterator, to_device: Callable[[Any], Any], size: int = 2):
        self._iterator = iterator
        self._to_device = to_device
        self._state = iterator.get_state()
        self._queue: queue.Queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self) -> None:
        try:
            for local in self._iterator:
                if not self._put((self._to_device(local), self._iterator.get_state())):
                    return
        except BaseException as error:  # surfaces in the consumer's next()
            self._put(error)
            return
        self._put(_END)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        batch, self._state = item
        return batch

    def get_state(self) -> dict:
        """The grain iterator state after the last batch returned by ``next``."""
        return self._state

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
