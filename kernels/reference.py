"""Plain-PyTorch twins of the Taichi kernels: the ground truth every kernel test compares against.

Both functions are written for clarity, not speed, from stock PyTorch ops
(`grid_sample`, `cumprod`), so their autograd gradients are independent of the Taichi
backward passes.

Conventions (DESIGN.md section 3, shared with `loopnerf.kernels`):

* ``points`` ``[N, D]``, D = 3 (x, y, z) or 4 (x, y, z, t), coordinates in [-1, 1]
  (values outside are clamped to the border, except a periodic time axis).
* ``planes[s][k]`` is scale ``s``, pair ``k`` of ``itertools.combinations(range(D), 2)``
  (4D: xy, xz, xt, yz, yt, zt). For pair (i, j) coordinate i indexes the plane's width W
  and coordinate j its height H. Layout ``[C, H, W]`` (channel-first, K-Planes) or, with
  ``channels_last=True``, ``[H, W, C]``.
* Bilinear with ``align_corners=True``: coordinate -1 is the centre of sample 0, +1 the
  centre of sample W-1. Border clamp; the coordinate gradient is zero at and beyond the
  clamp (PyTorch's convention); on an interior cell border the gradient is the one-sided
  derivative towards larger coordinates (``floor``).
* ``wrap_time=True`` (D = 4 only): the time axis (H of the xt, yt, zt planes, F samples)
  is a circle; t in [-1, 1) maps to sample position (t + 1) / 2 * F, so sample F is
  sample 0 again and t = -1 and t -> 1 give the same value. Times outside wrap around.
"""
from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F


def plane_pairs(dims: int) -> list[tuple[int, int]]:
    """The coordinate pairs of the planes, in the order planes are listed: combinations(range(D), 2)."""
    return list(itertools.combinations(range(dims), 2))


def _check(points: torch.Tensor, planes, wrap_time: bool) -> int:
    if points.dim() != 2 or points.shape[1] not in (3, 4):
        raise ValueError(f"points must be [N, 3] or [N, 4], got {tuple(points.shape)}")
    dims = points.shape[1]
    if wrap_time and dims != 4:
        raise ValueError("wrap_time=True needs 4D points (the last coordinate is time)")
    n_pairs = len(plane_pairs(dims))
    if len(planes) == 0:
        raise ValueError("planes must hold at least one scale")
    for s, scale in enumerate(planes):
        if len(scale) != n_pairs:
            raise ValueError(f"scale {s} has {len(scale)} planes; D={dims} needs {n_pairs}")
    return dims


def _check_static(static, points: torch.Tensor):
    """The `static` mask of `hexplane_features`: None, or bool [N] on the points' device (4D points)."""
    if static is None:
        return None
    if points.shape[1] != 4:
        raise ValueError("static needs 4D points (the mask switches the space-time planes off)")
    if static.dtype != torch.bool or static.shape != (points.shape[0],):
        raise ValueError(f"static must be bool [{points.shape[0]}], got {static.dtype} {tuple(static.shape)}")
    if static.device != points.device:
        raise ValueError(f"static is on {static.device}; points are on {points.device}")
    return static


def _wrap_time_plane(plane_chw: torch.Tensor) -> torch.Tensor:
    """[C, F, W] -> [C, F + 2, W]: sample F-1 before sample 0 and sample 0 after sample F-1.

    With the copies on both sides, a periodic position in [0, F) lies strictly inside the
    padded plane, so `grid_sample` interpolates across the seam and gives the full
    gradient at position 0 (it treats the outermost samples as the clamp border).
    """
    return torch.cat([plane_chw[:, -1:], plane_chw, plane_chw[:, :1]], dim=1)


def hexplane_features(
    points: torch.Tensor,
    planes,
    *,
    wrap_time: bool = False,
    channels_last: bool = False,
    static=None,
) -> torch.Tensor:
    """Multiscale hex-/tri-plane features, [N, D] points -> [N, C * S].

    For each scale: the product over its planes of the bilinearly interpolated plane
    features; scales are concatenated in order. Differentiable w.r.t. points and planes.
    `static` (bool [N], D = 4 only): those points read every space-time plane as ones
    (the field's static part: the product of the space planes alone).
    """
    dims = _check(points, planes, wrap_time)
    static = _check_static(static, points)
    pairs = plane_pairs(dims)
    n = points.shape[0]
    coords = points
    time_grid = None
    if wrap_time:
        # Periodic time t -> t_w in [-1, 1); torch.remainder has gradient 1, as the circle does.
        t_w = torch.remainder(points[:, 3] + 1.0, 2.0) - 1.0
        time_grid = t_w  # converted per plane below (its F is the plane's height)
    features = []
    for scale in planes:
        product = None
        for (i, j), plane in zip(pairs, scale):
            chw = plane.permute(2, 0, 1) if channels_last else plane
            gx = coords[:, i]
            gy = coords[:, j]
            if wrap_time and j == 3:
                frames = chw.shape[1]
                chw = _wrap_time_plane(chw)
                # position in the padded plane is (t_w + 1) / 2 * F + 1, of F + 1 cells
                pos = (time_grid + 1.0) * 0.5 * frames + 1.0
                gy = pos / (frames + 1) * 2.0 - 1.0
            grid = torch.stack([gx, gy], dim=-1).view(1, n, 1, 2)
            sampled = F.grid_sample(
                chw.unsqueeze(0), grid, mode="bilinear", padding_mode="border", align_corners=True
            )  # [1, C, N, 1]
            value = sampled[0, :, :, 0].t()  # [N, C]
            if static is not None and j == 3:
                value = torch.where(static[:, None], torch.ones_like(value), value)
            product = value if product is None else product * value
        features.append(product)
    return torch.cat(features, dim=-1)


def volume_render(sigmas: torch.Tensor, colors: torch.Tensor, deltas: torch.Tensor):
    """NeRF quadrature over R rays x S samples.

    sigmas [R, S] >= 0 (density, 1/length), colors [R, S, C], deltas [R, S] (sample
    lengths) -> (color [R, C], weights [R, S]) with alpha_s = 1 - exp(-sigma_s delta_s),
    T_s = prod_{k<s} exp(-sigma_k delta_k) (exclusive cumulative product, T_0 = 1) and
    weight_s = T_s alpha_s. Opacity, depth and the distortion loss derive from weights.
    """
    if sigmas.dim() != 2 or deltas.shape != sigmas.shape or colors.dim() != 3 or colors.shape[:2] != sigmas.shape:
        raise ValueError(
            f"expected sigmas [R, S], colors [R, S, C], deltas [R, S]; got "
            f"{tuple(sigmas.shape)}, {tuple(colors.shape)}, {tuple(deltas.shape)}"
        )
    tau = sigmas * deltas
    survive = torch.exp(-tau)
    alpha = 1.0 - survive
    transmittance = torch.cumprod(
        torch.cat([torch.ones_like(survive[:, :1]), survive[:, :-1]], dim=1), dim=1
    )
    weights = transmittance * alpha
    color = (weights.unsqueeze(-1) * colors).sum(dim=1)
    return color, weights
