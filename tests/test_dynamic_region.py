"""The dynamic region: estimated from the capture, exact split of the field and the loop
model (static part outside, gradients only where it acts), and carried through the bake."""

from __future__ import annotations

import numpy as np

from fixtures.bounded import bounded
import pytest

torch = pytest.importorskip("torch")

from loopnerf.data.capture import Capture
from loopnerf.fields.dynamic_region import DynamicRegion, split_by_region
from loopnerf.fields.field import FieldConfig, KPlanesField
from loopnerf.model.motion_mask import MotionMaskOptions, estimate_motion_mask, moving_pixels, uncontract
from loopnerf.synth.command import SynthConfig, make_synthetic_capture


SYNTH = SynthConfig(frames=60, size=32, supersample=1, seed=0)


@pytest.fixture(scope="module")
def synth():
    return make_synthetic_capture(SYNTH)


def _moving_vertex_voxels(cap, g: int) -> np.ndarray:
    """[M, 3] voxel indices (grid g^3) of the moving parts' vertices, at every frame, of the
    vertices that move by more than 2 voxels over the capture (a flag's edge at its pole
    barely moves: there a static field is right)."""
    scene = SYNTH.make_scene()
    box = cap.scene_box()
    xs = np.stack([np.concatenate([p.vertices for p in scene.moving_parts(f)]) for f in range(len(cap))])
    xs = (xs - (box[0] + box[1]) / 2) / ((box[1] - box[0]) / 2)
    moves = np.linalg.norm(xs - xs.mean(0), axis=-1).max(0) > 2 * 2 / g
    return np.clip(((xs[:, moves].reshape(-1, 3) + 1) * g / 2).astype(int), 0, g - 1)


def test_motion_mask_holds_the_moving_parts_and_little_else(synth):
    cap, _ = synth
    mask = estimate_motion_mask(cap, cap.scene_box(), 64)
    assert not mask.reason and len(mask.stretches) == 3
    idx = _moving_vertex_voxels(cap, 64)
    covered = mask.grid[idx[:, 0], idx[:, 1], idx[:, 2]].mean()
    assert covered >= 0.9, covered  # 3 stills of 10-13 frames at 32 px
    assert mask.fraction <= 0.25, mask.fraction  # the flag's neighbourhood (and its shadow), not the box
    # every frame of a still stretch has that stretch's moving pixels (what the ray focus draws from)
    order = np.argsort(cap.times, kind="stable")
    for (start, stop), share in zip(mask.stretches, mask.moving_pixels):
        frames = [int(f) for f in order[start:stop]]
        assert all(f in mask.still_pixels for f in frames)
        m = mask.still_pixels[frames[0]]
        assert m.shape == cap.images.shape[1:3] and m.mean() == pytest.approx(share)
    assert len(mask.still_pixels) == sum(b - a for a, b in mask.stretches)


def test_moving_pixels_ignore_noise_and_thin_flicker():
    rng = np.random.default_rng(0)
    frames = np.full((20, 24, 24, 3), 0.5, np.float32) + rng.normal(0, 0.005, (20, 24, 24, 1)).astype(np.float32)
    frames[:, :, 3] += 0.3 * np.sin(np.arange(20))[:, None, None]  # a one-pixel column flickering (an edge)
    frames[:, 8:16, 10:18] += 0.3 * np.sin(np.arange(20) * 0.7)[:, None, None, None]  # an 8x8 moving blob
    m = moving_pixels(frames, MotionMaskOptions(dilate_px=0))
    assert m[8:16, 10:18].all()
    assert not m[:, :6].any()  # the flickering column is gone
    assert m.sum() == 64


def test_no_still_stretch_means_everywhere():
    n = 30
    ang = np.linspace(0, np.pi, n)
    c2w = np.tile(np.eye(4), (n, 1, 1))
    c2w[:, 0, 3], c2w[:, 2, 3] = 3 * np.sin(ang), 3 * np.cos(ang)  # the camera never rests
    from loopnerf.data.capture import Intrinsics

    cap = Capture(images=np.zeros((n, 8, 8, 3), np.uint8), c2w=c2w, intrinsics=[Intrinsics(8, 8, 4, 4, 8, 8)] * n,
                  times=np.linspace(0, 1, n), box=np.array([[-1, -1, -1], [1, 1, 1.0]]))
    mask = estimate_motion_mask(cap, cap.scene_box(), 8)
    assert mask.grid.all() and "never rests" in mask.reason and "everywhere" in mask.describe()


