"""Density of a baked loop on a regular grid of nodes over the scene box, per loop phase.

(The glb / ply exports no longer cut an iso-surface out of this grid: a fitted field is
faint haze with no density level that is its surface, so their surfaces come from the
viewer's renders instead, `loopnerf.export.tsdf`. The grid stays for checks of the
baked density and for tools that want a volume.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from loopnerf.export.loop_format import BakedLoop


def grid_nodes(resolution: int) -> np.ndarray:
    """Normalised node coordinates [G, G, G, 3] (x, y, z) of a grid spanning [-1, 1]^3."""
    a = np.linspace(-1.0, 1.0, resolution, dtype=np.float32)
    return np.stack(np.meshgrid(a, a, a, indexing="ij"), axis=-1)


def density_grids(baked: "BakedLoop", phases, resolution: int, progress: bool = False) -> np.ndarray:
    """Density [P, G, G, G] (index order x, y, z; per world unit) at the nodes of a
    grid spanning the box, at each loop phase (factored lattice evaluation)."""
    import torch

    from loopnerf.export.lattice import lattice_logits

    a = torch.linspace(-1.0, 1.0, resolution)
    with torch.no_grad():
        logits = lattice_logits(baked, a, a, a, list(phases), progress="density grids" if progress else None)
        dens = torch.exp(logits + baked.sigma_bias.float()[0] - 1.0)
    return dens.numpy()
