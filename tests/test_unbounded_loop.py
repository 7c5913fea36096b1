"""Unbounded scenes in the baked format and the viewer (`.loop` version 2, contraction
'mipnerf360'): both viewer backends against the PyTorch reference, the reference's
samples, and the file's version rules."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fixtures.demo_loop import make_test_loop
from loopnerf.export.loop_format import LoopFormatError, load_loop, save_loop
from loopnerf.export.reference_render import contracted_ray_samples, render_camera, world_to_field
from loopnerf.image_metrics import psnr
from loopnerf.viewer.renderer import Renderer


@pytest.fixture(scope="module")
def loop():
    return make_test_loop(contraction="mipnerf360", occupancy_resolution=32)


@pytest.fixture(scope="module")
def renderers(loop):
    return Renderer(loop, 40, 30, backend="planes"), Renderer(loop, 40, 30, backend="bricks")


@pytest.mark.parametrize("phase", [0.1, 0.6])
def test_both_backends_match_the_reference(loop, renderers, phase):
    """The blob (in the box and the shell), the backdrop 5-10 world units behind the
    box and the sky behind it, drawn by the planes and the brick kernels, against the
    reference's 1024 samples evenly spaced in contracted space."""
    ref = render_camera(loop, phase=phase, n_samples=1024)
    planes, bricks = renderers
    a, _, op_a = planes.render_phase_with_opacity(planes.default_c2w(), phase)
    b, _, op_b = bricks.render_phase_with_opacity(bricks.default_c2w(), phase)
    r = ref["rgb"].numpy().reshape(a.shape)
    assert psnr(a / 255.0, r) >= 42.0
    assert psnr(b / 255.0, r) >= 40.0
    # Opacity: one sample per finest cell at least (the bake's step), in the box and in
    # the shell alike, so only rays that graze the backdrop's rim differ by more than 0.02.
    gap = np.abs(op_a - ref["acc"].numpy().reshape(op_a.shape))
    assert gap.mean() < 0.01 and (gap > 0.02).mean() < 0.06
    # The far backdrop is there: most of the pixels beside the blob see it.
    assert (op_a > 0.5).mean() > 0.6
    # Steps grow with distance: a ray out to far = 100 takes a bounded number of samples.
    assert planes.last_samples_per_ray().mean() < 64
    assert bricks.last_samples_per_ray().mean() < planes.last_samples_per_ray().mean()


def test_backdrop_lies_far_behind_the_box(loop, renderers):
    """Where the backdrop is seen, half the light stops far behind the box (the box's
    far face is 4 units from the camera; field z = BACKDROP_Z is 5 half-boxes behind its
    centre), as far as the reference says."""
    planes, _ = renderers
    _, depth, op = planes.render_phase_with_opacity(planes.default_c2w(), 0.3, depth="median")
    ref = render_camera(loop, phase=0.3, n_samples=1024)["median"].numpy().reshape(depth.shape)
    corners = [(2, 2), (2, 37), (27, 2)]
    for row, col in corners:
        assert op[row, col] > 0.5
        assert 8.0 < depth[row, col] < loop.far
        assert depth[row, col] == pytest.approx(ref[row, col], rel=0.1)


def test_contracted_samples_are_even_in_contracted_space(loop):
    cam = torch.tensor(loop.camera["c2w"], dtype=torch.float32)
    origins = cam[:3, 3].expand(5, 3).contiguous()
    dirs = torch.nn.functional.normalize(torch.tensor(
        [[0, 0, -1], [0.3, 0.1, -1], [-0.5, 0.4, -1], [1, 0, 0], [0, 1, 0.2]], dtype=torch.float32), dim=-1)
    t, deltas, hit = contracted_ray_samples(loop, origins, dirs, 64)
    assert hit.all() and (deltas > 0).all()
    edges = torch.cat([t[:, :1] - deltas[:, :1] / 2, t + deltas / 2], dim=1)
    assert torch.allclose(edges[:, 0], torch.full((5,), loop.near), rtol=1e-4)
    assert torch.allclose(edges[:, -1], torch.full((5,), loop.far), rtol=1e-3)
    # Each bin's arc length in contracted space, summed over 32 sub-steps (the path bends
    # where the dominant axis changes, so a chord would undercount there).
    sub = torch.linspace(0.0, 1.0, 33)
    dist = edges[:, :-1, None] + (edges[:, 1:] - edges[:, :-1])[..., None] * sub  # [5, 64, 33]
    y = world_to_field(loop, (origins[:, None, None] + dirs[:, None, None] * dist[..., None]).reshape(-1, 3)).reshape(5, 64, 33, 3)
    arc = (y[:, :, 1:] - y[:, :, :-1]).norm(dim=-1).sum(dim=-1)
    assert torch.allclose(arc, arc.mean(dim=1, keepdim=True), rtol=0.02)


