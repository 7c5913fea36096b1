"""Losses and regularizers of the k-Planes model.

Planes are channel-last `[H, W, C]`; on a space-time plane H is the time axis.
"""

from __future__ import annotations

from typing import Iterable

import torch


def plane_tv(plane: torch.Tensor, only_w: bool = False) -> torch.Tensor:
    """Total variation of one plane [H, W, C]: 2 (mean dH^2 + mean dW^2); only W if `only_w`.

    Space-time planes use `only_w=True`: smooth along space, free along time.
    """
    w_tv = (plane[:, 1:] - plane[:, :-1]).square().mean()
    if only_w:
        return 2.0 * w_tv
    h_tv = (plane[1:] - plane[:-1]).square().mean()
    return 2.0 * (h_tv + w_tv)


def grid_tv(space_planes: Iterable[torch.Tensor], space_time_planes: Iterable[torch.Tensor]) -> torch.Tensor:
    """Mean TV over a grid's planes: full on space planes, along space only on space-time ones."""
    terms = [plane_tv(p) for p in space_planes] + [plane_tv(p, only_w=True) for p in space_time_planes]
    return torch.stack(terms).mean()


def time_smoothness(space_time_planes: Iterable[torch.Tensor]) -> torch.Tensor:
    """Mean squared second difference along time (H), averaged over the planes (0 for a
    plane of fewer than 3 time samples, which has no second difference)."""
    terms = []
    for p in space_time_planes:
        if p.shape[0] < 3:
            terms.append(p.sum() * 0.0)
            continue
        first = p[1:] - p[:-1]
        second = first[1:] - first[:-1]
        terms.append(second.square().mean())
    return torch.stack(terms).mean()


def l1_time_planes(space_time_planes: Iterable[torch.Tensor]) -> torch.Tensor:
    """Mean |1 - plane| over space-time planes: keeps the static part static."""
    return torch.stack([(1.0 - p).abs().mean() for p in space_time_planes]).mean()


def outer_weights(edges0: torch.Tensor, edges1: torch.Tensor, weights1: torch.Tensor) -> torch.Tensor:
    """Upper bound of histogram 1 on the bins of histogram 0 (mip-NeRF 360 eq. 13).

    edges0 [R, n+1], edges1 [R, m+1], weights1 [R, m] -> [R, n]: for every bin of 0,
    the summed weight of the bins of 1 that overlap it.
    """
    cw = torch.cat([torch.zeros_like(weights1[:, :1]), torch.cumsum(weights1, dim=-1)], dim=-1)  # [R, m+1]
    m = weights1.shape[-1]
    lo = torch.searchsorted(edges1.contiguous(), edges0[:, :-1].contiguous(), right=True) - 1
    hi = torch.searchsorted(edges1.contiguous(), edges0[:, 1:].contiguous(), right=False)
    lo = lo.clamp(0, m)
    hi = hi.clamp(0, m)
    return (cw.gather(-1, hi) - cw.gather(-1, lo)).clamp_min(0.0)


def interlevel_loss(final_edges, final_weights, proposal_edges, proposal_weights) -> torch.Tensor:
    """Proposal supervision: penalise final weight not covered by each proposal histogram."""
    w = final_weights.detach()
    total = 0.0
    for e, pw in zip(proposal_edges, proposal_weights):
        bound = outer_weights(final_edges, e, pw)
        total = total + ((w - bound).clamp_min(0.0).square() / (w + 1e-7)).sum(-1).mean()
    return total


def distortion_loss(s_edges: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360 distortion loss (eq. 15), O(S) form, mean over rays.

    sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (s_{i+1} - s_i), with s normalised to [0, 1].
    """
    mid = 0.5 * (s_edges[:, 1:] + s_edges[:, :-1])
    width = s_edges[:, 1:] - s_edges[:, :-1]
    w_before = torch.cumsum(weights, dim=-1) - weights  # sum_{j<i} w_j
    wm_before = torch.cumsum(weights * mid, dim=-1) - weights * mid
    cross = 2.0 * (weights * (mid * w_before - wm_before)).sum(-1)
    self_term = (weights.square() * width).sum(-1) / 3.0
    return (cross + self_term).mean()


def random_directions(count: int, *, generator: torch.Generator | None = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """Unit vectors [count, 3] uniform on the sphere."""
    d = torch.randn(count, 3, generator=generator, dtype=dtype, device=device)
    return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def view_consistency_loss(rgb: torch.Tensor, rgb_other: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """How much the samples' colour depends on the direction they are seen from.

    rgb, rgb_other [R, S, 3]: the samples' colours at the ray's direction and at another
    direction; weights [R, S]: their volume-rendering weights (taken as constants, so the
    loss cannot be lowered by thinning the density). Returns
    mean over rays of sum_s w_s |rgb_s - rgb_other_s|^2 / 3 (a per-channel MSE of what
    the pixel would show)."""
    return (weights.detach() * (rgb - rgb_other).square().mean(-1)).sum(-1).mean()
