"""The Taichi viewer renderer against the plain-PyTorch reference renderer of a baked loop,
the seamless loop, occupancy skipping, the frame cache and the camera helpers."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures.demo_loop import make_test_loop
from loopnerf.export.reference_render import render_camera
from loopnerf.viewer.orbit_camera import OrbitCamera, orbit_path
from loopnerf.viewer.renderer import FrameCache, Renderer


def psnr(a_uint8: np.ndarray, b_float: np.ndarray) -> float:
    mse = float(np.mean((a_uint8.astype(np.float64) / 255.0 - b_float.astype(np.float64)) ** 2))
    return -10.0 * math.log10(max(mse, 1e-12))


@pytest.fixture(scope="module")
def loop():
    return make_test_loop()  # 8 frames, 16^3 x scales (1, 2), C = 8, camera 40 x 30


@pytest.fixture(scope="module")
def renderer(loop):
    # The exact backend (the file's planes at every sample); the default "bricks"
    # backend is checked against it in test_viewer_bricks.py.
    return Renderer(loop, 40, 30, backend="planes")


def _intr_dict(intr):
    return dict(fx=intr.fx, fy=intr.fy, cx=intr.cx, cy=intr.cy, width=intr.width, height=intr.height)


@pytest.mark.parametrize("phase", [0.0, 0.3, 0.8125])
def test_matches_reference_at_default_camera(loop, renderer, phase):
    rgb, depth = renderer.render_phase(renderer.default_c2w(), phase)
    assert rgb.dtype == np.uint8 and rgb.shape == (30, 40, 3)
    assert depth.dtype == np.float32 and depth.shape == (30, 40)
    ref = render_camera(loop, phase=phase, n_samples=512)
    assert psnr(rgb, ref["rgb"].numpy()) >= 35.0
    # The blob is actually in view (the comparison is not white against white).
    assert (ref["acc"].numpy() > 0.5).sum() >= 20
    hit = ref["acc"].numpy() > 0.99
    assert np.abs(depth[hit] - ref["depth"].numpy()[hit]).max() < 0.05


@pytest.mark.parametrize("phase", [0.0, 0.45])
def test_median_depth_matches_reference(loop, renderer, phase):
    rgb_e, expected, op = renderer.render_phase_with_opacity(renderer.default_c2w(), phase)
    rgb_m, median, op_m = renderer.render_phase_with_opacity(renderer.default_c2w(), phase, depth="median")
    # Only the depth output changes.
    np.testing.assert_array_equal(rgb_e, rgb_m)
    np.testing.assert_array_equal(op, op_m)
    ref = render_camera(loop, phase=phase, n_samples=1024)
    acc = ref["acc"].numpy()
    hit = acc > 0.6  # clearly past 1/2: the crossing is not at the ray's very end
    assert hit.sum() >= 20
    assert np.abs(median[hit] - ref["median"].numpy()[hit]).max() < 0.03
    # Where the opacity stays under 1/2 there is no median: far.
    np.testing.assert_allclose(median[op < 0.5], loop.far)
    # A soft blob: half the light comes from in front of the expected depth's mean.
    assert not np.allclose(median[hit], expected[hit], atol=1e-3)
    with pytest.raises(ValueError, match="depth"):
        renderer.render_phase_with_opacity(renderer.default_c2w(), phase, depth="mean")


def test_reference_median_of_a_slab():
    from loopnerf.export.reference_render import median_distance

    # Density 2 per unit from t = 1 on (bins of 0.1): T(t) = exp(-2 (t - 1)), T = 1/2 at
    # t = 1 + ln 2 / 2; an empty ray has none (far).
    edges = torch.arange(0.0, 3.01, 0.1, dtype=torch.float64)
    t = 0.5 * (edges[1:] + edges[:-1])
    d = edges[1:] - edges[:-1]
    sigma = torch.where(t > 1.0, 2.0, 0.0).to(torch.float64)
    out = median_distance(torch.stack([t, t]), torch.stack([d, d]), torch.stack([sigma, 0 * sigma]), far=9.0)
    assert abs(float(out[0]) - (1.0 + math.log(2.0) / 2.0)) < 1e-9
    assert float(out[1]) == 9.0


def test_matches_reference_on_orbit_and_other_size(loop, renderer):
    poses = orbit_path(loop.camera["c2w"], loop.box, loop.up, 8, degrees=40.0)
    intr = renderer.intrinsics_for(36, 28)  # another size and aspect: vertical fov kept
    for i in (1, 3, 6):
        rgb, _ = renderer.render_phase(poses[i], i / 8 + 0.03, intrinsics=intr)
        ref = render_camera(loop, poses[i], _intr_dict(intr), phase=i / 8 + 0.03, n_samples=512)
        assert rgb.shape == (28, 36, 3)
        assert psnr(rgb, ref["rgb"].numpy()) >= 35.0


def test_time_in_seconds_maps_to_phase(loop, renderer):
    c2w = renderer.default_c2w()
    period = loop.frames / loop.fps
    a, _ = renderer.render(c2w, 0.25 * period)
    b, _ = renderer.render_phase(c2w, 0.25)
    c, _ = renderer.render(c2w, 3.25 * period)  # three loops later: identical
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_seamless_loop(loop, renderer):
    c2w = renderer.default_c2w()
    first, _ = renderer.render_phase(c2w, 0.0)
    wrapped, _ = renderer.render_phase(c2w, 1.0)
    assert np.array_equal(first, wrapped)
    # Frames at sub-frame spacing across the whole loop: the change across the wrap
    # (last frame -> frame 0) is no larger than the largest consecutive change.
    n = loop.frames * 2
    frames = [renderer.render_phase(c2w, k / n)[0].astype(np.float64) for k in range(n)]
    steps = [np.abs(frames[k + 1] - frames[k]).mean() for k in range(n - 1)]
    wrap = np.abs(frames[0] - frames[-1]).mean()
    assert max(steps) > 0.5  # the loop really moves
    assert wrap <= max(steps) + 1e-9


def test_occupancy_skipping_changes_nothing_but_cost(loop, renderer):
    full = dataclasses.replace(loop, occupancy=torch.ones_like(loop.occupancy))
    dense = Renderer(full, 40, 30, backend="planes")
    assert float(loop.occupancy.float().mean()) < 0.9  # the baked grid does skip cells
    for phase in (0.1, 0.6):
        a, da = renderer.render_phase(renderer.default_c2w(), phase)
        b, db = dense.render_phase(renderer.default_c2w(), phase)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        np.testing.assert_allclose(da, db, atol=1e-2)


def test_empty_occupancy_shows_background(loop):
    empty = dataclasses.replace(loop, occupancy=torch.zeros_like(loop.occupancy), background=(0.2, 0.4, 0.6))
    rgb, depth = Renderer(empty, 20, 15).render(np.asarray(loop.camera["c2w"]), 0.0)
    assert np.all(rgb == np.array([51, 102, 153], dtype=np.uint8))
    np.testing.assert_allclose(depth, loop.far)


def test_frame_cache_replays_rendered_frames(loop, renderer):
    cache = FrameCache(renderer)
    c2w = renderer.default_c2w()
    intr = renderer.intrinsics_for(40, 30)
    a, _ = cache.get(c2w, 3, intr)
    b, _ = cache.get(c2w, 3 + loop.frames, intr)  # same frame one loop later
    assert cache.hits == 1 and a is b
    direct, _ = renderer.render_phase(c2w, 3 / loop.frames, intrinsics=intr)
    assert np.array_equal(a, direct)
    moved = c2w.copy()
    moved[0, 3] += 0.1
    cache.get(moved, 3, intr)
    assert cache.hits == 1  # a new camera empties the cache


def test_orbit_camera_moves_and_resets(loop):
    cam = OrbitCamera(loop.camera["c2w"], loop.box, loop.up)
    home = cam.c2w()
    np.testing.assert_allclose(home, np.asarray(loop.camera["c2w"], dtype=np.float32), atol=1e-5)
    dist0 = np.linalg.norm(home[:3, 3] - cam.pivot)
    cam.orbit(0.4, 0.2)
    moved = cam.c2w()
    # Orbiting keeps the distance to the pivot and keeps looking at it.
    assert abs(np.linalg.norm(moved[:3, 3] - cam.pivot) - dist0) < 1e-4
    look = -moved[:3, 2]
    to_pivot = (cam.pivot - moved[:3, 3]) / np.linalg.norm(cam.pivot - moved[:3, 3])
    assert np.dot(look, to_pivot) > 0.9999
    cam.zoom(0.5)
    assert abs(np.linalg.norm(cam.c2w()[:3, 3] - cam.pivot) - 0.5 * dist0) < 1e-4
    cam.pan(0.1, 0.0)
    cam.reset()
    np.testing.assert_allclose(cam.c2w(), home, atol=1e-6)


def test_camera_path_files(tmp_path):
    import json

    from loopnerf.errors import LoopNeRFError
    from loopnerf.viewer.orbit_camera import load_camera_path

    poses = np.stack([np.eye(4), np.eye(4)])
    poses[1, 0, 3] = 2.0
    (tmp_path / "a.json").write_text(json.dumps(poses.tolist()))
    (tmp_path / "b.json").write_text(json.dumps({"frames": [{"transform_matrix": p.tolist()} for p in poses]}))
    np.save(tmp_path / "c.npy", poses[:, :3])
    for name in ("a.json", "b.json", "c.npy"):
        np.testing.assert_allclose(load_camera_path(tmp_path / name), poses)
    (tmp_path / "bad.json").write_text(json.dumps([[1, 2, 3]]))
    with pytest.raises(LoopNeRFError, match="bad.json"):
        load_camera_path(tmp_path / "bad.json")


def test_orbit_path_is_periodic_and_starts_home(loop):
    poses = orbit_path(loop.camera["c2w"], loop.box, loop.up, 12)
    np.testing.assert_allclose(poses[0], np.asarray(loop.camera["c2w"], dtype=np.float32), atol=1e-5)
    assert not np.allclose(poses[3], poses[0])
    again = orbit_path(loop.camera["c2w"], loop.box, loop.up, 12 * 2)
    np.testing.assert_allclose(again[2], poses[1], atol=1e-5)  # same path at twice the rate


def test_density_bounds_cut_samples_not_accuracy(loop, renderer):
    # The same loop without its per-cell density bounds (a .loop written before they
    # existed): occupied cells are marched at the base step everywhere.
    assert loop.density_max is not None
    unbounded = Renderer(dataclasses.replace(loop, density_max=None), 40, 30, backend="planes")
    c2w = renderer.default_c2w()
    for phase in (0.2, 0.7):
        a, _ = renderer.render_phase(c2w, phase)
        n_bounded = renderer.last_samples_per_ray().sum()
        b, _ = unbounded.render_phase(c2w, phase)
        n_unbounded = unbounded.last_samples_per_ray().sum()
        assert n_bounded < 0.8 * n_unbounded
        ref = render_camera(loop, phase=phase, n_samples=512)["rgb"].numpy()
        assert psnr(a, ref) >= 35.0 and psnr(b, ref) >= 35.0


def test_density_pyramid_bounds_every_finer_cell():
    from loopnerf.viewer.renderer import UNBOUNDED, density_pyramid

    rng = np.random.default_rng(0)
    bound = rng.random((9, 6, 5)).astype(np.float32) * 10
    occ = (rng.random((9, 6, 5)) > 0.3).astype(np.uint8)
    flat, meta = density_pyramid(occ, bound)
    levels = [flat[o : o + gx * gy * gz].reshape(gx, gy, gz) for o, gx, gy, gz in meta]
    np.testing.assert_array_equal(levels[0], np.where(occ > 0, bound, 0))
    assert max(levels[-1].shape) <= 4 and len(levels) >= 2
    for fine, coarse in zip(levels, levels[1:]):
        assert coarse.shape == tuple((d + 1) // 2 for d in fine.shape)
        for idx in np.ndindex(*fine.shape):
            assert coarse[tuple(i // 2 for i in idx)] >= fine[idx]
    # Without bounds an occupied cell is unbounded and an empty one is 0.
    flat, meta = density_pyramid(occ, None)
    np.testing.assert_array_equal(flat[: occ.size].reshape(occ.shape), np.where(occ > 0, np.float32(UNBOUNDED), np.float32(0)))
