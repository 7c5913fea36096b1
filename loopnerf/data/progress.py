"""A progress bar for loading many frames (on stderr, so `--json` output stays clean)."""

from __future__ import annotations

from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def track_frames(items: Iterable[T], total: int, description: str, min_total: int = 30) -> Iterator[T]:
    """Yield `items`, showing a transient rich progress bar on stderr when there are at
    least `min_total` of them and stderr is a terminal (loading a few frames is instant)."""
    import sys

    if total < min_total or not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import track

    yield from track(items, total=total, description=description, console=Console(stderr=True), transient=True)


class progress_callback:
    """`with progress_callback("culling", total) as step:` ... `step(done, total)`.

    A context manager giving a `(done, total)` callback for long library calls that
    take one (`progress=`). On a terminal it drives a rich bar on stderr; otherwise
    (logs, CI, a pipe) it prints one line on stderr at each quarter and at the end,
    so a long step is never silent. `quiet=True` shows nothing.
    """

    def __init__(self, description: str, total: int, *, quiet: bool = False):
        self.description = description
        self.total = max(int(total), 1)
        self.quiet = quiet
        self._bar = None
        self._task = None
        self._next_quarter = 1

    def __enter__(self):
        import sys
        import time

        self._start = time.perf_counter()
        if not self.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self.step

    def step(self, done: int, total: int | None = None) -> None:
        import sys
        import time

        total = max(int(total or self.total), 1)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total)
            return
        while self._next_quarter <= 4 and done * 4 >= self._next_quarter * total:
            print(f"{self.description}: {done}/{total} ({time.perf_counter() - self._start:.1f} s)", file=sys.stderr, flush=True)
            self._next_quarter += 1

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
