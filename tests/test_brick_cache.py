"""The brick cache: a loop's brick grid read back exactly, rebuilt when its file is bad
or belongs to another loop, never written when off, and kept under its size limit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures.demo_loop import make_test_loop
from loopnerf.export.loop_format import load_loop, save_loop
from loopnerf.viewer import brick_cache
from loopnerf.viewer import bricks as bricks_module
from loopnerf.viewer.renderer import Renderer


@pytest.fixture(scope="module")
def loop():
    return make_test_loop()  # 8 frames, 16^3 x scales (1, 2), C = 8: a blob circling


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPNERF_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("LOOPNERF_CACHE_MB", raising=False)
    return tmp_path / "cache" / "bricks"


def _files(folder):
    return sorted(folder.glob("*.bricks")) if folder.is_dir() else []


def _same_grid(a, b):
    assert (a.cells, a.brick, a.rank, a.frames) == (b.cells, b.brick, b.rank, b.frames)
    for name in ("slot", "dynamic", "log_density", "colour", "colour_table"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name


def test_content_hash_follows_the_content_not_the_path(loop, tmp_path):
    save_loop(tmp_path / "a.loop", loop)
    again = load_loop(tmp_path / "a.loop")
    assert again.content_hash() == loop.content_hash()
    planes = [list(p) for p in loop.loop_planes]
    planes[0][0] = planes[0][0].clone()
    planes[0][0].view(-1)[0] += 0.5
    assert dataclasses.replace(loop, loop_planes=planes).content_hash() != loop.content_hash()
    assert dataclasses.replace(loop, fps=loop.fps * 2).content_hash() != loop.content_hash()


def test_second_load_reads_the_grid_back_exactly(loop, cache_dir):
    first = Renderer(loop, 20, 15)
    assert first.backend == "bricks" and first.bricks_source == "built"
    assert len(_files(cache_dir)) == 1 and "stored in the cache" in first.cache_note
    second = Renderer(loop, 20, 15)
    assert second.bricks_source == "cache" and "read from the brick cache" in second.describe()
    _same_grid(first.bricks, second.bricks)
    assert second.bricks.stats["bricks"] == first.bricks.stats["bricks"]
    c2w = first.default_c2w()
    a, _ = first.render_phase(c2w, 0.3)
    b, _ = second.render_phase(c2w, 0.3)
    assert np.array_equal(a, b)


def test_another_loop_gets_its_own_grid(loop, cache_dir):
    Renderer(loop, 8, 8)
    other = dataclasses.replace(loop, sigma_bias=loop.sigma_bias + 0.25)
    r = Renderer(other, 8, 8)
    assert r.bricks_source == "built"  # not the first loop's grid
    assert len(_files(cache_dir)) == 2
    _same_grid(r.bricks, bricks_module.build_bricks(other))


@pytest.mark.parametrize("damage", ["flip", "truncate", "version", "garbage"])
def test_a_bad_cache_file_is_rebuilt_not_fatal(loop, cache_dir, damage):
    built = Renderer(loop, 8, 8).bricks
    (path,) = _files(cache_dir)
    raw = bytearray(path.read_bytes())
    if damage == "flip":  # one byte of the voxel payload: only the checksum sees it
        raw[-1000] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "version":
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + n])
        header["__metadata__"]["version"] = "999"
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (n - len(text))
        assert len(text) == n, "the test's header edit must keep its length"
        raw[8 : 8 + n] = text
    else:
        raw = bytearray(b"not a safetensors file at all")
    path.write_bytes(bytes(raw))
    r = Renderer(loop, 8, 8)
    assert r.bricks_source == "built" and "stored in the cache" in r.cache_note
    _same_grid(r.bricks, built)
    again = Renderer(loop, 8, 8)  # the rebuilt file is good again
    assert again.bricks_source == "cache"


def test_cache_off_writes_nothing(loop, tmp_path, monkeypatch):
    monkeypatch.setenv("LOOPNERF_CACHE_DIR", "off")
    assert brick_cache.cache_folder() is None
    r = Renderer(loop, 8, 8)
    assert r.bricks_source == "built" and r.cache_note.startswith("cache off")
    monkeypatch.setenv("LOOPNERF_CACHE_DIR", str(tmp_path / "c"))
    r = Renderer(loop, 8, 8, cache=False)  # the option turns it off too
    assert r.bricks_source == "built" and not (tmp_path / "c").exists()


def test_least_recently_used_grids_go_over_the_limit(loop, cache_dir, monkeypatch):
    loops = [dataclasses.replace(loop, sigma_bias=loop.sigma_bias + 0.1 * i) for i in range(3)]
    Renderer(loops[0], 8, 8)
    (first,) = _files(cache_dir)
    size_mb = first.stat().st_size / 1e6
    monkeypatch.setenv("LOOPNERF_CACHE_MB", str(2.5 * size_mb))  # room for two
    Renderer(loops[1], 8, 8)
    import os

    os.utime(first, (1, 1))  # loop 0's grid is the oldest used ...
    assert Renderer(loops[0], 8, 8).bricks_source == "cache"  # ... until it is read again
    second = [p for p in _files(cache_dir) if p != first]
    Renderer(loops[2], 8, 8)
    left = _files(cache_dir)
    assert len(left) == 2 and first in left and second[0] not in left


def test_auto_keeps_its_budget_with_a_cached_grid(loop, cache_dir, monkeypatch):
    assert Renderer(loop, 8, 8).bricks_source == "built"
    monkeypatch.setattr(bricks_module, "MAX_MEGABYTES", 0.01)
    r = Renderer(loop, 8, 8)
    assert r.backend == "planes" and "budget" in r.backend_reason
    assert Renderer(loop, 8, 8, backend="bricks").bricks_source == "cache"  # asked for: any size
