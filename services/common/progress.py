"""Progress for long work: a rich bar on a terminal, log lines with rate and ETA otherwise
(e.g. in `ray job logs`)."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("dojo")


def setup_logging(level: int = logging.INFO) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("dojo").setLevel(level)


class Progress:
    """``with Progress("a3c", total=frames, unit="frames") as p: p.update(n, return=...)``.

    ``initial`` is where a resumed run starts: the bar starts there, and the rate and ETA count only
    what this run did."""

    def __init__(self, description: str, total: float, unit: str = "it", every_s: float = 10.0,
                 initial: float = 0.0):
        self.description, self.total, self.unit, self.every_s = description, total, unit, every_s
        self.initial = self.done = initial
        self._bar = None
        self._start = self._last_log = time.monotonic()

    def __enter__(self) -> Progress:
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, completed=self.initial, rate="",
                                            info="")
        return self

    def set_total(self, total: float) -> None:
        """A new estimate of the total (e.g. when a time budget, not a count, ends the work)."""
        self.total = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def update(self, completed: float, **info: float | int | str) -> None:
        self.done = completed
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = (completed - self.initial) / elapsed
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        if self._bar is not None:
            self._bar.update(self._task, completed=min(completed, self.total), rate=f"{rate:,.0f} {self.unit}/s", info=text)
        elif time.monotonic() - self._last_log >= self.every_s:
            self._last_log = time.monotonic()
            eta = (self.total - completed) / rate if rate > 0 else float("inf")
            log.info(
                "%s %.0f/%.0f %s (%.1f%%) %.0f %s/s ETA %.0fs %s",
                self.description, completed, self.total, self.unit,
                100.0 * completed / max(self.total, 1), rate, self.unit, eta, text,
            )

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