def test_uncontract_inverts_contract():
    from loopnerf.fields.field import contract

    x = torch.tensor([[0.3, -0.2, 0.9], [3.0, 0.5, -1.0], [-10.0, 2.0, 4.0]], dtype=torch.float64)
    np.testing.assert_allclose(uncontract(contract(x).numpy()), x.numpy(), rtol=1e-9)


def _half_region(g: int = 8) -> DynamicRegion:
    r = DynamicRegion(g)
    grid = torch.zeros(g, g, g, dtype=torch.uint8)
    grid[: g // 2] = 1  # x < 0
    r.set(grid)
    return r


@pytest.mark.parametrize("backend", ["taichi", "torch"])
def test_field_is_its_static_part_outside_the_region(backend):
    torch.manual_seed(0)
    field = KPlanesField(FieldConfig(resolution=(6, 6, 6, 5), multiscale=(1, 2), features=4), backend=backend).double()
    for p in field.grid.space_time_planes():
        p.data.uniform_(0.5, 1.5)
    region = _half_region()
    x = (torch.rand(7, 5, 3, dtype=torch.float64) * 2 - 1)
    t = torch.rand(7, dtype=torch.float64)
    f = field.features(x, t, region=region)
    full, static = field.features(x, t), field.features(x, t, static=True)
    inside = (x[..., 0] < 0)[..., None]
    assert inside.any() and (~inside).any()
    torch.testing.assert_close(f, torch.where(inside, full, static))
    # gradients: the time planes hear only the points inside, the space planes every point
    w = torch.randn_like(f)
    grads = torch.autograd.grad((f * w).sum(), list(field.grid.planes))
    want = torch.autograd.grad((torch.where(inside, full, static) * w).sum(), list(field.grid.planes))
    for a, b in zip(grads, want):
        torch.testing.assert_close(a, b)
    outside_only = torch.autograd.grad((field.features(x, t, region=region) * (~inside)).sum(), field.grid.space_time_planes())
    assert all(float(g.abs().max()) == 0.0 for g in outside_only)


def test_split_by_region_with_one_side_empty():
    region = _half_region()
    x = torch.full((4, 3), 0.5)  # all outside

    def dyn(idx):
        raise AssertionError("no point is inside")

    out = split_by_region(region, x, dyn, lambda idx: torch.ones(4, 2))
    assert out.shape == (4, 2)
    assert split_by_region(None, x, lambda idx: torch.zeros(4, 2), dyn).shape == (4, 2)


def test_loop_model_outside_the_region_is_stage1_static_and_phases_agree():
    from loopnerf.distill.loop_model import LoopModel
    from loopnerf.model.config import preset, resolve_time_resolution
    from loopnerf.model.kplanes_model import KPlanesModel

    full = preset("tiny")
    full.model.field = FieldConfig(resolution=(8, 8, 8, 0), multiscale=(1, 2), features=4)
    cfg = resolve_time_resolution(full, 6).model
    stage1 = KPlanesModel(bounded(cfg), np.array([[-1, -1, -1], [1, 1, 1.0]]), seed=0)
    for p in stage1.field.grid.space_time_planes():
        p.data.uniform_(0.5, 1.5)
    stage1.dynamic_region = _half_region(stage1.dynamic_region.resolution)
    loop = LoopModel(stage1, 4)
    for p in loop.field.loop_planes:
        p.data.uniform_(0.5, 1.5)
    x = torch.rand(6, 5, 3) * 2 - 1
    phase = torch.full((6,), 0.25)
    f = loop.field.features(x, phase, region=loop.dynamic_region)
    outside = (x[..., 0] >= 0)[..., None]
    torch.testing.assert_close(torch.where(outside, f, 0 * f), torch.where(outside, stage1.field.features(x, phase, static=True), 0 * f))
    # render_phases (one fused pass over all phases) against render_samples phase by phase
    o = torch.tensor([[0.0, 0.0, 3.0]]).repeat(6, 1) + torch.randn(6, 3) * 0.1
    d = torch.nn.functional.normalize(torch.tensor([[0.0, 0.0, -1.0]]) + torch.randn(6, 3) * 0.2, dim=-1)
    smp = loop.sample_along_rays(o, d, torch.zeros(6))
    phases = torch.arange(4, dtype=torch.float32) / 4
    fused = loop.render_phases(o, d, smp["t_edges"], smp["hit"], phases)["rgb"]
    for k in range(4):
        one = loop.render_samples(o, d, phases[k].expand(6), smp["t_edges"], smp["hit"])["rgb"]
        torch.testing.assert_close(fused[k], one, atol=1e-5, rtol=1e-4)


def test_old_checkpoint_without_region_loads_as_everywhere(tmp_path):
    from safetensors.torch import save_file

    from loopnerf.model.checkpoint import load_checkpoint
    from loopnerf.model.config import preset, resolve_time_resolution
    from loopnerf.model.kplanes_model import KPlanesModel

    model = KPlanesModel(bounded(resolve_time_resolution(preset("tiny"), 5).model), np.array([[-1, -1, -1], [1, 1, 1.0]]))
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items() if not k.endswith("dynamic_region.grid")}
    save_file(state, str(tmp_path / "old.safetensors"))
    fresh = KPlanesModel(bounded(resolve_time_resolution(preset("tiny"), 5).model), np.array([[-1, -1, -1], [1, 1, 1.0]]))
    fresh.dynamic_region.set(torch.zeros_like(fresh.dynamic_region.grid))
    load_checkpoint(tmp_path / "old.safetensors", fresh)
    assert fresh.dynamic_region.everywhere


