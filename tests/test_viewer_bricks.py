"""The brick grid (the viewer's fast backend) against the exact planes backend and the
PyTorch reference, its colour code, and the bake's visibility culling."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

torch = pytest.importorskip("torch")

from loopnerf.data.capture import Intrinsics
from fixtures.demo_loop import make_test_loop
from loopnerf.export.loop_format import LoopFormatError, load_loop, save_loop
from loopnerf.export.reference_render import render_camera
from loopnerf.export.visibility import cull_invisible, culling_views
from loopnerf.viewer.bricks import build_bricks, code_quantisation, colour_code, occupied_bricks, quantised_table
from loopnerf.viewer.orbit_camera import orbit_path
from loopnerf.viewer.renderer import Renderer


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    a = a.astype(np.float64) / (255.0 if a.dtype == np.uint8 else 1.0)
    b = b.astype(np.float64) / (255.0 if b.dtype == np.uint8 else 1.0)
    return -10.0 * math.log10(max(float(np.mean((a - b) ** 2)), 1e-12))


@pytest.fixture(scope="module")
def loop():
    return make_test_loop()  # 8 frames, 16^3 x scales (1, 2), C = 8: a blob circling


@pytest.fixture(scope="module")
def grid(loop):
    return build_bricks(loop)


@pytest.fixture(scope="module")
def renderers(loop, grid):
    return Renderer(loop, 40, 30, bricks=grid), Renderer(loop, 40, 30, backend="planes")


def test_grid_layout(loop, grid):
    # Voxel corners on the finest planes' samples: 32 samples -> 31 cells per axis.
    assert grid.cells == (31, 31, 31)
    assert grid.slot.shape == tuple(math.ceil(31 / grid.brick) for _ in range(3))
    occupied = grid.slot >= 0
    assert occupied.sum() == grid.stats["bricks"] > 0
    assert np.array_equal(occupied, occupied_bricks(loop.occupancy, grid.cells, grid.brick))
    # The blob moves: some bricks move, and not all of them.
    assert 0 < grid.stats["dynamic_bricks"] < grid.stats["bricks"]
    n_slots = int(occupied.sum() + grid.dynamic.sum() * (loop.frames - 1))
    assert grid.log_density.size == n_slots * grid.corners
    assert grid.colour.size == n_slots * grid.corners * grid.rank
    assert grid.log_density.dtype == np.float16 and grid.colour.dtype == np.uint8  # 8-bit code
    assert grid.colour_table.shape == tuple(loop.dir_table.shape[:3]) + (grid.rank + 1,)


def test_corner_values_are_the_field(loop, grid):
    """A moving brick stores the field's log density at each loop frame: check a few
    corners against the reference field."""
    from loopnerf.export.reference_render import query_features

    w = loop.sigma_weight.float()
    b = float(loop.sigma_bias[0]) - 1.0
    B1 = grid.brick + 1
    rng = np.random.default_rng(1)
    bricks = np.argwhere(grid.dynamic > 0)
    for bx, by, bz in bricks[rng.choice(len(bricks), size=3, replace=False)]:
        s = grid.slot[bx, by, bz]
        i, j, l = (int(v) for v in rng.integers(0, B1, size=3))
        corner = (i * B1 + j) * B1 + l
        idx = np.array([bx, by, bz]) * grid.brick + np.array([i, j, l])
        x = torch.tensor([[-1.0 + 2.0 * min(idx[a], grid.cells[a]) / grid.cells[a] for a in range(3)]])
        for frame in (0, 3):
            ref = float(query_features(loop, x, frame / loop.frames)[0] @ w + b)
            got = float(grid.log_density[(s + frame) * grid.corners + corner])
            # stored in float16: the field's value to within one step of that format
            assert abs(got - ref) <= float(np.spacing(np.float16(abs(ref)))), (got, ref)


def test_colour_code_is_exact_at_full_rank():
    rng = torch.Generator().manual_seed(0)
    table = torch.randn(6, 8, 3, 5, generator=rng, dtype=torch.float64)
    feats = torch.randn(200, 5, generator=rng, dtype=torch.float64) * 2 + 1
    encode, mean, ctable, kept = colour_code(table.float(), feats.float(), torch.ones(200), rank=5)
    assert kept == pytest.approx(1.0, abs=1e-9)
    z = (feats.float() - mean) @ encode
    got = torch.einsum("hwck,nk->nhwc", ctable[..., :5].double(), z.double()) + ctable[..., 5].double()
    want = torch.einsum("hwck,nk->nhwc", table, feats)
    assert torch.allclose(got, want, atol=1e-3)
    # A lower rank keeps less, and the most it can.
    *_, kept2 = colour_code(table.float(), feats.float(), torch.ones(200), rank=2)
    assert 0.3 < kept2 < 1.0


def test_eight_bit_code_folds_into_the_table():
    """The stored code q (uint8) decodes through the stored table to the float code's
    logits, within half a step of each coordinate times its weight in G(d)."""
    rng = torch.Generator().manual_seed(4)
    table = torch.randn(5, 7, 3, 4 + 1, generator=rng)
    codes = torch.randn(300, 4, generator=rng) * torch.tensor([3.0, 1.0, 0.2, 5.0])
    lo, step = code_quantisation(codes)
    assert torch.all(lo < codes.amin(0)) and torch.all(lo + 255 * step > codes.amax(0))
    q = ((codes - lo) / step).round().clamp(0, 255)
    stored = quantised_table(table, lo, step)
    got = torch.einsum("hwck,nk->nhwc", stored[..., :4].double(), q.double()) + stored[..., 4].double()
    want = torch.einsum("hwck,nk->nhwc", table[..., :4].double(), codes.double()) + table[..., 4].double()
    bound = 0.5 * (table[..., :4].abs().double() * step.double()).sum(-1) + 1e-5
    assert torch.all((got - want).abs() <= bound)
    assert (got - want).abs().max() > 1e-4  # it is quantised, not exact


def test_march_budget_follows_the_light_left(loop, monkeypatch):
    """With the light-scaled march (`march.light_scaled`) a ray through haze takes
    fewer samples once part of its light is gone, and the image is the image of the
    fixed budget. The test loop in a haze of density ~0.4 per world unit that fills the
    box (most pixels 88 % opaque): 11.2 vs 14.6 samples a ray, 62.8 dB apart."""
    import loopnerf.viewer.renderer as renderer_module

    hazy = dataclasses.replace(loop, sigma_bias=loop.sigma_bias + 9.0, occupancy=torch.ones_like(loop.occupancy),
                               density_max=None)
    grid = build_bricks(hazy)
    scaled = Renderer(hazy, 40, 30, bricks=grid)
    c2w = scaled.default_c2w()
    a, _, opacity = scaled.render_phase_with_opacity(c2w, 0.3)
    n_scaled = scaled.last_samples_per_ray().mean()
    monkeypatch.setattr(renderer_module, "BRICK_LIGHT_FLOOR", 0.0)
    fixed = Renderer(hazy, 40, 30, bricks=grid)
    b, _ = fixed.render_phase(c2w, 0.3)
    n_fixed = fixed.last_samples_per_ray().mean()
    assert opacity.mean() > 0.8
    assert n_scaled < 0.85 * n_fixed, (n_scaled, n_fixed)
    assert psnr(a, b) >= 50.0


@pytest.mark.parametrize("phase", [0.0, 0.25, 0.625])
def test_bricks_match_planes_at_loop_frames(loop, renderers, phase):
    """At the loop's frame samples the bricks hold the exact field at their corners: the
    images agree with the exact backend and the PyTorch reference."""
    bricks, planes = renderers
    c2w = bricks.default_c2w()
    a, da = bricks.render_phase(c2w, phase)
    b, db = planes.render_phase(c2w, phase)
    assert psnr(a, b) >= 40.0
    ref = render_camera(loop, phase=phase, n_samples=512)
    assert psnr(a, ref["rgb"].numpy()) >= 35.0
    hit = ref["acc"].numpy() > 0.99
    assert hit.sum() >= 20
    assert np.abs(da[hit] - ref["depth"].numpy()[hit]).max() < 0.05


def test_bricks_median_depth_matches_planes(loop, renderers):
    bricks, planes = renderers
    c2w = bricks.default_c2w()
    _, da, oa = bricks.render_phase_with_opacity(c2w, 0.25, depth="median")
    _, db, ob = planes.render_phase_with_opacity(c2w, 0.25, depth="median")
    hit = (oa > 0.6) & (ob > 0.6)
    assert hit.sum() >= 20
    assert np.abs(da[hit] - db[hit]).max() < 0.03
    np.testing.assert_allclose(da[oa < 0.5], loop.far)


def test_bricks_between_frames_and_on_an_orbit(loop, renderers):
    """Between two frames a moving brick blends their log densities (the planes blend
    the lines): an approximation, still within 35 dB of the exact backend on an orbit."""
    bricks, planes = renderers
    poses = orbit_path(loop.camera["c2w"], loop.box, loop.up, 8, degrees=40.0)
    intr = bricks.intrinsics_for(36, 28)
    for i in (1, 3, 6):
        a, _ = bricks.render_phase(poses[i], i / 8 + 0.53 / 8, intrinsics=intr)
        b, _ = planes.render_phase(poses[i], i / 8 + 0.53 / 8, intrinsics=intr)
        assert psnr(a, b) >= 35.0


def brick_density(grid, x: np.ndarray, frame: int) -> np.ndarray:
    """The brick grid's density at points x [N, 3] (field coordinates) at a loop frame, as
    the brick kernel evaluates it: the point's own brick, trilinear log density over that
    brick's corners, then exp; 0 where no brick is."""
    B, B1 = grid.brick, grid.brick + 1
    cells = np.asarray(grid.cells, dtype=np.float64)
    u = (x.astype(np.float64) + 1.0) * 0.5 * cells
    b = np.clip(np.floor(u / B).astype(int), 0, np.asarray(grid.slot.shape) - 1)
    local = np.clip(u - b * B, 0.0, B)
    i0 = np.minimum(local.astype(int), B - 1)
    f = local - i0
    logd = np.asarray(grid.log_density, dtype=np.float64).reshape(-1, B1, B1, B1)
    out = np.zeros(len(x))
    for n in range(len(x)):
        s = grid.slot[tuple(b[n])]
        if s < 0:
            continue
        cube = logd[s + grid.dynamic[tuple(b[n])] * frame]
        v = 0.0
        for q in range(8):
            c = [(q >> 2) & 1, (q >> 1) & 1, q & 1]
            w = np.prod([f[n, k] if c[k] else 1.0 - f[n, k] for k in range(3)])
            v += w * cube[i0[n, 0] + c[0], i0[n, 1] + c[1], i0[n, 2] + c[2]]
        out[n] = np.exp(min(v, 80.0))
    return out


