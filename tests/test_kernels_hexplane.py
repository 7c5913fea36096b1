"""Taichi hexplane interpolation against its plain-PyTorch twin (loopnerf.kernels.reference).

Sizes are small: what costs here is Taichi's compile time, paid once per (dtype, D,
wrap_time) combination and then cached on disk.
"""
import itertools
import subprocess
import sys

import pytest
import torch

from loopnerf.kernels import hexplane_features, reference


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Max abs difference relative to the reference's largest magnitude."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def make_planes(dims, scales, channels, base, time_res, dtype, channels_last, seed, periodic=False):
    """Random planes [H, W, C] (or [C, H, W]); axis resolutions differ so that a mixed-up axis shows."""
    gen = torch.Generator().manual_seed(seed)
    planes = []
    for s in range(scales):
        res = [base[0] * 2**s, base[1] * 2**s, base[2] * 2**s, time_res][:dims]
        scale = []
        for i, j in itertools.combinations(range(dims), 2):
            shape = (res[j], res[i], channels) if channels_last else (channels, res[j], res[i])
            # values around 1 so that products over planes stay well scaled
            scale.append((0.5 + torch.rand(shape, generator=gen, dtype=dtype)).requires_grad_(True))
        planes.append(scale)
    return planes


def random_points(n, dims, dtype, seed, spread=1.2):
    gen = torch.Generator().manual_seed(seed)
    return ((torch.rand(n, dims, generator=gen, dtype=dtype) * 2 - 1) * spread).requires_grad_(True)


def compare(points, planes, *, wrap_time=False, channels_last=False, tol=1e-6, seed=0, point_grads=True):
    """Forward, plane and point gradients of the kernel vs the reference, under a random upstream gradient."""
    flat = [p for scale in planes for p in scale]
    out = hexplane_features(points, planes, wrap_time=wrap_time, channels_last=channels_last)
    ref = reference.hexplane_features(points, planes, wrap_time=wrap_time, channels_last=channels_last)
    assert out.shape == ref.shape
    assert rel_err(out, ref) <= tol
    upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=ref.dtype)
    inputs = [points] + flat
    got = torch.autograd.grad(out, inputs, upstream)
    want = torch.autograd.grad(ref, inputs, upstream)
    for k, (g, w) in enumerate(zip(got[1:], want[1:])):
        assert rel_err(g, w) <= tol, f"plane {k}"
    if point_grads:
        assert rel_err(got[0], want[0]) <= tol


CASES = [
    # dims, scales, channels, base (x, y, z), time res, channels_last, wrap_time, n points
    (4, 1, 3, (5, 6, 7), 4, True, False, 200),
    (4, 3, 4, (3, 5, 4), 6, False, False, 300),
    (4, 2, 5, (4, 3, 5), 5, True, True, 250),
    (3, 2, 2, (6, 4, 5), 0, True, False, 150),
    (3, 4, 3, (2, 3, 2), 0, False, False, 100),
]


@pytest.mark.parametrize("dims,scales,channels,base,time_res,channels_last,wrap_time,n", CASES)
def test_matches_reference_float64(dims, scales, channels, base, time_res, channels_last, wrap_time, n):
    planes = make_planes(dims, scales, channels, base, time_res, torch.float64, channels_last, seed=n)
    points = random_points(n, dims, torch.float64, seed=n + 1)
    if wrap_time:  # times far outside [-1, 1) wrap around the circle
        with torch.no_grad():
            points[:, 3] *= 3.0
    compare(points, planes, wrap_time=wrap_time, channels_last=channels_last, tol=1e-6, seed=n)


@pytest.mark.parametrize("dims,scales,channels,base,time_res,channels_last,wrap_time,n", CASES)
def test_plane_only_gradients_match_reference_float64(dims, scales, channels, base, time_res, channels_last, wrap_time, n):
    """Training's case: points without gradient, so the CPU backward runs one task per
    plane on the samples the forward kept; borders, faces and points outside included."""
    planes = make_planes(dims, scales, channels, base, time_res, torch.float64, channels_last, seed=n + 5)
    points = random_points(n, dims, torch.float64, seed=n + 6, spread=1.3).detach()
    with torch.no_grad():
        points[: n // 4] = points[: n // 4].clamp(-1.0, 1.0).round()  # grid corners and faces
        if wrap_time:
            points[:, 3] *= 3.0
    flat = [p for scale in planes for p in scale]
    out = hexplane_features(points, planes, wrap_time=wrap_time, channels_last=channels_last)
    ref = reference.hexplane_features(points, planes, wrap_time=wrap_time, channels_last=channels_last)
    assert rel_err(out, ref) <= 1e-6
    upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(n), dtype=ref.dtype)
    got = torch.autograd.grad(out, flat, upstream)
    want = torch.autograd.grad(ref, flat, upstream)
    for k, (g, w) in enumerate(zip(got, want)):
        assert rel_err(g, w) <= 1e-6, f"plane {k}"


