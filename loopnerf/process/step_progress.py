"""Progress display for the steps of `loopnerf process` (rich, on stderr).

Each step shows a bar (when its size is known) or a spinner with the elapsed time;
when stderr is not a terminal (logs, tests) each finished step prints one line
instead. Step durations are kept for the summary.
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Optional


class StepProgress:
    """Shows one step at a time; `timings` maps step description -> seconds."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.timings: dict[str, float] = {}
        self._progress = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), console=Console(stderr=True),
            )

    def __enter__(self) -> "StepProgress":
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextlib.contextmanager
    def step(self, description: str, total: Optional[int] = None):
        """Context for one step; yields `tick(done)` to report how many items are done."""
        start = time.perf_counter()
        task = None
        if self._progress is not None:
            task = self._progress.add_task(description, total=total)

        def tick(done: int) -> None:
            if task is not None:
                self._progress.update(task, completed=done)

        try:
            yield tick
        finally:
            took = time.perf_counter() - start
            self.timings[description] = round(took, 3)
            if task is not None:
                self._progress.update(task, completed=total if total is not None else 1, total=total or 1)
            elif not self.quiet:
                print(f"loopnerf process: {description}: {took:.1f} s", file=sys.stderr)