# ------------------------------------------------------------ the baked loop and the viewer
@pytest.fixture(scope="module")
def region_loop():
    from fixtures.demo_loop import make_test_loop

    return make_test_loop(dynamic_region=True)  # loop planes act where x < 1/6 only


def _psnr(a, b) -> float:
    a = np.asarray(a, np.float64) / (255.0 if np.asarray(a).dtype == np.uint8 else 1.0)
    b = np.asarray(b, np.float64) / (255.0 if np.asarray(b).dtype == np.uint8 else 1.0)
    return -10.0 * np.log10(max(float(np.mean((a - b) ** 2)), 1e-12))


def test_region_round_trips_and_bad_regions_are_rejected(region_loop, tmp_path):
    from safetensors.torch import load_file, save_file

    from loopnerf.export.loop_format import LoopFormatError, load_loop, read_loop_header, save_loop

    path = save_loop(tmp_path / "r.loop", region_loop)
    back = load_loop(path)
    assert torch.equal(back.dynamic_region, region_loop.dynamic_region)
    assert "dynamic region [12, 12, 12] grid, 58.3% of the box" in back.summary()
    header = read_loop_header(path)
    tensors = load_file(str(path))
    import json

    for bad, message in [
        (torch.full((12, 12, 12), 2, dtype=torch.uint8), "only 0 and 1"),
        (torch.ones(12, 12, 11, dtype=torch.uint8), "'dynamic_region' has shape"),
        (torch.ones(12, 12, 12, dtype=torch.float16), "'dynamic_region' has dtype"),
    ]:
        t = dict(tensors, dynamic_region=bad)
        save_file(t, str(tmp_path / "bad.loop"), metadata={"loopnerf": json.dumps(header)})
        with pytest.raises(LoopFormatError, match=message):
            load_loop(tmp_path / "bad.loop")


def test_viewer_and_reference_agree_and_outside_is_still(region_loop):
    from loopnerf.export.reference_render import query_features, render_camera
    from loopnerf.viewer.renderer import Renderer

    # the reference: outside the region the loop planes read as ones, at every phase
    x = torch.tensor([[0.6, 0.1, 0.0], [-0.5, 0.1, 0.0]])
    f0, f1 = query_features(region_loop, x, 0.0), query_features(region_loop, x, 0.5)
    torch.testing.assert_close(f0[0], f1[0])
    assert float((f0[1] - f1[1]).abs().max()) > 1e-2
    planes = Renderer(region_loop, 40, 30, backend="planes")
    bricks = Renderer(region_loop, 40, 30, backend="bricks")
    for phase in (0.0, 0.375):
        ref = render_camera(region_loop, phase=phase, n_samples=512)["rgb"].numpy()
        p, _ = planes.render_phase(planes.default_c2w(), phase)
        b, _ = bricks.render_phase(bricks.default_c2w(), phase)
        assert _psnr(p, ref) >= 35.0
        # the bricks interpolate trilinearly across the region's border, where this test
        # loop steps from a blob to a slab (31.7 dB here; on the demo loop 36.8-37.4 dB
        # against the exact integral, benchmarks/viewer.py)
        assert _psnr(b, p) >= 30.0
    # a region changes the picture (the static slab shows where x >= 1/6)
    from fixtures.demo_loop import make_test_loop

    plain = render_camera(make_test_loop(), phase=0.0, n_samples=256)["rgb"].numpy()
    assert _psnr(plain, render_camera(region_loop, phase=0.0, n_samples=256)["rgb"].numpy()) < 25.0


