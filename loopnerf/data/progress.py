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
