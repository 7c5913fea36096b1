"""Multiscale k-Planes (HexPlane) feature grids.

A grid of dimension D (3 = static tri-plane, 4 = space-time hex-plane) holds, per
scale, one plane per coordinate pair of `itertools.combinations(range(D), 2)`:
(xy, xz, xt, yz, yt, zt) for D = 4. Planes are stored channel-last, pair (i, j) as
`[R_j, R_i, C]` (coordinate i indexes W, j indexes H), which is the layout the Taichi
kernel reads fastest. Space resolution grows with the scale multiplier; the time
resolution is the same at every scale.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import torch
from torch import nn

SPACE_TIME_PAIRS = (2, 4, 5)  # xt, yt, zt in combinations(range(4), 2)
SPACE_PAIRS = (0, 1, 3)  # xy, xz, yz


def pair_list(dim: int) -> list[tuple[int, int]]:
    """Coordinate pairs of a D-dimensional k-Planes grid, in plane order."""
    return list(itertools.combinations(range(dim), 2))


def interpolate_features(points: torch.Tensor, planes, *, wrap_time: bool = False, backend: str = "taichi", static=None) -> torch.Tensor:
    """`hexplane_features` through the chosen backend ('taichi' or 'torch' reference);
    `static` (bool [N] or None): points that read the space-time planes as ones."""
    if backend == "taichi":
        from loopnerf.kernels import hexplane_features
    elif backend == "torch":
        from loopnerf.kernels.reference import hexplane_features
    else:
        raise ValueError(f"unknown kernel backend {backend!r} (use 'taichi' or 'torch')")
    return hexplane_features(points, planes, wrap_time=wrap_time, channels_last=True, static=static)


class KPlanesGrid(nn.Module):
    """Multiscale k-Planes feature grid.

    Args:
        resolution: base resolution per coordinate, (Rx, Ry, Rz) or (Rx, Ry, Rz, Rt).
        multiscale: space-resolution multipliers, one scale each.
        features: C, feature channels per plane.
        time_init: 'ones' (K-Planes: time planes start at 1, i.e. static) or 'uniform'.

    `forward(points [N, D] in [-1, 1]) -> [N, C * len(multiscale)]`.
    """

    def __init__(
        self,
        resolution: Sequence[int],
        multiscale: Sequence[int] = (1, 2, 4),
        features: int = 16,
        *,
        backend: str = "taichi",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.dim = len(resolution)
        if self.dim not in (3, 4):
            raise ValueError(f"k-Planes grids are 3D or 4D, got resolution {tuple(resolution)}")
        self.base_resolution = tuple(int(r) for r in resolution)
        self.multiscale = tuple(int(m) for m in multiscale)
        self.features = int(features)
        self.backend = backend
        self.planes = nn.ParameterList()
        for m in self.multiscale:
            res = [r * m for r in self.base_resolution[:3]] + list(self.base_resolution[3:])
            for i, j in pair_list(self.dim):
                shape = (res[j], res[i], self.features)
                if j == 3:  # space-time plane: ones, so the field starts static
                    p = torch.ones(shape)
                else:
                    p = torch.empty(shape).uniform_(0.1, 0.5, generator=generator)
                self.planes.append(nn.Parameter(p))

    @property
    def n_pairs(self) -> int:
        return len(pair_list(self.dim))

    @property
    def output_dim(self) -> int:
        return self.features * len(self.multiscale)

    def planes_by_scale(self) -> list[list[torch.Tensor]]:
        """Planes grouped as `[scale][pair]` (the kernel's `planes` argument)."""
        k = self.n_pairs
        return [[self.planes[s * k + p] for p in range(k)] for s in range(len(self.multiscale))]

    def forward(self, points: torch.Tensor, static: torch.Tensor | None = None) -> torch.Tensor:
        """[N, C * S] features at points [N, D]; `static` (bool [N], 4D grids): those
        points get the static part (`static_features`) in the same kernel launch."""
        return interpolate_features(points, self.planes_by_scale(), backend=self.backend, static=static)

    def space_time_planes(self) -> list[torch.Tensor]:
        """Every space-time plane (empty for a 3D grid)."""
        if self.dim != 4:
            return []
        return [self.planes[s * 6 + p] for s in range(len(self.multiscale)) for p in SPACE_TIME_PAIRS]

    def space_planes(self) -> list[torch.Tensor]:
        k = self.n_pairs
        ids = SPACE_PAIRS if self.dim == 4 else (0, 1, 2)
        return [self.planes[s * k + p] for s in range(len(self.multiscale)) for p in ids]

    def static_features(self, points: torch.Tensor) -> torch.Tensor:
        """[N, C * S] the static part at points [N, 3] in [-1, 1]: the 3 space planes per
        scale, every time plane read as ones."""
        return interpolate_features(points, self.static_planes_by_scale(), backend=self.backend)

    def static_planes_by_scale(self) -> list[list[torch.Tensor]]:
        """The 3 space planes per scale, for evaluating the static part as a tri-plane."""
        if self.dim == 3:
            return self.planes_by_scale()
        return [[self.planes[s * 6 + p] for p in SPACE_PAIRS] for s in range(len(self.multiscale))]