def test_bricks_march_with_exact_per_frame_bounds(loop, grid, renderers):
    """The bricks' per-frame density bounds hold the grid's density (what the brick
    kernel evaluates: each point's own brick) at every point of every cell, at the loop
    frames, and are tighter than the file's bound over all phases: fewer samples, same
    image."""
    bounds = grid.frame_density_bounds(tuple(loop.occupancy.shape))
    G = np.array(loop.occupancy.shape)
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, size=(4000, 3))
    cell = np.clip(((x + 1) / 2 * G).astype(int), 0, G - 1)
    for frame in (0, 5):
        dens = brick_density(grid, x, frame)
        assert (dens > 1e-3).mean() > 0.05  # the points do meet the scene
        b = bounds[frame][tuple(cell.T)]
        assert np.all(dens <= b * 1.001 + 1e-6)
    assert (bounds.max(0) <= loop.density_max.float().numpy() * 1.01 + 1e-6).mean() > 0.99
    bricks, planes = renderers
    c2w = bricks.default_c2w()
    a, _ = bricks.render_phase(c2w, 0.1)
    b_img, _ = planes.render_phase(c2w, 0.1)
    assert bricks.last_samples_per_ray().mean() < planes.last_samples_per_ray().mean()
    assert psnr(a, b_img) >= 40.0


