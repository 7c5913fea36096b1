"""Where the field may change over time: a voxel mask over the normalised scene cube.

A monocular capture sees each moment from one viewpoint, so time planes that may vary
everywhere can give every frame its own appearance: haze in front of the camera of that
moment, static structure that only looks right from there (issues 13 and 17).
Only a small part of a video-texture scene moves. Outside the dynamic region the field
is its static part, the 3 space planes per scale with every time plane read as ones;
inside it the full space-time product. The static scene then has to agree with every
view, the loop distilled from the field leaves the static scene exactly as stage 1
fitted it (report §3.4), and the viewer shares every static brick across the loop.

`DynamicRegion.grid` [G, G, G] uint8, indexed [ix, iy, iz], covers [-1, 1]^3 of the
field's coordinates (after contraction, when there is one); voxel i spans
[-1 + 2i/G, -1 + 2(i+1)/G). All ones (the default) = everywhere dynamic, today's
k-Planes field. `loopnerf.model.motion_mask` estimates the grid from the capture.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

DEFAULT_RESOLUTION = 64
"""Voxels per axis of the region grid (a 64-cell grid over the box, like the bake's occupancy)."""


class DynamicRegion(nn.Module):
    """The dynamic-region voxel mask (a buffer, saved with the model's weights)."""

    def __init__(self, resolution: int = DEFAULT_RESOLUTION) -> None:
        super().__init__()
        if resolution < 1:
            raise ValueError(f"dynamic region resolution must be >= 1, got {resolution}")
        self.register_buffer("grid", torch.ones((resolution,) * 3, dtype=torch.uint8))

    @property
    def resolution(self) -> int:
        return int(self.grid.shape[0])

    @property
    def everywhere(self) -> bool:
        """True when every voxel is dynamic (the plain k-Planes field: no split needed)."""
        return bool(self.grid.all())

    def fraction(self) -> float:
        """Share of the cube's voxels that are dynamic."""
        return float(self.grid.float().mean())

    def set(self, grid: torch.Tensor) -> None:
        """Replace the mask by `grid` [G, G, G] (bool or 0/1) of the same resolution."""
        grid = torch.as_tensor(grid)
        if tuple(grid.shape) != tuple(self.grid.shape):
            raise ValueError(f"dynamic region grid must be {tuple(self.grid.shape)}, got {tuple(grid.shape)}")
        self.grid.copy_((grid != 0).to(torch.uint8))

    def contains(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, 3] in [-1, 1] (points outside are clamped to the border voxel) -> bool [N]."""
        return voxels_contain(self.grid, x)


def voxels_contain(grid: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """bool [N]: the voxel of `grid` [Dx, Dy, Dz] (0/1, index [ix, iy, iz] over [-1, 1]^3,
    voxel i spanning [-1 + 2i/D, -1 + 2(i+1)/D)) that holds each point x [N, 3] is set;
    points outside the cube take the border voxel. The one lookup of the region grid
    (the model's `DynamicRegion` and the `.loop` file's `dynamic_region`)."""
    g = torch.tensor(grid.shape, device=x.device)
    idx = torch.minimum(((x.detach().float() + 1.0) * 0.5 * g).floor().long().clamp_min(0), g - 1)
    return grid.to(x.device)[idx[:, 0], idx[:, 1], idx[:, 2]] != 0


def split_by_region(
    region: DynamicRegion | None,
    x: torch.Tensor,
    dynamic: Callable[[torch.Tensor], torch.Tensor],
    static: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """Features of N points: `dynamic(idx)` where the region holds them, `static(idx)` elsewhere.

    x [N, 3] field coordinates; `dynamic` / `static` take an index tensor [M] (or None =
    all points) and return [M, C]. Returns [N, C]; gradients reach both branches.
    """
    if region is None or region.everywhere:
        return dynamic(None)
    inside = region.contains(x)
    d_idx = inside.nonzero().squeeze(1)
    s_idx = (~inside).nonzero().squeeze(1)
    if len(s_idx) == 0:
        return dynamic(None)
    if len(d_idx) == 0:
        return static(None)
    fd, fs = dynamic(d_idx), static(s_idx)
    out = fs.new_empty((x.shape[0], fs.shape[1]))
    out = out.index_copy(0, s_idx, fs).index_copy(0, d_idx, fd)
    return out