@pytest.mark.parametrize("channels_last,wrap_time,point_grads", [(True, False, True), (False, True, True), (True, False, False), (True, True, False)])
def test_static_mask_matches_reference_and_the_space_planes_alone(channels_last, wrap_time, point_grads):
    """`static`: masked points read every space-time plane as ones (the field's static
    part) in the same launch as the others; values and gradients (planes, and points when
    they need one) equal the twin's in float64 (both backward paths), masked rows equal
    the tri-plane of the space planes, unmasked rows the plain hexplane, and no gradient
    reaches a space-time plane from a masked point."""
    n = 240
    planes = make_planes(4, 2, 3, (4, 5, 3), 6, torch.float64, channels_last, seed=31)
    points = random_points(n, 4, torch.float64, seed=32, spread=1.3)
    with torch.no_grad():
        points[: n // 4] = points[: n // 4].clamp(-1.0, 1.0).round()  # corners and faces
    if not point_grads:
        points = points.detach()
    static = torch.rand(n, generator=torch.Generator().manual_seed(33)) < 0.6
    flat = [p for scale in planes for p in scale]
    out = hexplane_features(points, planes, wrap_time=wrap_time, channels_last=channels_last, static=static)
    ref = reference.hexplane_features(points, planes, wrap_time=wrap_time, channels_last=channels_last, static=static)
    assert rel_err(out, ref) <= 1e-6
    space = [[scale[k] for k in (0, 1, 3)] for scale in planes]  # xy, xz, yz
    tri = reference.hexplane_features(points[:, :3], space, channels_last=channels_last)
    full = reference.hexplane_features(points, planes, wrap_time=wrap_time, channels_last=channels_last)
    assert rel_err(out[static], tri[static]) <= 1e-12 and rel_err(out[~static], full[~static]) <= 1e-12
    upstream = torch.randn(ref.shape, generator=torch.Generator().manual_seed(34), dtype=ref.dtype)
    inputs = ([points] if point_grads else []) + flat
    got = torch.autograd.grad(out, inputs, upstream)
    want = torch.autograd.grad(ref, inputs, upstream)
    for k, (g, w) in enumerate(zip(got, want)):
        assert rel_err(g, w) <= 1e-6, f"input {k}"
    if point_grads:
        assert float(got[0][static, 3].abs().max()) == 0.0  # a static point's time gets no gradient
    only_static = torch.autograd.grad(
        hexplane_features(points[static], planes, wrap_time=wrap_time, channels_last=channels_last,
                          static=torch.ones(int(static.sum()), dtype=torch.bool)).sum(), flat, allow_unused=True)
    for scale in range(2):
        for k in (2, 4, 5):  # xt, yt, zt
            g = only_static[scale * 6 + k]
            assert g is None or float(g.abs().max()) == 0.0


def test_static_mask_is_checked():
    planes = make_planes(4, 1, 2, (3, 3, 3), 4, torch.float64, True, seed=1)
    points = random_points(10, 4, torch.float64, seed=2)
    for bad in (torch.zeros(9, dtype=torch.bool), torch.zeros(10, dtype=torch.uint8)):
        with pytest.raises(ValueError, match="static"):
            hexplane_features(points, planes, channels_last=True, static=bad)
    tri = make_planes(3, 1, 2, (3, 3, 3), 0, torch.float64, True, seed=1)
    with pytest.raises(ValueError, match="static"):
        hexplane_features(points[:, :3], tri, channels_last=True, static=torch.zeros(10, dtype=torch.bool))


def test_plane_only_backward_skips_frozen_planes():
    """Distillation's case: the space planes frozen, only the time planes need gradients."""
    planes = make_planes(4, 2, 3, (4, 5, 3), 6, torch.float64, True, seed=11)
    for scale in planes:
        for k in (0, 1, 3):  # xy, xz, yz
            scale[k].requires_grad_(False)
    frozen = planes[0][0].detach().clone()
    points = random_points(90, 4, torch.float64, seed=12).detach()
    trainable = [p for scale in planes for p in scale if p.requires_grad]
    upstream = torch.randn(90, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = torch.autograd.grad(hexplane_features(points, planes, wrap_time=True, channels_last=True), trainable, upstream)
    want = torch.autograd.grad(reference.hexplane_features(points, planes, wrap_time=True, channels_last=True), trainable, upstream)
    for g, w in zip(got, want):
        assert rel_err(g, w) <= 1e-6
    assert torch.equal(planes[0][0], frozen)  # a frozen plane is read, never written


@pytest.mark.parametrize("dims", [3, 4])
def test_points_on_cell_borders_faces_and_outside(dims):
    """Exact grid nodes, the box faces +-1 and points beyond: values and every gradient agree."""
    planes = make_planes(dims, 2, 3, (4, 5, 3), 4, torch.float64, True, seed=7)
    gen = torch.Generator().manual_seed(3)
    n = 120
    res = 4  # nodes of the coarsest x axis; finer scales have these nodes too
    nodes = torch.linspace(-1, 1, res, dtype=torch.float64)
    choices = torch.cat([nodes, torch.tensor([-1.0, 1.0, -1.5, 1.5, -3.0, 2.0], dtype=torch.float64)])
    idx = torch.randint(len(choices), (n, dims), generator=gen)
    points = choices[idx]
    # half of the coordinates random interior values, so that each point mixes both kinds
    mask = torch.rand(n, dims, generator=gen) < 0.3
    points = torch.where(mask, torch.rand(n, dims, generator=gen, dtype=torch.float64) * 2 - 1, points)
    points.requires_grad_(True)
    compare(points, planes, channels_last=True, tol=1e-6, seed=1)


def test_outside_points_have_border_values_and_zero_coordinate_gradient():
    planes = make_planes(4, 1, 2, (3, 3, 3), 3, torch.float64, True, seed=11)
    inside = torch.tensor([[1.0, -1.0, 0.3, -0.2]], dtype=torch.float64)
    outside = torch.tensor([[4.0, -7.0, 0.3, -0.2]], dtype=torch.float64, requires_grad=True)
    a = hexplane_features(inside, planes, channels_last=True)
    b = hexplane_features(outside, planes, channels_last=True)
    assert torch.equal(a, b)
    (g,) = torch.autograd.grad(b.sum(), [outside])
    assert g[0, 0] == 0 and g[0, 1] == 0 and g[0, 2] != 0 and g[0, 3] != 0


def test_wrap_time_closes_the_circle():
    planes = make_planes(4, 2, 3, (3, 4, 5), 6, torch.float64, True, seed=5)
    gen = torch.Generator().manual_seed(9)
    xyz = torch.rand(40, 3, generator=gen, dtype=torch.float64) * 2 - 1

    def at(t):
        pts = torch.cat([xyz, torch.full((40, 1), t, dtype=torch.float64)], dim=1)
        return hexplane_features(pts, planes, wrap_time=True, channels_last=True)

    start, end, after = at(-1.0), at(1.0 - 1e-12), at(1.0)
    assert rel_err(end, start) <= 1e-9  # t -> 1 approaches t = -1
    assert rel_err(after, start) <= 1e-12  # t = 1 is t = -1
    assert rel_err(at(0.25 + 4.0), at(0.25)) <= 1e-12  # period 2
    # ... and without wrapping the two ends differ (the planes are random)
    plain = lambda t: hexplane_features(  # noqa: E731
        torch.cat([xyz, torch.full((40, 1), t, dtype=torch.float64)], dim=1), planes, channels_last=True
    )
    assert rel_err(plain(1.0), plain(-1.0)) > 1e-3
    # gradients at the seam (t = -1 exactly and t just below 1) agree with the reference
    pts = torch.cat([xyz, torch.tensor([-1.0, 1.0 - 1e-9] * 20, dtype=torch.float64)[:, None]], dim=1)
    compare(pts.requires_grad_(True), planes, wrap_time=True, channels_last=True, tol=1e-6)


def test_float32_matches_reference():
    planes = make_planes(4, 3, 16, (8, 6, 7), 5, torch.float32, True, seed=21)
    points = random_points(2000, 4, torch.float32, seed=22, spread=1.05)
    compare(points, planes, channels_last=True, tol=1e-4, seed=3)
    planes = make_planes(4, 2, 8, (5, 6, 4), 7, torch.float32, True, seed=23)
    points = random_points(1000, 4, torch.float32, seed=24, spread=2.0)
    compare(points, planes, wrap_time=True, channels_last=True, tol=1e-4, seed=4)


@pytest.mark.parametrize("dims,wrap_time", [(4, False), (4, True), (3, False)])
def test_gradcheck(dims, wrap_time):
    planes = make_planes(dims, 2, 2, (3, 2, 3), 3, torch.float64, True, seed=31)
    points = random_points(6, dims, torch.float64, seed=32, spread=0.9)
    flat = [p for scale in planes for p in scale]
    per = len(planes[0])

    def fn(pts, *fl):
        return hexplane_features(pts, [list(fl[:per]), list(fl[per:])], wrap_time=wrap_time, channels_last=True)

    assert torch.autograd.gradcheck(fn, (points, *flat), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_gradient_not_doubled_on_leaves_and_repeated_backward():
    """taichi#8101: a kernel that hands back a leaf's own .grad doubles it."""
    planes = [[torch.nn.Parameter(p.detach()) for p in s]
              for s in make_planes(4, 2, 3, (3, 4, 3), 4, torch.float64, True, seed=41)]
    points = random_points(50, 4, torch.float64, seed=42, spread=0.95).detach().requires_grad_(True)
    flat = [p for s in planes for p in s]
    ref_grads = torch.autograd.grad(
        reference.hexplane_features(points, planes, channels_last=True).square().sum(), [points] + flat
    )
    out = hexplane_features(points, planes, channels_last=True)
    assert all(p.grad is None for p in flat) and points.grad is None  # forward leaves .grad alone
    loss = out.square().sum()
    loss.backward(retain_graph=True)
    for leaf, want in zip([points] + flat, ref_grads):
        assert rel_err(leaf.grad, want) <= 1e-9
    loss.backward()  # accumulates once more: exactly twice, not four times
    for leaf, want in zip([points] + flat, ref_grads):
        assert rel_err(leaf.grad, 2 * want) <= 1e-9


def test_rejects_bad_inputs():
    planes = make_planes(3, 1, 2, (3, 3, 3), 0, torch.float64, True, seed=1)
    pts = torch.zeros(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError):
        hexplane_features(pts, planes, wrap_time=True, channels_last=True)  # 3D has no time
    with pytest.raises(ValueError):
        hexplane_features(torch.zeros(4, 4, dtype=torch.float64), planes, channels_last=True)  # 3 planes for 4D
    with pytest.raises(ValueError):
        hexplane_features(pts.float(), planes, channels_last=True)  # dtype mismatch
    bad = [[planes[0][0], planes[0][1], planes[0][2][:, :2]]]  # yz plane disagrees on z
    with pytest.raises(ValueError):
        hexplane_features(pts, bad, channels_last=True)


def test_import_does_not_start_taichi():
    code = (
        "import sys, loopnerf.kernels as k; "
        "assert 'taichi' not in sys.modules, 'taichi imported'; "
        "assert callable(k.hexplane_features) and callable(k.volume_render) and k.reference"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("dtype,offset", [(torch.float32, 0), (torch.float32, 1), (torch.float32, 8), (torch.float64, 4)])
def test_simd_build_and_misaligned_planes_match_reference(dtype, offset):
    """16 channels (a power of two) take the SIMD build on the CPU when every plane is
    aligned to its vector; planes that are views at an odd offset into a bigger buffer
    would fault there and must take the scalar build. Both agree with the twin."""
    from loopnerf.kernels import runtime

    planes = make_planes(4, 2, 16, (4, 5, 3), 6, dtype, True, seed=offset + 3)
    moved = []
    for scale in planes:
        row = []
        for p in scale:
            buf = torch.zeros(p.numel() + 64, dtype=dtype)
            view = buf[offset : offset + p.numel()].view(p.shape)
            with torch.no_grad():
                view.copy_(p)
            row.append(view.detach().requires_grad_(True))  # (a leaf that keeps the view's address)
        moved.append(row)
    flat = [p for scale in moved for p in scale]
    runtime.ensure_taichi(torch.device("cpu"))
    aligned = runtime.simd_vectors(16, flat)
    assert aligned == (offset * torch.tensor([], dtype=dtype).element_size() % 64 == 0)
    points = random_points(300, 4, dtype, seed=offset + 4)
    compare(points, moved, channels_last=True, tol=1e-6 if dtype == torch.float64 else 1e-4, seed=offset)
