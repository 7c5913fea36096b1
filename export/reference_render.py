"""Plain-PyTorch renderer of a baked loop: the twin the Taichi viewer is tested against.

Everything follows `docs/ARCHITECTURE.md` ("Baked .loop format, versions 1 and 2"):

- world point X maps to the normalised cube by the scene box, per axis:
  x = 2 (X - box_min) / (box_max - box_min) - 1;
- features at (x, phase p) = concat over scales of prod(static xy, xz, yz bilinear at x)
  * prod(loop xt, yt, zt at (x_i, p)); space axes use align_corners=True with border
  clamp, the loop time axis is periodic: continuous sample index p * F, sample F-1
  blends into sample 0;
- density = exp(f @ sigma_weight + sigma_bias - 1), per world unit of ray length
  (trunc_exp's forward is exp);
- colour = sigmoid(dir_table(d) @ f), d the unit world direction of the ray, looked
  up bilinearly in the lat-long table (row theta / pi * (Hd - 1), theta = acos(d_y);
  column (atan2(d_z, d_x) + pi) / (2 pi) * Wd, periodic);
- rays: unit world directions, samples uniform in [max(near, t_enter), min(far, t_exit)]
  of the box, NeRF quadrature (`loopnerf.kernels.reference.volume_render`),
  composited over the header's background;
- unbounded scenes (`contraction` "mipnerf360", format version 2): the planes and grids
  live at the field point contract(x) of the normalised point x
  (`loopnerf.fields.field.contract`); rays span [near, far] and their samples are
  spaced evenly along the ray's path in contracted space (`contracted_ray_samples`).

All functions take float32 torch tensors (CPU or GPU) and return float32.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from loopnerf.fields.lat_long import lookup_direction_table  # noqa: F401  (re-exported: the convention's owner)

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from loopnerf.export.loop_format import BakedLoop


# ------------------------------------------------------------------ coordinates
def world_to_normalized(baked: "BakedLoop", x_world: "torch.Tensor") -> "torch.Tensor":
    """World points [N, 3] -> normalised-cube points [N, 3] (box -> [-1, 1]^3)."""
    box = baked.box_tensor().to(x_world.device)
    return 2.0 * (x_world - box[0]) / (box[1] - box[0]) - 1.0


def normalized_to_world(baked: "BakedLoop", x: "torch.Tensor") -> "torch.Tensor":
    """Normalised-cube points [N, 3] -> world points [N, 3]."""
    box = baked.box_tensor().to(x.device)
    return (x + 1.0) * 0.5 * (box[1] - box[0]) + box[0]


def world_to_field(baked: "BakedLoop", x_world: "torch.Tensor") -> "torch.Tensor":
    """World points [N, 3] -> the field coordinates the planes and grids use: the
    normalised point, contracted when the scene is unbounded."""
    x = world_to_normalized(baked, x_world)
    if baked.unbounded:
        from loopnerf.fields.field import contract

        x = contract(x)
    return x


# ------------------------------------------------------------------ plane lookups
def _bilinear(plane: "torch.Tensor", a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """Channel-last plane [H, W, C] at coordinate a (indexes W) and b (indexes H),
    both [N] in [-1, 1]; bilinear, align_corners=True, border clamp -> [N, C]."""
    import torch
    from torch.nn.functional import grid_sample

    grid = torch.stack([a, b], dim=-1).to(plane.dtype)[None, :, None, :]  # [1, N, 1, 2]
    out = grid_sample(plane.permute(2, 0, 1)[None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, :, :, 0].T.contiguous()  # [N, C]


def frame_blend(phase: float, frames: int) -> tuple[int, int, float]:
    """(k0, k1, w): loop phase p (periodic) lies w of the way from loop sample k0 to k1.

    Sample k sits at phase k / F; sample F - 1 blends into sample 0 (no seam). Every
    renderer of a loop (this one, the viewer's planes and bricks) reads time this way."""
    u = (float(phase) % 1.0) * frames
    k0 = int(math.floor(u)) % frames
    return k0, (k0 + 1) % frames, u - math.floor(u)


def loop_slice(plane: "torch.Tensor", phase: float) -> "torch.Tensor":
    """Loop plane [F, R, C] at phase p in [0, 1) (periodic) -> [R, C] float32, linear
    between the F samples (`frame_blend`)."""
    k0, k1, w = frame_blend(phase, plane.shape[0])
    return plane[k0].float() * (1.0 - w) + plane[k1].float() * w


def _linear(line: "torch.Tensor", a: "torch.Tensor") -> "torch.Tensor":
    """Line [R, C] at coordinate a [N] in [-1, 1] (linear, align_corners, clamp) -> [N, C].

    A [1, R, C] plane sampled at height coordinate 0: with align_corners=True a
    height-1 axis always reads row 0, so this is exact linear interpolation."""
    return _bilinear(line[None], a, a.new_zeros(a.shape))


def query_features(baked: "BakedLoop", x: "torch.Tensor", phase: float) -> "torch.Tensor":
    """Feature vectors [N, C * S] (float32) at field points x [N, 3] (`world_to_field`) and loop phase.

    Evaluated by `loopnerf.kernels.reference.hexplane_features` on the 4D point
    (x, 2 p - 1) with each scale's planes in hex-plane order (xy, xz, xt, yz, yt, zt)
    and `wrap_time=True`: the static planes are the space pairs, the loop planes the
    space-time pairs. Outside the file's dynamic region, the static planes alone (loop
    planes as ones)."""
    import torch

    from loopnerf.kernels.reference import hexplane_features

    x = x.float()
    t = torch.full_like(x[:, :1], 2.0 * (float(phase) % 1.0) - 1.0)
    planes = []
    for s in range(len(baked.scales)):
        xy, xz, yz = (p.to(x.device).float() for p in baked.static_planes[s])
        xt, yt, zt = (p.to(x.device).float() for p in baked.loop_planes[s])
        planes.append([xy, xz, xt, yz, yt, zt])
    f = hexplane_features(torch.cat([x, t], dim=-1), planes, wrap_time=True, channels_last=True)
    if baked.dynamic_region is None:
        return f
    still = hexplane_features(x, [[p[0], p[1], p[3]] for p in planes], channels_last=True)
    return torch.where(baked.in_dynamic_region(x)[:, None], f, still)


def density_from_features(baked: "BakedLoop", features: "torch.Tensor") -> "torch.Tensor":
    """Density [N] (per world unit) from features [N, C * S]."""
    import torch

    w = baked.sigma_weight.to(features.device).float()
    b = baked.sigma_bias.to(features.device).float()
    return torch.exp(features @ w + b[0] - 1.0)


def query_density(baked: "BakedLoop", x: "torch.Tensor", phase: float) -> "torch.Tensor":
    """Density [N] (per world unit) at field points x [N, 3] and loop phase p."""
    return density_from_features(baked, query_features(baked, x, phase))


def direction_basis(baked: "BakedLoop", dirs: "torch.Tensor") -> "torch.Tensor":
    """Colour basis [N, 3, C * S] for unit world directions dirs [N, 3], looked up
    bilinearly in the baked lat-long direction table."""
    return lookup_direction_table(baked.dir_table.to(dirs.device).float(), dirs)


def color_from_features(baked: "BakedLoop", features: "torch.Tensor", dirs: "torch.Tensor") -> "torch.Tensor":
    """RGB [N, 3] in (0, 1) from features [N, C * S] and unit world dirs [N, 3]."""
    import torch

    basis = direction_basis(baked, dirs)
    return torch.sigmoid(torch.einsum("nck,nk->nc", basis, features))


def query_color(baked: "BakedLoop", x: "torch.Tensor", dirs: "torch.Tensor", phase: float) -> "torch.Tensor":
    """RGB [N, 3] at field points x [N, 3] seen along unit world dirs [N, 3]."""
    return color_from_features(baked, query_features(baked, x, phase), dirs)


def occupied(baked: "BakedLoop", x: "torch.Tensor") -> "torch.Tensor":
    """[N] bool: whether the occupancy cell holding normalised point x [N, 3] is set
    (points outside the cube are never occupied)."""
    import torch

    occ = baked.occupancy.to(x.device)
    G = torch.tensor(occ.shape, device=x.device)
    idx = torch.floor((x + 1.0) * 0.5 * G).long()
    inside = ((x >= -1.0) & (x <= 1.0)).all(dim=-1)
    idx = torch.minimum(idx.clamp_min(0), G - 1)
    return inside & (occ[idx[:, 0], idx[:, 1], idx[:, 2]] > 0)


# ------------------------------------------------------------------ rays
def ray_box_intersection(baked: "BakedLoop", origins: "torch.Tensor", dirs: "torch.Tensor"):
    """Slab test against the scene box. origins, dirs [R, 3] world -> (t_enter [R],
    t_exit [R]) along dirs (world units when dirs are unit); t_exit < t_enter = miss."""
    import torch

    box = baked.box_tensor().to(origins.device)
    safe = torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    inv = 1.0 / safe
    t0 = (box[0] - origins) * inv
    t1 = (box[1] - origins) * inv
    t_enter = torch.minimum(t0, t1).amax(dim=-1)
    t_exit = torch.maximum(t0, t1).amin(dim=-1)
    return t_enter, t_exit


def ray_samples(baked: "BakedLoop", origins: "torch.Tensor", dirs: "torch.Tensor", n_samples: int):
    """Uniform samples on each ray's visible part of the box (unbounded scenes:
    `contracted_ray_samples`).

    Returns (t [R, S] sample distances at bin midpoints, deltas [R, S] bin lengths,
    hit [R] bool). Rays that miss the box get zero-length bins."""
    import torch

    if baked.unbounded:
        return contracted_ray_samples(baked, origins, dirs, n_samples)

    t_enter, t_exit = ray_box_intersection(baked, origins, dirs)
    t_start = torch.clamp(t_enter, min=baked.near)
    t_end = torch.clamp(t_exit, max=baked.far)
    hit = t_end > t_start
    t_end = torch.where(hit, t_end, t_start)
    edges = torch.linspace(0.0, 1.0, n_samples + 1, device=origins.device)
    bins = t_start[:, None] + (t_end - t_start)[:, None] * edges[None, :]
    t = 0.5 * (bins[:, 1:] + bins[:, :-1])
    deltas = bins[:, 1:] - bins[:, :-1]
    return t, deltas, hit


def contracted_ray_samples(baked: "BakedLoop", origins: "torch.Tensor", dirs: "torch.Tensor", n_samples: int,
                           *, dense: int = 4096):
    """Samples of an unbounded scene's rays over [near, far], evenly spaced along the
    ray's path in contracted space (each bin covers the same contracted arc length), so
    the box gets samples as densely as the shell beyond it and distant space few.

    The arc length is integrated over `dense` distances (log-spaced over [near, far],
    plus as many evenly spaced over the part inside the box) and inverted linearly.
    Returns (t [R, S], deltas [R, S], hit [R] all True)."""
    import torch

    R = origins.shape[0]
    near, far = float(baked.near), float(baked.far)
    u = torch.linspace(0.0, 1.0, dense, device=origins.device, dtype=torch.float64)
    log_t = near * (far / near) ** u
    t_enter, t_exit = ray_box_intersection(baked, origins, dirs)
    lo = t_enter.double().clamp(near, far)
    hi = torch.maximum(t_exit.double().clamp(near, far), lo)
    box_t = lo[:, None] + (hi - lo)[:, None] * u[None, :]
    grid = torch.sort(torch.cat([log_t.expand(R, dense), box_t], dim=1), dim=1).values  # [R, 2 * dense]
    pts = origins.double()[:, None, :] + dirs.double()[:, None, :] * grid[..., None]
    y = world_to_field(baked, pts.reshape(-1, 3)).reshape(pts.shape)
    arc = torch.cat([torch.zeros(R, 1, dtype=torch.float64, device=origins.device),
                     torch.cumsum((y[:, 1:] - y[:, :-1]).norm(dim=-1), dim=1)], dim=1)
    targets = arc[:, -1:] * torch.linspace(0.0, 1.0, n_samples + 1, device=origins.device, dtype=torch.float64)[None, :]
    idx = torch.searchsorted(arc.contiguous(), targets.contiguous()).clamp(1, arc.shape[1] - 1)
    a0, a1 = arc.gather(1, idx - 1), arc.gather(1, idx)
    g0, g1 = grid.gather(1, idx - 1), grid.gather(1, idx)
    frac = torch.where(a1 > a0, (targets - a0) / (a1 - a0).clamp_min(1e-300), torch.zeros_like(a0))
    bins = (g0 + frac * (g1 - g0)).float()
    t = 0.5 * (bins[:, 1:] + bins[:, :-1])
    deltas = bins[:, 1:] - bins[:, :-1]
    return t, deltas, torch.ones(R, dtype=torch.bool, device=origins.device)


def sample_rays(
    baked: "BakedLoop",
    origins: "torch.Tensor",
    dirs: "torch.Tensor",
    phase: float,
    n_samples: int,
    *,
    use_occupancy: bool = True,
    basis_fn: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
):
    """Samples of rays before compositing: (t [R, S] distances, deltas [R, S],
    sigma [R, S] density per world unit, rgb [R, S, 3]) at loop phase p.
    Arguments as in `render_rays`."""
    import torch

    R = origins.shape[0]
    t, deltas, _ = ray_samples(baked, origins, dirs, n_samples)
    pts_world = origins[:, None, :] + dirs[:, None, :] * t[..., None]
    x = world_to_field(baked, pts_world.reshape(-1, 3))
    K = baked.feature_dim
    feats = torch.zeros(x.shape[0], K, device=x.device)
    sigma = torch.zeros(x.shape[0], device=x.device)
    # Evaluate only samples in occupied cells (empty space has zero density there by
    # construction of the grid): the same result as zeroing them, far cheaper.
    keep = occupied(baked, x) if use_occupancy else torch.ones_like(sigma, dtype=torch.bool)
    if bool(keep.any()):
        f = query_features(baked, x[keep], phase)
        feats[keep] = f
        sigma[keep] = density_from_features(baked, f)
    # One basis lookup per ray (every sample of a ray shares its direction).
    basis = direction_basis(baked, dirs) if basis_fn is None else basis_fn(dirs).float()
    rgb = torch.sigmoid(torch.einsum("rck,rsk->rsc", basis, feats.reshape(R, n_samples, K)))
    return t, deltas, sigma.reshape(R, n_samples), rgb


def render_rays(
    baked: "BakedLoop",
    origins: "torch.Tensor",
    dirs: "torch.Tensor",
    phase: float,
    n_samples: int = 192,
    *,
    use_occupancy: bool = True,
    chunk: int = 8192,
    basis_fn: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
) -> dict[str, "torch.Tensor"]:
    """Render rays of the baked loop at loop phase p in [0, 1).

    Args:
        origins: [R, 3] world ray origins; dirs: [R, 3] unit world directions.
        n_samples: uniform samples per ray over the ray's part of the box within
            [near, far].
        use_occupancy: zero the density in unoccupied cells (as the viewer skips them).
        chunk: rays per batch (memory bound).
        basis_fn: optional exact direction basis (unit dirs [R, 3] -> [R, 3, C * S])
            used instead of the baked table (to measure what baking costs).

    Returns dict with rgb [R, 3] (composited over the header's background, or the
    file's `sky` along each ray's direction when it has one), depth
    [R] (expected distance along the ray, background counted at `far`), acc [R]
    (opacity in [0, 1]), median [R] (`median_distance`: where the transmittance
    falls to 1/2; `far` where it stays above).
    """
    import torch

    from loopnerf.kernels.reference import volume_render

    origins = origins.float()
    dirs = dirs.float()
    bg = torch.tensor(baked.background, dtype=torch.float32, device=origins.device)
    rgbs, depths, accs, medians = [], [], [], []
    for i in range(0, origins.shape[0], chunk):
        o, d = origins[i : i + chunk], dirs[i : i + chunk]
        t, deltas, sigma, rgb_s = sample_rays(
            baked, o, d, phase, n_samples, use_occupancy=use_occupancy, basis_fn=basis_fn
        )
        rgb, w = volume_render(sigma, rgb_s, deltas)
        acc = w.sum(dim=1)
        behind = bg if baked.sky is None else lookup_direction_table(baked.sky.to(d.device).float()[..., None], d)[..., 0]
        rgbs.append(rgb + (1.0 - acc[:, None]) * behind)
        depths.append((w * t).sum(dim=1) + (1.0 - acc) * baked.far)
        accs.append(acc)
        medians.append(median_distance(t, deltas, sigma, baked.far))
    return {"rgb": torch.cat(rgbs), "depth": torch.cat(depths), "acc": torch.cat(accs), "median": torch.cat(medians)}


def median_distance(t: "torch.Tensor", deltas: "torch.Tensor", sigma: "torch.Tensor", far: float) -> "torch.Tensor":
    """[R] distance along each ray at which the transmittance falls to 1/2, for samples
    at bin midpoints t [R, S] of lengths deltas [R, S] and densities sigma [R, S] taken
    as constant over each bin: in the first bin whose end has T < 1/2, at
    t - delta / 2 + ln(2 T_in) / sigma (T_in: the transmittance entering it); `far`
    where no bin takes it under 1/2. (The viewer's `depth="median"`.)"""
    import torch

    tau = sigma * deltas
    t_end = torch.exp(-torch.cumsum(tau, dim=1))  # transmittance at each bin's end
    t_in = torch.cat([torch.ones_like(t_end[:, :1]), t_end[:, :-1]], dim=1)
    crossed = t_end < 0.5
    first = torch.argmax(crossed.to(torch.int8), dim=1)
    any_cross = crossed.any(dim=1)
    rows = torch.arange(t.shape[0], device=t.device)
    ti, di, si, Ti = t[rows, first], deltas[rows, first], sigma[rows, first], t_in[rows, first]
    inside = torch.minimum(torch.log(2.0 * Ti) / si.clamp_min(1e-12), di)
    return torch.where(any_cross, ti - 0.5 * di + inside, torch.full_like(ti, far))


def camera_intrinsics(intrinsics: Any) -> dict[str, float]:
    """fx, fy, cx, cy, width, height from a dict (the header's camera) or an object
    with those attributes (`loopnerf.data.capture.Intrinsics`)."""
    keys = ("fx", "fy", "cx", "cy", "width", "height")
    if isinstance(intrinsics, dict):
        return {k: intrinsics[k] for k in keys}
    return {k: getattr(intrinsics, k) for k in keys}


def render_camera(
    baked: "BakedLoop",
    c2w: Any = None,
    intrinsics: Any = None,
    phase: float = 0.0,
    n_samples: int = 192,
    *,
    use_occupancy: bool = True,
    basis_fn: "Callable[[torch.Tensor], torch.Tensor] | None" = None,
) -> dict[str, "torch.Tensor"]:
    """Render a pinhole camera at loop phase p. c2w [4, 4] camera-to-world (default:
    the header's camera), intrinsics as in `camera_intrinsics` (default: the header's).
    Returns rgb [H, W, 3], depth [H, W], acc [H, W], median [H, W] (float32)."""
    if c2w is None:
        c2w = baked.camera["c2w"]
    if intrinsics is None:
        intrinsics = baked.camera
    k = camera_intrinsics(intrinsics)
    H, W = int(k["height"]), int(k["width"])
    from loopnerf.data.rays import camera_rays

    o, d = (r.reshape(-1, 3) for r in camera_rays(c2w, k))
    out = render_rays(baked, o, d, phase, n_samples, use_occupancy=use_occupancy, basis_fn=basis_fn)
    return {key: out[key].reshape(H, W, 3) if key == "rgb" else out[key].reshape(H, W) for key in out}
