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


class step_lines:
    """Progress of a training loop where no terminal shows a bar (a log file, CI, a pipe):
    `update(step, info)` prints one line on stderr each tenth of `total` steps, with the
    elapsed seconds. `active` is False on a terminal (the rich bar shows progress there)
    and when `quiet`."""

    def __init__(self, description: str, total: int, *, quiet: bool = False, start: int = 0):
        import sys
        import time

        self.description = description
        self.total = max(int(total), 1)
        self.active = not quiet and not sys.stderr.isatty()
        self._start = time.perf_counter()
        self._next = (int(start) * 10 // self.total + 1)

    def update(self, step: int, info: str = "") -> None:
        import sys
        import time

        if not self.active or step * 10 < self._next * self.total:
            return
        while self._next <= 10 and step * 10 >= self._next * self.total:
            self._next += 1
        print(f"{self.description}: {step}/{self.total}  {info}  ({time.perf_counter() - self._start:.0f} s)", file=sys.stderr, flush=True)