def test_unbounded_loop_is_format_version_2(tmp_path, loop):
    assert loop.header()["version"] == 2 and make_test_loop().header()["version"] == 1
    path = tmp_path / "unbounded.loop"
    save_loop(path, loop)
    back = load_loop(path)
    assert back.contraction == "mipnerf360" and back.version == 2 and back.far == loop.far
    assert torch.equal(back.sky, loop.sky)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    header = {**loop.header(), "version": 1}
    import json

    save_file(tensors, str(tmp_path / "v1.loop"), metadata={"loopnerf": json.dumps(header)})
    with pytest.raises(LoopFormatError, match="contraction.*version 1"):
        load_loop(tmp_path / "v1.loop")


def test_culling_keeps_the_contracted_shell():
    """Visibility culling of an unbounded loop clears unseen cells inside the box only:
    the shell is the far background, and a culled shell cell would show the flat
    background colour instead of it."""
    import dataclasses

    from loopnerf.export.visibility import box_cells, cull_invisible, culling_views

    loop = make_test_loop(contraction="mipnerf360", occupancy_resolution=32)
    culled = dataclasses.replace(loop, occupancy=loop.occupancy.clone(), extra=dict(loop.extra))
    c2w = np.asarray(loop.camera["c2w"], dtype=np.float32)[None]
    k = Renderer.intrinsics_of(loop, loop.camera["width"], loop.camera["height"])
    cull_invisible(culled, culling_views(c2w, [k], loop.frames))
    inside = box_cells(loop.occupancy.shape)
    before, after = loop.occupancy.bool(), culled.occupancy.bool()
    assert torch.equal(after[~inside], before[~inside])  # the shell is kept as it was
    assert after[inside].sum() < before[inside].sum()  # one view does not see all of the box
    assert int(inside.sum()) == 16 ** 3  # the box is the middle half of a 32^3 grid


def test_the_sky_shows_where_the_field_lets_light_through(loop, renderers):
    """Behind the field each kernel composites the file's sky along the ray, as the
    reference does: a loop without it differs exactly there, by the residual light."""
    import dataclasses

    no_sky = dataclasses.replace(loop, sky=None)
    planes, _ = renderers
    a, _, op = planes.render_phase_with_opacity(planes.default_c2w(), 0.2)
    b, _ = Renderer(no_sky, 40, 30, backend="planes").render_phase(planes.default_c2w(), 0.2)
    ref = render_camera(no_sky, phase=0.2, n_samples=1024)["rgb"].numpy().reshape(b.shape)
    assert psnr(b / 255.0, ref) >= 42.0  # the header's colour behind it, as before
    diff = np.abs(a.astype(float) - b.astype(float)).mean(-1)
    assert diff[op < 0.5].mean() > 10.0 and diff[op > 0.95].mean() < diff[op < 0.5].mean() / 4


def test_a_bad_sky_is_rejected(tmp_path, loop):
    import json

    from safetensors.torch import save_file

    tensors = dict(loop.tensors())
    tensors["sky"] = torch.full_like(tensors["sky"], 1.5)
    save_file(tensors, str(tmp_path / "s.loop"), metadata={"loopnerf": json.dumps(loop.header())})
    with pytest.raises(LoopFormatError, match="sky"):
        load_loop(tmp_path / "s.loop")
    bounded = make_test_loop()
    tensors = dict(bounded.tensors(), sky=loop.tensors()["sky"])
    save_file(tensors, str(tmp_path / "b.loop"), metadata={"loopnerf": json.dumps(bounded.header())})
    with pytest.raises(LoopFormatError, match="unexpected tensor 'sky'"):
        load_loop(tmp_path / "b.loop")
