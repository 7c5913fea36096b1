"""An on-disk cache of brick grids, so a `.loop` opens in seconds the second time.

Building a `BrickGrid` from a baked loop takes 10-16 s on a 2-core CPU for the demo loop
(`bricks.build_bricks`); reading it back takes about 1.5 s. The `.loop` itself stays the
compact file the exporter bakes (the demo's: 7.7 MB, its brick grid 0.59 GB): the grid is
derived data, kept in a cache folder, never beside the user's file.

Where: `$LOOPNERF_CACHE_DIR/bricks/` (default `$XDG_CACHE_HOME/loopnerf`, else
`~/.cache/loopnerf`); `LOOPNERF_CACHE_DIR=off` (or `0`, `none`, empty) turns the cache
off. At most `$LOOPNERF_CACHE_MB` megabytes (default 4096) are kept; the least recently
used grids go first.

One file per grid, `<key>.bricks`: safetensors (plain data; no pickle), its metadata
`{"format": "loopnerf-bricks", "version": "1", "key", "loop_hash", "cells", "brick",
"rank", "frames", "stats" (JSON), "crc32"}` and the arrays `slot`, `dynamic`,
`log_density`, `colour`, `colour_table` of `BrickGrid`. The key hashes the loop's
content (`BakedLoop.content_hash`: header and every tensor), the build parameters and
this format's version, so a grid is found again only for the same loop built the same
way. A file that does not read back exactly (truncated, another version, a checksum or
shape that does not match) is ignored, deleted and rebuilt: a cache never fails a load.
Files are written to a temporary name and renamed, so an interrupted write leaves no
half file under a key.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop
    from loopnerf.viewer.bricks import BrickGrid

FORMAT = "loopnerf-bricks"
VERSION = 1
SUFFIX = ".bricks"
DEFAULT_LIMIT_MB = 4096.0
_OFF = {"", "0", "off", "none", "false", "no"}
_ARRAYS = {"slot": np.int32, "dynamic": np.int32, "log_density": np.float16, "colour": np.uint8, "colour_table": np.float32}


def cache_folder() -> Path | None:
    """The folder brick grids are cached in, or None when the cache is turned off."""
    raw = os.environ.get("LOOPNERF_CACHE_DIR")
    if raw is not None:
        if raw.strip().lower() in _OFF:
            return None
        root = Path(raw).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "loopnerf"
    return root / "bricks"


def limit_megabytes() -> float:
    """The cache's size limit, `$LOOPNERF_CACHE_MB` (default 4096)."""
    raw = os.environ.get("LOOPNERF_CACHE_MB")
    try:
        return float(raw) if raw else DEFAULT_LIMIT_MB
    except ValueError:
        return DEFAULT_LIMIT_MB


@dataclass(frozen=True)
class GridKey:
    """Which cached grid a loop and build settings have: `key` names the file,
    `loop_hash` (`BakedLoop.content_hash`) and `frames` are checked against it."""

    key: str
    loop_hash: str
    frames: int


def grid_key(loop: "BakedLoop", params: dict[str, Any]) -> GridKey:
    """The cache key of `loop`'s grid built with `params` (the `build_bricks` settings
    that shape the grid). Hashes the loop once; pass it to `load_grid` and `store_grid`."""
    loop_hash = loop.content_hash()
    blob = json.dumps({"format": FORMAT, "version": VERSION, "loop": loop_hash, "params": params}, sort_keys=True)
    return GridKey(hashlib.sha256(blob.encode()).hexdigest()[:40], loop_hash, int(loop.frames))


def _crc(arrays: dict[str, np.ndarray]) -> str:
    c = 0
    for name in sorted(arrays):
        c = zlib.crc32(np.ascontiguousarray(arrays[name]).view(np.uint8).reshape(-1), c)
    return f"{c:08x}"


def load_grid(key: GridKey) -> tuple["BrickGrid | None", str]:
    """(grid, note): the cached grid under `key` (`grid_key`), or (None, why not).
    A file that does not read back exactly is deleted (see the module docstring)."""
    folder = cache_folder()
    if folder is None:
        return None, "cache off (LOOPNERF_CACHE_DIR)"
    path = folder / f"{key.key}{SUFFIX}"
    if not path.is_file():
        return None, "not cached"
    try:
        grid = _read(path, key)
    except Exception as err:  # noqa: BLE001 - any unreadable cache file is rebuilt, never fatal
        path.unlink(missing_ok=True)
        return None, f"cached grid unreadable, rebuilt ({type(err).__name__}: {err})"
    try:
        os.utime(path)  # most recently used: the last to be evicted
    except OSError:
        pass
    return grid, f"from the cache ({path})"


