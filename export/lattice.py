"""Density logits of a baked loop on a regular lattice, for many loop phases at once.

On a lattice of points (ax[i], ay[j], az[k]) the features factor as
    f[i, j, k, c] = P[i, j, k, c] * Lx_p[i, c] * Ly_p[j, c] * Lz_p[k, c]
with P the product of the static planes (phase-independent) and L*_p the loop
planes' lines at phase p. So the static products are computed once per x-slab and
each phase costs one small contraction - the occupancy grid (max over 2F phases)
and the per-frame surfaces (one grid per frame) both use this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from loopnerf.export.loop_format import BakedLoop


def lattice_logits(
    baked: "BakedLoop",
    ax: "torch.Tensor",
    ay: "torch.Tensor",
    az: "torch.Tensor",
    phases: Sequence[float],
    *,
    reduce_max: bool = False,
    include_static: bool = False,
    slab_multiple: int = 1,
    chunk: int = 1 << 22,
    progress: str | None = None,
) -> "torch.Tensor":
    """Density logits f @ sigma_weight (density = exp(logit + sigma_bias - 1)) on the
    lattice ax [X] x ay [Y] x az [Z] (normalised coordinates) at each loop phase.

    Returns [len(phases), X, Y, Z], or with reduce_max the max over phases [X, Y, Z]
    (include_static then also takes the static planes alone, loop planes at 1).
    Outside the file's dynamic region the loop planes read as ones (the static logit).
    slab_multiple: x-slabs hold a multiple of this many x values (so callers can
    reduce groups of x samples). chunk bounds the lattice points x features per slab.
    progress: a description to show a progress bar, or None.
    """
    import torch

    from loopnerf.export.reference_render import _bilinear, _linear, loop_slice

    X, Y, Z = len(ax), len(ay), len(az)
    S = len(baked.scales)
    K = baked.feature_dim
    w = baked.sigma_weight.float()
    static = [[p.float() for p in baked.static_planes[s]] for s in range(S)]
    tables = []
    for ph in phases:
        lines = [[loop_slice(p, ph) for p in baked.loop_planes[s]] for s in range(S)]
        lx, ly, lz = (torch.cat([_linear(lines[s][a], coord) for s in range(S)], dim=-1) for a, coord in enumerate((ax, ay, az)))
        tables.append((lx, ly[:, None, :] * lz[None, :, :]))  # [X, K], [Y, Z, K]
    out = torch.empty((X, Y, Z) if reduce_max else (len(phases), X, Y, Z))
    step = max(1, chunk // (slab_multiple * Y * Z * K)) * slab_multiple
    starts = range(0, X, step)
    iterator: Any = starts
    if progress:
        from rich.progress import track

        iterator = track(starts, description=progress)
    yy, zz = torch.meshgrid(ay, az, indexing="ij")
    has_region = baked.dynamic_region is not None and not bool(baked.dynamic_region.all())
    for x0 in iterator:
        x1 = min(X, x0 + step)
        n = x1 - x0
        px = ax[x0:x1, None, None].expand(n, Y, Z).reshape(-1)
        py = yy[None].expand(n, Y, Z).reshape(-1)
        pz = zz[None].expand(n, Y, Z).reshape(-1)
        P = torch.cat(
            [_bilinear(static[s][0], px, py) * _bilinear(static[s][1], px, pz) * _bilinear(static[s][2], py, pz) for s in range(S)],
            dim=-1,
        ).reshape(n, Y, Z, K) * w
        if has_region:
            inside = baked.in_dynamic_region(torch.stack([px, py, pz], dim=-1)).reshape(n, Y, Z)
            still = P.sum(-1)

            def logit(lx, yz):
                return torch.where(inside, torch.einsum("xyzc,xc,yzc->xyz", P, lx[x0:x1], yz), still)
        else:
            def logit(lx, yz):
                return torch.einsum("xyzc,xc,yzc->xyz", P, lx[x0:x1], yz)
        if reduce_max:
            best = P.sum(-1) if include_static else torch.full((n, Y, Z), -float("inf"))
            for lx, yz in tables:
                best = torch.maximum(best, logit(lx, yz))
            out[x0:x1] = best
        else:
            for i, (lx, yz) in enumerate(tables):
                out[i, x0:x1] = logit(lx, yz)
    return out
