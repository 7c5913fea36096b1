"""The dynamic k-Planes radiance field and its proposal density fields.

Inputs live in the normalised scene cube: points `x [R, S, 3]` in [-1, 1]^3 (after
box normalisation and optional contraction) and times `t [R]` in [0, 1], mapped to
the grid's time coordinate 2t - 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from loopnerf.choices import Decoder
from loopnerf.fields.activations import trunc_exp
from loopnerf.fields.dynamic_region import DynamicRegion, split_by_region
from loopnerf.fields.decoders import make_decoder
from loopnerf.fields.kplanes import KPlanesGrid


@dataclass
class FieldConfig:
    """The main field."""

    resolution: tuple[int, int, int, int] = (48, 48, 48, 0)
    """Base grid resolution (x, y, z in cells of the normalised cube; t in samples, 0 = one per frame)."""
    multiscale: tuple[int, ...] = (1, 2, 4)
    """Space-resolution multipliers; one set of 6 planes per entry."""
    features: int = 16
    """Feature channels per plane (C)."""
    decoder: Decoder = "linear"
    """'linear' (explicit, fast, bakeable) or 'mlp' (hybrid)."""


@dataclass
class ProposalConfig:
    """One proposal density field: a single-scale k-Planes grid + tiny MLP."""

    resolution: tuple[int, int, int, int] = (64, 64, 64, 0)
    features: int = 8


def _x4(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Points [R, S, 3] + times [R] in [0, 1] -> grid coordinates [R*S, 4] in [-1, 1]."""
    r, s, _ = x.shape
    tt = (t * 2.0 - 1.0).to(x.dtype)[:, None, None].expand(r, s, 1)
    return torch.cat([x, tt], dim=-1).reshape(r * s, 4)


ONE_LAUNCH = True
"""`grid_features` evaluates the points inside and outside the dynamic region in one
kernel launch with a per-point mask. False: the two sets gathered and evaluated apart
(`split_by_region`, as before; `benchmarks/train_step.py` times both)."""


def grid_features(grid: KPlanesGrid, x: torch.Tensor, t: torch.Tensor, static: bool, region: DynamicRegion | None) -> torch.Tensor:
    """[R*S, C] features of a 4D grid at points x [R, S, 3] and times t [R]: the full
    space-time product inside `region` (everywhere when None), the static part (time
    planes as ones) outside it or everywhere when `static`. Inside and outside go through
    one kernel launch with a per-point mask (no gather and scatter of the two sets, and
    one gradient per plane instead of two to add)."""
    pts = x.reshape(-1, 3)
    if static:
        return grid.static_features(pts)
    x4 = _x4(x, t)
    if region is None or region.everywhere:
        return grid(x4)
    if not ONE_LAUNCH:
        return split_by_region(region, pts, lambda idx: grid(x4 if idx is None else x4[idx]),
                               lambda idx: grid.static_features(pts if idx is None else pts[idx]))
    return grid(x4, static=~region.contains(pts))


class KPlanesField(nn.Module):
    """Dynamic k-Planes radiance field: `forward(x, t, dirs, static=False) -> (density, rgb)`.

    x [R, S, 3] normalised points, t [R] times in [0, 1], dirs [R, 3] unit world-space
    ray directions. density [R, S] (1/normalised unit), rgb [R, S, 3] in [0, 1].
    `static=True` evaluates the static part: every time plane treated as ones; with a
    `region` (`DynamicRegion`), points outside it always get the static part.
    """

    def __init__(self, cfg: FieldConfig, *, backend: str = "taichi", generator=None) -> None:
        super().__init__()
        self.cfg = cfg
        self.grid = KPlanesGrid(cfg.resolution, cfg.multiscale, cfg.features, backend=backend, generator=generator)
        self.decoder = make_decoder(cfg.decoder, self.grid.output_dim)

    def features(self, x: torch.Tensor, t: torch.Tensor, static: bool = False, region: DynamicRegion | None = None) -> torch.Tensor:
        r, s, _ = x.shape
        return grid_features(self.grid, x, t, static, region).view(r, s, -1)

    def density(self, x: torch.Tensor, t: torch.Tensor, static: bool = False, region: DynamicRegion | None = None) -> torch.Tensor:
        return self.decoder.density(self.features(x, t, static, region))

    def forward(self, x, t, dirs, static: bool = False, region: DynamicRegion | None = None):
        return self.decoder(self.features(x, t, static, region), dirs)


class ProposalField(nn.Module):
    """A small k-Planes density field for proposal sampling: `forward(x, t) -> density [R, S]`.

    Its decoder is linear (K-Planes' `linear_decoder` proposal): the proposal levels run
    on 3-4x more samples than the main field, so a per-sample MLP would dominate a CPU step.
    """

    def __init__(self, cfg: ProposalConfig, *, backend: str = "taichi", generator=None) -> None:
        super().__init__()
        self.grid = KPlanesGrid(cfg.resolution, (1,), cfg.features, backend=backend, generator=generator)
        self.sigma_net = nn.Linear(cfg.features, 1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, static: bool = False, region: DynamicRegion | None = None) -> torch.Tensor:
        r, s, _ = x.shape
        f = grid_features(self.grid, x, t, static, region)
        return trunc_exp(self.sigma_net(f).view(r, s) - 1.0)


def contract(x: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360 contraction (L-inf norm) of normalised points, rescaled to [-1, 1].

    Inside the unit cube points keep their position (halved); outside they are pulled
    into the shell between 0.5 and 1.
    """
    n = x.abs().amax(dim=-1, keepdim=True).clamp_min(1e-9)
    y = torch.where(n <= 1.0, x, (2.0 - 1.0 / n) * x / n)
    return y * 0.5
