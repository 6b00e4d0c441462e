"""The progress bar of ``map``."""

from __future__ import annotations

import time
from typing import IO

from .errors import PROG

__all__ = ["Progress"]


class Progress:
    """A progress bar redrawn in place on a terminal, or a one-line summary at the end."""

    WIDTH = 24

    def __init__(self, stream: IO[str], total: int | None, interactive: bool) -> None:
        self.stream = stream
        self.total = total
        self.interactive = interactive
        self.ok = 0
        self.failed = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self._shown = False

    @property
    def processed(self) -> int:
        return self.ok + self.failed

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.processed / elapsed
        parts = []
        if self.total:
            filled = min(self.WIDTH, self.WIDTH * self.processed // self.total)
            parts.append(f"[{'#' * filled}{'.' * (self.WIDTH - filled)}]")
            parts.append(f"{self.processed}/{self.total}")
        else:
            parts.append(f"{self.processed}")
        parts.append(f"ok {self.ok}")
        parts.append(f"failed {self.failed}")
        parts.append(f"{rate:.1f}/s")
        if self.total and rate > 0:
            eta = max(self.total - self.processed, 0) / rate
            parts.append(f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
        return "  ".join(parts)

    def draw(self, force: bool = False) -> None:
        if not self.interactive:
            return
        now = time.monotonic()
        if force or now - self._drawn >= 0.1:
            self._drawn = now
            self._shown = True
            self.stream.write(f"\r\x1b[K{self._line()}")
            self.stream.flush()

    def clear(self) -> None:
        """Wipe the bar so another line can be written to the same stream."""
        if self.interactive and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        if self.interactive:
            self.draw(force=True)
            self.stream.write(f"  in {elapsed:.1f}s\n")
        else:
            rate = self.processed / elapsed if elapsed > 0 else 0.0
            self.stream.write(
                f"{PROG} map: {self.processed} inputs, {self.ok} ok, {self.failed} failed "
                f"in {elapsed:.2f}s ({rate:.1f}/s)\n"
            )
        self.stream.flush()