def test_frame_pair_bounds_on_the_device_or_uploaded_per_frame(loop, grid, renderers, monkeypatch):
    """The pyramids of every frame pair kept on the device (the default) draw what the
    per-frame upload of the pair's bounds draws (the path of loops whose pyramids are
    over `FRAME_PAIR_BOUNDS_MAX_BYTES`), at phases across the wrap."""
    from loopnerf.viewer import renderer as renderer_module

    bricks, _ = renderers
    c2w = bricks.default_c2w()
    bricks.render_phase(c2w, 0.0)
    assert "pair_mips" in bricks._gpu
    monkeypatch.setattr(renderer_module, "FRAME_PAIR_BOUNDS_MAX_BYTES", 0)
    uploaded = Renderer(loop, 40, 30, bricks=grid)
    for phase in (0.1, 0.43, 0.97):
        a, da = bricks.render_phase(c2w, phase)
        b, db = uploaded.render_phase(c2w, phase)
        assert "pair_mips" not in uploaded._gpu
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(da, db)
        assert bricks.last_samples_per_ray().mean() == uploaded.last_samples_per_ray().mean()


def test_unknown_backend_is_an_error(loop):
    with pytest.raises(ValueError, match="backend"):
        Renderer(loop, 8, 8, backend="voxels")


