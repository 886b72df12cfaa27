"""A progress bar on stderr: redrawn in place on a terminal, a few plain lines otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self._label = label
        self._total = max(total, 1)
        self._stream = stream or sys.stderr
        self._tty = self._stream.isatty()
        self._started = time.perf_counter()
        self._last_draw = 0.0
        self._last_quarter = -1
        self._done = 0

    def update(self, done: int) -> None:
        """``done`` of the total so far; draws at most 10 times a second (plain mode: every 25 %)."""
        self._done = min(done, self._total)
        if self._tty:
            now = time.perf_counter()
            if now - self._last_draw >= 0.1 or self._done == self._total:
                self._last_draw = now
                filled = WIDTH * self._done // self._total
                self._stream.write(f"\r{self._label:<9} [{'#' * filled}{'.' * (WIDTH - filled)}] "
                                   f"{self._done:,}/{self._total:,}")
                self._stream.flush()
            return
        quarter = 4 * self._done // self._total
        if quarter > self._last_quarter:
            self._last_quarter = quarter
            self._stream.write(f"{self._label}: {self._done:,}/{self._total:,} ({25 * quarter}%)\n")
            self._stream.flush()

    def finish(self, note: str = "") -> None:
        self.update(self._total)
        seconds = time.perf_counter() - self._started
        end = f" {note}" if note else ""
        self._stream.write(f"{'  ' if self._tty else self._label + ':'} done in {seconds:.1f}s{end}\n")
        self._stream.flush()