def _read(path: Path, key: GridKey) -> "BrickGrid":
    from safetensors import safe_open

    from loopnerf.viewer.bricks import BrickGrid

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT or meta.get("version") != str(VERSION):
            raise ValueError(f"format {meta.get('format')!r} version {meta.get('version')!r}, expected {FORMAT!r} {VERSION}")
        if meta.get("key") != key.key or meta.get("loop_hash") != key.loop_hash:
            raise ValueError("made from another loop or with other settings")
        arrays = {name: f.get_tensor(name) for name in _ARRAYS}
    for name, dtype in _ARRAYS.items():
        if arrays[name].dtype != dtype:
            raise ValueError(f"{name} is {arrays[name].dtype}, expected {np.dtype(dtype)}")
    if _crc(arrays) != meta.get("crc32"):
        raise ValueError("checksum mismatch")
    cells = tuple(int(c) for c in json.loads(meta["cells"]))
    brick, rank, frames = int(meta["brick"]), int(meta["rank"]), int(meta["frames"])
    slot, dynamic = arrays["slot"], arrays["dynamic"]
    dims = tuple(-(-c // brick) for c in cells)
    V = (brick + 1) ** 3
    n_slots = arrays["log_density"].size // V
    if (slot.shape != dims or dynamic.shape != dims or frames != key.frames or arrays["log_density"].size != n_slots * V
            or arrays["colour"].size != n_slots * V * rank or arrays["colour_table"].shape[-1] != rank + 1):
        raise ValueError("array sizes do not match the grid's header")
    used = slot[slot >= 0]
    if used.size and int((used + np.where(dynamic[slot >= 0] != 0, frames - 1, 0)).max()) >= max(1, n_slots):
        raise ValueError("a brick's slots lie past the end of the grid")
    grid = BrickGrid(cells=cells, brick=brick, rank=rank, frames=frames, slot=slot, dynamic=dynamic,
                     log_density=arrays["log_density"].reshape(-1), colour=arrays["colour"].reshape(-1),
                     colour_table=arrays["colour_table"])
    grid.stats = json.loads(meta.get("stats", "{}"))
    return grid


def store_grid(key: GridKey, grid: "BrickGrid") -> Path | None:
    """Write `grid` into the cache under `key` (`grid_key` of the loop and settings it was
    built from) and evict the least recently used grids over the size limit. Returns the
    file, or None when the cache is off or cannot be written (a full or read-only disk
    does not fail a load)."""
    from safetensors.numpy import save_file

    folder = cache_folder()
    if folder is None:
        return None
    arrays = {name: np.ascontiguousarray(getattr(grid, name), dtype=dtype) for name, dtype in _ARRAYS.items()}
    size_mb = sum(a.nbytes for a in arrays.values()) / 1e6
    if size_mb > limit_megabytes():
        return None
    meta = {"format": FORMAT, "version": str(VERSION), "key": key.key, "loop_hash": key.loop_hash,
            "cells": json.dumps(list(grid.cells)), "brick": str(grid.brick), "rank": str(grid.rank),
            "frames": str(grid.frames), "stats": json.dumps(grid.stats), "crc32": _crc(arrays)}
    path = folder / f"{key.key}{SUFFIX}"
    tmp = folder / f".{key.key}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        save_file(arrays, str(tmp), metadata=meta)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    evict(keep=path)
    return path


def evict(keep: Path | None = None) -> list[Path]:
    """Delete the least recently used cached grids until the folder holds at most
    `limit_megabytes()` (never `keep`); returns what was deleted."""
    folder = cache_folder()
    if folder is None or not folder.is_dir():
        return []
    files = []
    for p in folder.glob(f"*{SUFFIX}"):
        try:
            st = p.stat()
        except OSError:
            continue
        files.append((st.st_mtime, st.st_size, p))
    total = sum(s for _, s, _ in files)
    limit = limit_megabytes() * 1e6
    removed = []
    for _, size, p in sorted(files, key=lambda x: x[0]):
        if total <= limit:
            break
        if keep is not None and p == keep:
            continue
        p.unlink(missing_ok=True)
        total -= size
        removed.append(p)
    return removed