def test_auto_backend_falls_back_to_planes_over_budget(loop, monkeypatch):
    from loopnerf.viewer import bricks as bricks_module

    assert Renderer(loop, 8, 8).backend == "bricks"  # fits the default budget
    monkeypatch.setattr(bricks_module, "MAX_MEGABYTES", 0.01)
    r = Renderer(loop, 8, 8)
    assert r.backend == "planes" and "budget" in r.backend_reason
    rgb, _ = r.render_phase(r.default_c2w(), 0.2)  # and it renders
    assert rgb.shape == (8, 8, 3)
    with pytest.raises(bricks_module.BrickBudgetError, match="MB"):
        build_bricks(loop, max_megabytes=0.01)


def test_visibility_culling_keeps_what_was_seen(loop):
    """Cull with views from one side: the cells those cameras weigh stay (their images
    do not change), the others are emptied, and the header records it."""
    baked = dataclasses.replace(loop, occupancy=loop.occupancy.clone(), extra={})
    home = np.asarray(loop.camera["c2w"])
    poses = orbit_path(home, loop.box, loop.up, 6, degrees=20.0)
    k = Intrinsics(**{key: loop.camera[key] for key in ("fx", "fy", "cx", "cy", "width", "height")})
    views = culling_views(np.stack(poses), [k] * len(poses), loop.frames)
    assert [v[1] for v in views] == [i % loop.frames / loop.frames for i in range(6)]
    before = Renderer(loop, 40, 30, backend="planes")
    rec = cull_invisible(baked, views, min_weight=0.005, dilate=1)
    assert rec["views"] == 6 and rec["occupied_after"] < rec["occupied_before"]
    assert baked.extra["culling"]["min_weight"] == 0.005
    assert not (baked.occupancy.bool() & ~loop.occupancy.bool()).any()  # only removes
    after = Renderer(baked, 40, 30, backend="planes")
    for i, c2w in enumerate(poses):
        a, _ = before.render_phase(c2w, views[i][1])
        b, _ = after.render_phase(c2w, views[i][1])
        assert psnr(a, b) >= 40.0


