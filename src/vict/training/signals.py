"""Graceful stop on SIGTERM / SIGINT: finish the current optimizer step, save a checkpoint, exit.

A second SIGINT while the checkpoint is being written falls through to Python's default handling
(``KeyboardInterrupt``), so a user can always force a stop.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopRequest:
    """Installs the handlers on enter and restores the previous ones on exit; ``requested`` names the signal."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested is not None and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = name

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.getsignal(signum)
                signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
