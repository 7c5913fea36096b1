"""The reference renderer of baked loops and the bake: known answers, periodicity,
occupancy that never drops density, and the bake fidelity figure (>= 40 dB)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from loopnerf.export import load_loop, save_loop
from loopnerf.export.bake import bake_loop, direction_grid
from fixtures.demo_loop import demo_loop_camera, demo_loop_ingredients
from loopnerf.export.reference_render import (
    loop_slice,
    lookup_direction_table,
    normalized_to_world,
    occupied,
    query_color,
    query_density,
    query_features,
    render_camera,
    render_rays,
    world_to_normalized,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def ingredients():
    return demo_loop_ingredients(frames=8, resolution=16, features=6, scales=(1, 2), seed=0)


@pytest.fixture(scope="module")
def baked(ingredients, tmp_path_factory):
    b = bake_loop(**ingredients, occupancy_resolution=16, direction_table=(16, 32))
    path = save_loop(tmp_path_factory.mktemp("bake") / "scene.loop", b)
    return load_loop(path)  # everything below uses what a reader of the file sees


def _psnr(a, b, mask=None):
    err = (a - b) ** 2
    mse = err[mask].mean() if mask is not None else err.mean()
    return -10.0 * math.log10(max(float(mse), 1e-20))


def test_loop_slice_is_periodic_and_hits_samples():
    g = torch.Generator().manual_seed(0)
    plane = torch.rand(5, 7, 3, generator=g)
    for k in range(5):
        assert torch.allclose(loop_slice(plane, k / 5), plane[k])
    assert torch.allclose(loop_slice(plane, 1.0), plane[0])
    assert torch.allclose(loop_slice(plane, 0.9), 0.5 * (plane[4] + plane[0]), atol=1e-6)
    assert torch.allclose(loop_slice(plane, -0.1), loop_slice(plane, 0.9), atol=1e-6)


def test_features_are_the_plane_product(baked):
    # At a plane node and a loop sample the feature is the product of stored values.
    s, C = 0, baked.features
    rx, ry, rz = baked.scale_resolution(s)
    ix, iy, iz, k = 3, 11, 6, 2
    x = torch.tensor([[2 * ix / (rx - 1) - 1, 2 * iy / (ry - 1) - 1, 2 * iz / (rz - 1) - 1]])
    xy, xz, yz = (p.float() for p in baked.static_planes[s])
    xt, yt, zt = (p.float() for p in baked.loop_planes[s])
    expect = xy[iy, ix] * xz[iz, ix] * yz[iz, iy] * xt[k, ix] * yt[k, iy] * zt[k, iz]
    got = query_features(baked, x, k / baked.frames)[0, s * C : (s + 1) * C]
    assert torch.allclose(got, expect, rtol=1e-5, atol=1e-6)
    dens = query_density(baked, x, k / baked.frames)
    logit = query_features(baked, x, k / baked.frames) @ baked.sigma_weight + baked.sigma_bias - 1
    assert torch.allclose(dens, torch.exp(logit), rtol=1e-5)


def test_direction_table_exact_at_nodes_and_close_between(ingredients, baked):
    grid = direction_grid(16, 32).reshape(-1, 3)
    exact = ingredients["direction_basis"](grid)
    assert torch.allclose(lookup_direction_table(baked.dir_table, grid), exact, atol=1e-5)
    g = torch.Generator().manual_seed(1)
    d = torch.randn(500, 3, generator=g)
    d = d / d.norm(dim=-1, keepdim=True)
    err = (lookup_direction_table(baked.dir_table, d) - ingredients["direction_basis"](d)).abs().max()
    assert float(err) < 0.05  # bilinear on a 16 x 32 grid of a smooth basis


def test_world_normalized_round_trip(baked):
    box = baked.box_tensor()
    assert torch.allclose(world_to_normalized(baked, box), torch.tensor([[-1.0] * 3, [1.0] * 3]))
    x = torch.rand(10, 3) * 2 - 1
    assert torch.allclose(world_to_normalized(baked, normalized_to_world(baked, x)), x, atol=1e-6)


def test_occupancy_covers_density_at_every_phase(baked):
    g = torch.Generator().manual_seed(2)
    x = torch.rand(20000, 3, generator=g) * 2 - 1
    covered = 0
    for phase in torch.rand(6, generator=g).tolist() + [0.0, 0.5]:
        dense = query_density(baked, x, phase) > baked.density_threshold
        assert bool(occupied(baked, x[dense]).all()), f"phase {phase}: a dense point in an empty cell"
        covered += int(dense.sum())
    assert covered > 100  # the test is not vacuous
    frac = float(baked.occupancy.float().mean())
    assert 0.02 < frac < 0.6, frac  # and the grid does skip space


def test_ray_missing_the_box_shows_background(baked):
    o = torch.tensor([[0.0, 5.0, 0.0]])
    d = torch.tensor([[0.0, 1.0, 0.0]])  # pointing away from the box
    out = render_rays(baked, o, d, 0.0, n_samples=16)
    assert float(out["acc"][0]) == 0.0
    assert torch.allclose(out["rgb"][0], torch.tensor(baked.background))
    assert float(out["depth"][0]) == pytest.approx(baked.far)


def test_ray_through_blob_is_opaque_and_coloured(baked):
    # The blob centre is at normalised (0, 0.15, 0) at phase 0 (red channel) and
    # (0, -0.15, 0) at phase 1/2 (blue channel).
    for phase, centre_y, colour in ((0.0, 0.15, 0), (0.5, -0.15, 2)):
        centre = normalized_to_world(baked, torch.tensor([[0.0, centre_y, 0.0]]))
        o = centre + torch.tensor([[0.0, 0.0, 3.0]])
        d = torch.tensor([[0.0, 0.0, -1.0]])
        out = render_rays(baked, o, d, phase, n_samples=128)
        assert float(out["acc"][0]) > 0.99
        rgb = out["rgb"][0]
        assert int(rgb.argmax()) == colour, rgb
        # the surface is in front of the centre (3 units away), behind the box face (2 away)
        assert 2.0 < float(out["depth"][0]) < 3.0


def test_render_is_periodic(baked):
    a = render_camera(baked, phase=0.0, n_samples=48)["rgb"]
    b = render_camera(baked, phase=1.0, n_samples=48)["rgb"]
    c = render_camera(baked, phase=0.5, n_samples=48)["rgb"]
    assert torch.allclose(a, b, atol=1e-6)
    assert float((a - c).abs().max()) > 0.3


def test_camera_rays_of_the_header_camera_follow_opengl_convention():
    from loopnerf.data.rays import camera_rays

    cam = demo_loop_camera(width=4, height=2)
    o, d = (r.reshape(-1, 3) for r in camera_rays(cam["c2w"], cam))
    c2w = torch.tensor(cam["c2w"], dtype=torch.float32)
    forward = -c2w[:3, 2]
    mean = d.mean(dim=0)
    assert torch.allclose(mean / mean.norm(), forward, atol=1e-5)  # symmetric pixels average to -Z
    right = c2w[:3, 0]
    assert float(d[3] @ right) > 0 > float(d[0] @ right)  # column 3 is right of column 0
    up = c2w[:3, 1]
    assert float(d[0] @ up) > 0 > float(d[4] @ up)  # row 0 is the top row
    assert torch.allclose(o, c2w[:3, 3].expand(8, 3))


def test_query_color_is_sigmoid_of_basis(baked, ingredients):
    x = torch.tensor([[0.1, 0.1, 0.0]])
    d = torch.tensor([[0.0, 0.0, -1.0]])
    f = query_features(baked, x, 0.25)
    basis = lookup_direction_table(baked.dir_table, d)
    assert torch.allclose(query_color(baked, x, d, 0.25), torch.sigmoid(basis[0] @ f[0])[None], atol=1e-6)


def test_bake_fidelity_against_float32_planes(baked, ingredients):
    """Baked file (fp16 planes, direction table, occupancy skipping) vs the float32
    planes with the exact direction basis and no skipping: PSNR >= 40 dB, also over
    the foreground pixels alone (the background is trivially exact)."""
    unbaked = dataclasses.replace(
        baked,
        static_planes=ingredients["static_planes"],
        loop_planes=ingredients["loop_planes"],
        occupancy=torch.ones_like(baked.occupancy),
    )
    cam = dict(baked.camera)
    cam.update(width=32, height=24, fx=cam["fx"] * 0.8, fy=cam["fy"] * 0.8, cx=16, cy=12)
    figures = []
    for phase in (0.0, 0.3, 0.55):
        a = render_camera(baked, intrinsics=cam, phase=phase, n_samples=96)
        b = render_camera(unbaked, intrinsics=cam, phase=phase, n_samples=96, use_occupancy=False, basis_fn=ingredients["direction_basis"])
        fg = b["acc"] > 0.05
        assert int(fg.sum()) > 20
        figures.append((_psnr(a["rgb"], b["rgb"]), _psnr(a["rgb"], b["rgb"], fg)))
    print("bake fidelity PSNR (all, foreground):", [(round(p, 1), round(q, 1)) for p, q in figures])
    assert min(p for p, _ in figures) >= 40.0
    assert min(q for _, q in figures) >= 40.0


def test_bake_fidelity_with_the_linear_decoder_basis(ingredients):
    """The stage-1 `linear` decoder's SH-MLP basis (random, amplified to give strong
    view dependence) tabulated at the default 32 x 64: what the table costs."""
    from loopnerf.fields.decoders import LinearDecoder

    torch.manual_seed(0)
    dec = LinearDecoder(ingredients["sigma_weight"].numel())
    with torch.no_grad():
        dec.basis[-1].weight.mul_(8.0)
        parts = {**ingredients, "direction_basis": dec.direction_basis}
        baked = bake_loop(**parts, occupancy_resolution=16, direction_table=(32, 64))
        unbaked = dataclasses.replace(
            baked, static_planes=ingredients["static_planes"], loop_planes=ingredients["loop_planes"]
        )
        a = render_camera(baked, phase=0.4, n_samples=64)
        b = render_camera(unbaked, phase=0.4, n_samples=64, use_occupancy=False, basis_fn=dec.direction_basis)
    fg = b["acc"] > 0.05
    assert float(b["rgb"][fg].std(dim=0).min()) > 0.05  # colours do vary: not a vacuous comparison
    psnr_fg = _psnr(a["rgb"], b["rgb"], fg)
    print(f"direction table 32x64 + fp16, linear decoder basis: foreground PSNR {psnr_fg:.1f} dB")
    assert psnr_fg >= 40.0


def test_lattice_evaluation_matches_point_queries(baked):
    """The factored lattice evaluation (occupancy, surfaces) equals query_density."""
    from loopnerf.export.surface import density_grids, grid_nodes

    nodes = torch.from_numpy(grid_nodes(13).reshape(-1, 3))
    phases = [0.0, 0.37, 0.9]
    grids = density_grids(baked, phases, 13)
    for p, grid in zip(phases, grids):
        ref = query_density(baked, nodes, p).reshape(13, 13, 13)
        assert torch.allclose(torch.from_numpy(grid), ref, rtol=1e-4, atol=1e-6 * float(ref.max()))


def test_density_bound_holds_at_every_phase(baked):
    """The viewer sizes its steps with `density_max`: it must bound the density at any
    point and phase of its cell (up to float16 rounding of the bound)."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(20000, 3, generator=g) * 2 - 1
    G = torch.tensor(baked.occupancy_resolution)
    cell = ((x + 1) * 0.5 * G).long().clamp(torch.zeros(3, dtype=torch.long), G - 1)
    bound = baked.density_max.float()[cell[:, 0], cell[:, 1], cell[:, 2]]
    worst = 0.0
    for phase in torch.rand(6, generator=g).tolist() + [0.0, 0.5]:
        density = query_density(baked, x, phase).reshape(-1)
        assert bool((density <= bound * 1.002 + 1e-6).all()), f"phase {phase}: density above its cell's bound"
        worst = max(worst, float((density / bound.clamp_min(1e-6)).max()))
    assert worst > 0.3  # the bound is not vacuously loose everywhere
