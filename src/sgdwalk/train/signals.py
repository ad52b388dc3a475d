"""SIGINT and SIGTERM ask the loop to checkpoint and stop after the current step."""

from __future__ import annotations

import signal
import threading


class StopOnSignals:
    """While entered, the first SIGINT/SIGTERM sets `requested`; a second Ctrl-C stops at
    once (KeyboardInterrupt). Outside the main thread, where Python cannot install signal
    handlers (a sweep's worker thread), it changes nothing."""

    def __init__(self):
        self.requested = False
        self._saved = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> bool:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        return False