def test_bricks_outside_the_region_are_stored_once(region_loop):
    from loopnerf.viewer.bricks import build_bricks

    grid = build_bricks(region_loop)
    B = grid.brick
    # brick bx spans corners bx * B .. (bx + 1) * B at x = -1 + 2 i / N: outside x < 1/6 when
    # its first corner is past the region's last voxel (x >= 1/6)
    first_x = -1.0 + 2.0 * (np.arange(grid.slot.shape[0]) * B) / grid.cells[0]
    outside = first_x >= 1.0 / 6.0
    assert outside.any() and (grid.slot[outside] >= 0).any()
    assert not grid.dynamic[outside].any()
    assert grid.dynamic[~outside].any()  # the blob's bricks inside move


def test_render_video_matches_render_image_at_every_time():
    """`render_video` renders the rays that never sample the dynamic region once: the
    frames must equal `render_image` at each time, and the moving half must move."""
    from loopnerf.data.capture import Intrinsics
    from loopnerf.model.config import preset, resolve_time_resolution
    from loopnerf.model.kplanes_model import KPlanesModel
    from loopnerf.model.render_image import render_image, render_video

    full = preset("tiny")
    cfg = resolve_time_resolution(full, 6).model
    model = KPlanesModel(bounded(cfg), np.array([[-1, -1, -1], [1, 1, 1.0]]), seed=0)
    g = torch.Generator().manual_seed(3)
    for p in model.field.grid.space_time_planes():
        p.data.copy_(torch.rand(p.shape, generator=g) + 0.5)
    for prop in model.proposals:
        for p in prop.grid.space_time_planes():
            p.data.copy_(torch.rand(p.shape, generator=g) + 0.5)
    model.dynamic_region = _half_region(model.dynamic_region.resolution)
    c2w = np.eye(4)
    c2w[2, 3] = 3.0  # looking down -z at the box, the dynamic half (x < 0) on the left
    intr = Intrinsics(fx=20.0, fy=20.0, cx=12.0, cy=10.0, width=24, height=20)
    times = [0.1, 0.45, 0.8]
    video = render_video(model, c2w, intr, times, chunk=100)
    single = np.stack([render_image(model, c2w, intr, t)["rgb"] for t in times])
    np.testing.assert_allclose(video, single, atol=1e-6, rtol=0)
    change = np.abs(single[1:] - single[:1]).max(axis=(0, 3))
    assert change[:, :8].max() > 1e-3  # the dynamic half moves (untrained planes: faintly)
    assert change[:, -4:].max() == 0.0  # rays that only cross the static half do not


def test_lattice_blocks_are_the_field_inside_outside_and_across_the_border(region_loop):
    """The brick build evaluates whole bricks from per-axis-pair tables, a brick wholly
    inside the region, wholly outside it or across its border each its own way: every
    kind must give the reference field's features at its corners."""
    from loopnerf.export.reference_render import query_features
    from loopnerf.viewer.bricks import BRICK_CELLS, _LatticeField

    B = BRICK_CELLS
    cells = tuple(int(r) * max(region_loop.scales) - 1 for r in region_loop.resolution)
    dims = tuple(-(-n // B) for n in cells)
    lattice = _LatticeField(region_loop, cells, tuple(d * B + 1 for d in dims))
    where = np.argwhere(np.ones(dims, dtype=bool))
    offs = torch.arange(B + 1)
    idx = tuple(torch.as_tensor(where[:, a, None]) * B + offs[None, :] for a in range(3))
    kinds = lattice.inside_block(*idx).flatten(1)
    all_in, any_in = kinds.all(1), kinds.any(1)
    picks = [int(torch.nonzero(m)[0]) for m in (all_in, ~any_in, any_in & ~all_in)]  # one brick of each kind
    frame = 3
    got = lattice.block(lattice.frame_tables(frame), *(i[picks] for i in idx))  # [3, B+1, B+1, B+1, K]
    for n, brick in enumerate(picks):
        ii, jj, ll = (i[brick] for i in idx)
        grid = torch.stack(torch.meshgrid(*(lattice.coords[a][c] for a, c in enumerate((ii, jj, ll))), indexing="ij"), -1)
        ref = query_features(region_loop, grid.reshape(-1, 3), frame / region_loop.frames)
        torch.testing.assert_close(got[n].reshape(-1, ref.shape[-1]), ref.float(), rtol=1e-4, atol=1e-5)