def test_culling_views_drop_a_still_camera_seen_again_at_a_known_phase(loop):
    """A still stretch (the same pose up to hand-held shake) seen twice at each phase
    gives one culling view per phase; a camera that moved, or a new phase, stays; the
    dropped frames' visibility is what the kept ones record (within the dilation)."""
    from loopnerf.export.visibility import pose_shift

    home = np.asarray(loop.camera["c2w"], dtype=np.float64)
    k = Intrinsics(**{key: loop.camera[key] for key in ("fx", "fy", "cx", "cy", "width", "height")})
    rng = np.random.default_rng(0)
    f = loop.frames
    cell = float(np.min((np.asarray(loop.box[1]) - np.asarray(loop.box[0])) / np.asarray(loop.occupancy_resolution)))
    shaken = []
    for _ in range(2 * f):  # two cycles of phases, shake well under a cell
        q = home.copy()
        q[:3, 3] += rng.normal(scale=1e-3 * cell, size=3)
        shaken.append(q)
    moved = orbit_path(home, loop.box, loop.up, 2, degrees=20.0)[1]
    poses = np.stack(shaken + [moved])
    every = culling_views(poses, [k] * len(poses), f)
    assert len(every) == 2 * f + 1  # without a box: every frame
    kept = culling_views(poses, [k] * len(poses), f, box=loop.box, cells=loop.occupancy_resolution)
    assert len(kept) == f + 1
    assert sorted(v[1] for v in kept[:f]) == [i / f for i in range(f)]
    assert np.allclose(kept[-1][0], moved)
    # the bound holds: no point of the box moves further in camera coordinates
    lo, hi = (np.asarray(c, dtype=np.float64) for c in loop.box)
    centre, radius = 0.5 * (lo + hi), 0.5 * float(np.linalg.norm(hi - lo))
    pts = rng.uniform(lo, hi, size=(200, 3))
    for a, b in ((shaken[0], moved), (shaken[0], shaken[1])):
        cam = lambda pose: (pts - pose[:3, 3]) @ pose[:3, :3]  # noqa: E731  world -> camera
        assert np.linalg.norm(cam(a) - cam(b), axis=1).max() <= pose_shift(a, b, centre, radius) + 1e-12
    assert pose_shift(shaken[0], moved, centre, radius) > cell
    vis_all = Renderer(loop, 2, 2, backend="planes").record_visibility(every)
    vis_kept = Renderer(loop, 2, 2, backend="planes").record_visibility(kept)
    seen_all, seen_kept = torch.as_tensor(vis_all > 0.005), torch.as_tensor(vis_kept > 0.005)
    assert seen_all.any()
    near_kept = torch.nn.functional.max_pool3d(seen_kept.float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    assert not (seen_all & ~near_kept).any()  # what culling keeps (dilated by a cell) is unchanged


def test_visibility_floor_stops_rays_and_keeps_every_weight_over_it(loop):
    """Recording visibility for a culling threshold, rays stop once their transmittance
    is under it: every cell that weighs more than the floor keeps exactly its weight
    (the culling is unchanged), the others at most theirs, and the rays take fewer
    samples (a denser loop, so rays run out of light)."""
    dense = dataclasses.replace(loop, sigma_bias=loop.sigma_bias + 3.0)
    home = np.asarray(loop.camera["c2w"])
    k = Intrinsics(**{key: loop.camera[key] for key in ("fx", "fy", "cx", "cy", "width", "height")})
    views = [(c2w, i / loop.frames, k) for i, c2w in enumerate(orbit_path(home, loop.box, loop.up, 3, degrees=20.0))]
    floor = 0.005
    r = Renderer(dense, 2, 2, backend="planes")
    exact = r.record_visibility(views)
    exact_samples = int(r.last_samples_per_ray().sum())
    fast = r.record_visibility(views, floor=floor)
    fast_samples = int(r.last_samples_per_ray().sum())
    over = exact > floor
    assert over.any() and (exact[~over] > 0).any()
    np.testing.assert_array_equal(fast[over], exact[over])
    assert (fast <= exact).all() and not (fast[~over] > floor).any()
    assert fast_samples < exact_samples, (fast_samples, exact_samples)


def test_visibility_grid_is_zero_where_no_ray_goes(loop):
    # A camera looking away from the box sees nothing: every cell invisible.
    c2w = np.asarray(loop.camera["c2w"], dtype=np.float32).copy()
    c2w[:3, 2] *= -1.0  # look down +Z (away from the box)
    c2w[:3, 0] *= -1.0
    k = Intrinsics(20.0, 20.0, 10.0, 10.0, 20, 20)
    vis = Renderer(loop, 2, 2, backend="planes").record_visibility([(c2w, 0.0, k)])
    assert vis.shape == tuple(loop.occupancy.shape) and float(vis.max()) == 0.0
    # And the default camera weighs some cells, with weights in (0, 1].
    vis = Renderer(loop, 2, 2, backend="planes").record_visibility([(loop.camera["c2w"], 0.0, k)])
    assert 0.0 < float(vis.max()) <= 1.0


def test_culling_header_round_trip_and_validation(tmp_path, loop):
    baked = dataclasses.replace(loop, extra={"culling": {"min_weight": 0.005, "dilate": 1, "views": 3,
                                                         "occupied_before": 0.5, "occupied_after": 0.25}})
    path = save_loop(tmp_path / "a.loop", baked)
    assert load_loop(path).extra["culling"]["views"] == 3
    for bad in ({"min_weight": -1, "dilate": 1, "views": 3, "occupied_before": 0.5, "occupied_after": 0.2},
                {"min_weight": 0.1, "dilate": 1.5, "views": 3, "occupied_before": 0.5, "occupied_after": 0.2},
                {"min_weight": 0.1, "dilate": 1, "views": 3, "occupied_before": 2.0, "occupied_after": 0.2},
                "yes"):
        with pytest.raises(LoopFormatError, match="culling"):
            save_loop(tmp_path / "b.loop", dataclasses.replace(loop, extra={"culling": bad}))


def test_bricks_loop_is_seamless(renderers):
    bricks, _ = renderers
    c2w = bricks.default_c2w()
    first, _ = bricks.render_phase(c2w, 0.0)
    wrapped, _ = bricks.render_phase(c2w, 1.0)
    assert np.array_equal(first, wrapped)
    n = 16
    frames = [bricks.render_phase(c2w, k / n)[0].astype(np.float64) for k in range(n + 1)]
    steps = [np.abs(frames[k + 1] - frames[k]).mean() for k in range(n)]
    assert steps[-1] <= 1.5 * max(steps[:-1])  # the wrap (frame n-1 -> n = 0) is no jump
    assert max(steps) > 0.5  # and the loop moves
