"""Ray sampling: box intersection, uniform bins, PDF resampling (mip-NeRF 360 proposals).

Samples are described by their bin edges along the ray: `edges [R, S + 1]`, the ray
parameter in world units along unit directions; sample i covers
[edges[:, i], edges[:, i + 1]] and sits at the bin's midpoint. The "s" coordinate
used by the proposal losses is edges mapped linearly from [near, far] to [0, 1] per ray.
"""

from __future__ import annotations

import torch


def intersect_box(origins: torch.Tensor, dirs: torch.Tensor, near: float, far: float):
    """Ray-AABB intersection with the cube [-1, 1]^3.

    origins, dirs [R, 3] in normalised coordinates (dirs need not be unit). Returns
    (t_near [R], t_far [R]) clipped to [near, far]; rays that miss get t_far == t_near.
    """
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0 = (-1.0 - origins) * inv
    t1 = (1.0 - origins) * inv
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(near)
    t_far = torch.maximum(t0, t1).amin(dim=-1).clamp_max(far)
    t_far = torch.maximum(t_far, t_near)
    return t_near, t_far


def uniform_edges(t_near: torch.Tensor, t_far: torch.Tensor, n: int, jitter: bool, generator=None) -> torch.Tensor:
    """[R, n + 1] evenly spaced edges from t_near to t_far; with `jitter`, one random shift per ray."""
    u = torch.linspace(0.0, 1.0, n + 1, device=t_near.device, dtype=t_near.dtype)
    u = u.expand(t_near.shape[0], n + 1)
    if jitter:
        shift = (torch.rand(t_near.shape[0], 1, device=t_near.device, generator=generator, dtype=t_near.dtype) - 0.5) / n
        u = (u + shift).clamp(0.0, 1.0)
    return t_near[:, None] + (t_far - t_near)[:, None] * u


def sample_pdf(edges: torch.Tensor, weights: torch.Tensor, n: int, jitter: bool, padding: float = 0.01, generator=None) -> torch.Tensor:
    """Draw `n + 1` new sorted edges [R, n + 1] from the histogram (edges [R, S+1], weights [R, S]).

    A small `padding` keeps every bin reachable, so empty space is still explored.
    """
    w = weights.detach() + padding / weights.shape[-1]
    pdf = w / w.sum(dim=-1, keepdim=True)
    cdf = torch.cumsum(pdf, dim=-1).clamp_max(1.0)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], dim=-1)  # [R, S+1]
    r = edges.shape[0]
    if jitter:
        u = (torch.arange(n + 1, device=edges.device, dtype=edges.dtype) + torch.rand(r, n + 1, device=edges.device, generator=generator, dtype=edges.dtype)) / (n + 1)
    else:
        u = (torch.arange(n + 1, device=edges.device, dtype=edges.dtype) + 0.5).expand(r, n + 1) / (n + 1)
    u = u.contiguous()
    idx = torch.searchsorted(cdf.contiguous(), u, right=True)
    lo = (idx - 1).clamp(0, cdf.shape[-1] - 1)
    hi = idx.clamp(0, cdf.shape[-1] - 1)
    c_lo, c_hi = cdf.gather(-1, lo), cdf.gather(-1, hi)
    e_lo, e_hi = edges.gather(-1, lo), edges.gather(-1, hi)
    denom = torch.where(c_hi - c_lo < 1e-8, torch.ones_like(c_lo), c_hi - c_lo)
    frac = ((u - c_lo) / denom).clamp(0.0, 1.0)
    out = e_lo + frac * (e_hi - e_lo)
    return torch.sort(out.detach(), dim=-1).values


def weights_from_density(density: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Plain-torch NeRF quadrature weights [R, S] (used for the cheap proposal levels)."""
    delta = edges[:, 1:] - edges[:, :-1]
    tau = density * delta
    trans = torch.exp(-torch.cumsum(torch.cat([torch.zeros_like(tau[:, :1]), tau[:, :-1]], dim=-1), dim=-1))
    return trans * (1.0 - torch.exp(-tau))
